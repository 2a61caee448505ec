"""A trainer run as the studies run it: in its own process, as a user would from the shell."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Diverged(Exception):
    """The trainer refused to go on because the loss, its gradient, the weights or the
    optimizer state held NaN or Inf (trainers.train_actions.NonFiniteLossError)."""


def run(module, arguments, what):
    """stdout of `python -m module *arguments` in the repository; raises Diverged on a
    non-finite run and exits with `what` and the trainer's last words on any other failure."""
    done = subprocess.run([sys.executable, "-m", module, *arguments], cwd=REPO,
                          capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if done.returncode != 0:
        # Both of the trainer's non-finite refusals say "NaN or Inf" (train_actions.py).
        if "NaN or Inf" in done.stderr:
            raise Diverged(done.stderr.strip().splitlines()[-1])
        sys.exit(f"error: {what} failed:\n{done.stderr[-3000:]}")
    return done.stdout
