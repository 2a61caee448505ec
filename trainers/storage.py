"""Reading and writing a model_dir on storage that misbehaves: local disks, gs://, ram://.

- Damage and trouble are told apart: only `DAMAGE` errors mean a file is broken; anything else
  (gs:// answering Unavailable or DeadlineExceeded for a moment) is retried with backoff and
  then stops the run with `StorageUnavailableError`, having moved nothing.
- Paths are exact: TensorFlow's checkpoint reader (RestoreV2 included) reads a prefix as a glob
  pattern, so a model_dir with glob characters is refused up front (`check_path`), and our own
  listings and deletions use `listdir`, never `glob`.
"""

import os
import re
import time

import tensorflow as tf
from absl import logging

DAMAGE = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
          tf.errors.OutOfRangeError)
# Waits between tries of a read that failed without damage: 31 s in all, longer than the
# blips object stores are known for, short against a preemptible job's restart.
RETRY_DELAYS_SECONDS = (1, 2, 4, 8, 16)
GLOB_CHARACTERS = "*?[\\"
_CHECKPOINT_FILE = re.compile(r"^ckpt-(\d+)(\.index|\.data-\d+-of-\d+)$")


class StorageUnavailableError(RuntimeError):
    """Storage kept failing without damage: nothing was moved; rerun when it answers again."""


def is_damage(error):
    return isinstance(error, DAMAGE)


def short(error):
    """An error's first line, without TensorFlow's function-node prefix."""
    detail = error.message if isinstance(error, tf.errors.OpError) else str(error)
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", detail).split("\n")[0].strip()[:200]


def retrying(read, what):
    """`read()`, tried again after each non-damage OpError; damage is raised at once.

    After the last try, StorageUnavailableError names `what` and the error.
    """
    for delay in RETRY_DELAYS_SECONDS + (None,):
        try:
            return read()
        except tf.errors.OpError as e:
            if is_damage(e):
                raise
            if delay is None:
                raise StorageUnavailableError(
                    f"Reading {what} failed {len(RETRY_DELAYS_SECONDS) + 1} times over "
                    f"{sum(RETRY_DELAYS_SECONDS)} s with {type(e).__name__} ({short(e)}). "
                    "This is not damage, so nothing was moved or skipped; rerun when the "
                    "storage answers again.") from None
            logging.warning("Reading %s: %s (%s); trying again in %s s.", what,
                            type(e).__name__, short(e), delay)
            time.sleep(delay)


def check_path(name, path):
    """Refuses a path TensorFlow's checkpoint reader would take for a glob pattern."""
    found = sorted({c for c in path if c in GLOB_CHARACTERS})
    if found:
        raise ValueError(
            f"{name} {path!r} contains {' '.join(found)}: TensorFlow reads checkpoint paths as "
            "glob patterns, so checkpoints under it could be written but never restored. "
            "Choose a path without * ? [ or \\.")


def checkpoint_steps(directory):
    """{step: prefix} of every ckpt-N in `directory` with an index or data file (whole or not)."""
    found = {}
    if not tf.io.gfile.isdir(directory):
        return found
    for name in tf.io.gfile.listdir(directory):
        match = _CHECKPOINT_FILE.match(name.rstrip("/"))
        if match:
            found[int(match.group(1))] = os.path.join(directory, f"ckpt-{match.group(1)}")
    return found


def checkpoint_files(directory, step):
    """The exact paths of ckpt-`step`'s files in `directory`."""
    if not tf.io.gfile.isdir(directory):
        return []
    return [os.path.join(directory, name) for name in tf.io.gfile.listdir(directory)
            if (m := _CHECKPOINT_FILE.match(name)) and int(m.group(1)) == step]


def index_exists(prefix):
    return tf.io.gfile.exists(prefix + ".index")


def write_text(path, text, temporary=None):
    """Replaces the file at `path` whole: written beside it (at `temporary`, by default
    `path`.partial), then renamed over it, so a reader never sees half of it (and ram://, whose
    "w" appends, gets a replacement too)."""
    temporary = temporary or f"{path}.partial"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)
