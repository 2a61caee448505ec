"""`--output FILE` for the benchmarks: what a run prints, saved with the command that printed it,
the versions, the machine and the date, so that a figure in the docs can name the committed file
it comes from.

A benchmark's `if __name__ == "__main__":` calls `result_file.run(main)` instead of `main()`;
`--output` is taken off the command line before the benchmark parses it.
"""

import argparse
import contextlib
import datetime
import importlib.metadata
import io
import os
import platform
import shlex
import sys


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# Distributions whose versions a result depends on; a benchmark that runs its contenders in
# child processes imports none of them itself, so they are read from the installed metadata.
DISTRIBUTIONS = ("lamb_tf", "tensorflow", "keras", "tf-keras", "tf-models-official", "jax", "optax")


def _versions():
    found = []
    for name in DISTRIBUTIONS:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return ", ".join(found)


HEADER_KEYS = ("command", "versions", "machine", "date")


def header(command):
    """The lines that say where a table comes from."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return "\n".join([
        f"command: {command}",
        f"versions: Python {platform.python_version()}, {_versions()}",
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}; load average at the end {load:.2f}",
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
    ])


def read(path):
    """A file `run` wrote: ({header key: value}, the lines the benchmark printed)."""
    with open(path) as f:
        head, _, body = f.read().partition("\n\n")
    fields = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
    missing = [key for key in HEADER_KEYS if key not in fields]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)} line in its header; rerun its "
                         "benchmark with --output")
    return fields, body.splitlines()


class _Tee(io.TextIOBase):
    def __init__(self, stream):
        self.stream, self.kept = stream, io.StringIO()

    def write(self, text):
        self.kept.write(text)
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()


def run(main):
    """Call `main()`; with `--output FILE` on the command line, also write what it printed to
    FILE under `header`, once it has finished without an error."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--output", default=None)
    known, rest = parser.parse_known_args(sys.argv[1:])
    if known.output is None:
        return main()
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    program = f"python -m {spec.name}" if spec else f"python {sys.argv[0]}"
    if os.environ.get("KERAS_BACKEND"):  # part of the command: the JAX benchmark needs it
        program = f"KERAS_BACKEND={os.environ['KERAS_BACKEND']} {program}"
    command = " ".join([program] + [shlex.quote(a) for a in rest])
    sys.argv = sys.argv[:1] + rest
    tee = _Tee(sys.stdout)
    with contextlib.redirect_stdout(tee):
        outcome = main()
    with open(known.output, "w") as f:
        f.write(header(command) + "\n\n" + tee.kept.getvalue())
    print(f"wrote {known.output}")
    return outcome
