"""What every command-line entry point shares: flag errors as one line and exit code 2.

absl prints a flag error as "FATAL Flags parsing error" and exits 1, the code our tools keep
for bad input values; flag syntax gets 2, as argparse-based tools do.
"""

import sys

from absl import app, flags

USAGE_EXIT_CODE = 2


def user_error(error):
    """Exits 1 with `error: <message>`; with --verbose, raises it with its traceback instead."""
    if "verbose" in flags.FLAGS and flags.FLAGS.verbose:
        raise error
    sys.exit(f"error: {error}")


def usage_error(message):
    print(f"error: {message}\nPass --help to see the flags.", file=sys.stderr)
    sys.exit(USAGE_EXIT_CODE)


def _parse_flags(argv):
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        usage_error(e)


def run(main):
    """`absl.app.run(main)` with flag errors as one `error:` line and exit code 2."""
    if "verbose" not in flags.FLAGS:
        flags.DEFINE_bool("verbose", False, "Show the traceback behind an `error:` line too.")
    app.run(main, flags_parser=_parse_flags)


def no_arguments(argv):
    """For tools that take flags only."""
    if len(argv) > 1:
        usage_error(f"Unexpected arguments {argv[1:]}: this tool takes --flags only.")
