"""Reading and writing a model_dir on storage that misbehaves: local disks, gs://, ram://.

- Damage and trouble are told apart: only `DAMAGE` errors mean a file is broken; `REFUSED`
  (no permission, bad credentials) stops the run at once with `StorageAccessError`, since
  waiting cannot help; anything else (gs:// answering Unavailable or DeadlineExceeded for a
  moment) is retried with backoff, reads and writes alike, and then stops the run with
  `StorageUnavailableError`, having moved nothing. Deletions retried this way go through
  `delete`, for which a path already gone is done, not damage.
- `write_text` replaces a file whole, and on a local disk makes it durable (fsync of the file
  and its folder) before returning: gfile has no fsync, and a rename that reaches the disk
  before the data can leave an empty params.yaml after a power loss.
- Paths are exact: TensorFlow's checkpoint reader (RestoreV2 included) reads a prefix as a glob
  pattern, so a model_dir with glob characters is refused up front (`check_path`), and our own
  listings and deletions use `listdir`, never `glob`.
"""

import contextlib
import contextvars
import os
import re
import time

import tensorflow as tf
from absl import logging

DAMAGE = (tf.errors.DataLossError, tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
          tf.errors.OutOfRangeError)
REFUSED = (tf.errors.PermissionDeniedError, tf.errors.UnauthenticatedError)
# Waits between tries of a read that failed without damage: 31 s in all, longer than the
# blips object stores are known for, short against a preemptible job's restart.
RETRY_DELAYS_SECONDS = (1, 2, 4, 8, 16)
GLOB_CHARACTERS = "*?[\\"
_CHECKPOINT_FILE = re.compile(r"^ckpt-(\d+)(\.index|\.data-\d+-of-\d+)$")
_CHECK_BEFORE_EACH_TRY = contextvars.ContextVar("check_before_each_try", default=None)


class StorageUnavailableError(RuntimeError):
    """Storage kept failing without damage: nothing was moved; rerun when it answers again."""


class StorageAccessError(RuntimeError):
    """Storage refused this job (permission, credentials): retrying cannot help."""


def is_damage(error):
    return isinstance(error, DAMAGE)


def short(error):
    """An error's first line, without TensorFlow's function-node prefix."""
    detail = error.message if isinstance(error, tf.errors.OpError) else str(error)
    return re.sub(r"\{\{function_node [^}]*\}\}\s*", "", detail).split("\n")[0].strip()[:200]


@contextlib.contextmanager
def checked_before_each_try(check):
    """Runs `check()` (if not None) before every try `retrying` makes in this context, those
    nested inside a retried operation included; `check` stops the tries by raising. A lease
    holder's check: no retry, however deep, may carry a write past the lease's deadline.

    A context variable, not an argument, so that it reaches the helpers a retried operation
    calls (listing, checkpoint_steps) and stays out of other threads (the lease's renewals).
    """
    token = _CHECK_BEFORE_EACH_TRY.set(check)
    try:
        yield
    finally:
        _CHECK_BEFORE_EACH_TRY.reset(token)


def retrying(operation, what, doing="Reading"):
    """`operation()`, tried again after each OpError that is neither damage nor a refusal;
    damage is raised at once, a refusal as StorageAccessError.

    After the last try, StorageUnavailableError names `doing`, `what` and the error. Inside
    `checked_before_each_try(check)`, `check()` runs before every try.
    """
    for delay in RETRY_DELAYS_SECONDS + (None,):
        check = _CHECK_BEFORE_EACH_TRY.get()
        if check is not None:
            check()
        try:
            return operation()
        except tf.errors.OpError as e:
            if is_damage(e):
                raise
            if isinstance(e, REFUSED):
                raise StorageAccessError(
                    f"{doing} {what} was refused: {type(e).__name__} ({short(e)}). Give this "
                    "job's account access to it (or fix its credentials), then rerun.") from None
            if delay is None:
                raise StorageUnavailableError(
                    f"{doing} {what} failed {len(RETRY_DELAYS_SECONDS) + 1} times over "
                    f"{sum(RETRY_DELAYS_SECONDS)} s with {type(e).__name__} ({short(e)}). "
                    "This is not damage, so nothing was moved or skipped; rerun when the "
                    "storage answers again.") from None
            logging.warning("%s %s: %s (%s); trying again in %s s.", doing, what,
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


def listing(directory):
    """The names in `directory` ([] if it is not one), the listing retried."""
    def names():
        return tf.io.gfile.listdir(directory) if tf.io.gfile.isdir(directory) else []
    return retrying(names, f"the listing of {directory}")


def checkpoint_steps(directory):
    """{step: prefix} of every ckpt-N in `directory` with an index or data file (whole or not)."""
    found = {}
    for name in listing(directory):
        match = _CHECKPOINT_FILE.match(name.rstrip("/"))
        if match:
            found[int(match.group(1))] = os.path.join(directory, f"ckpt-{match.group(1)}")
    return found


def checkpoint_files(directory, step):
    """The exact paths of ckpt-`step`'s files in `directory`."""
    return [os.path.join(directory, name) for name in listing(directory)
            if (m := _CHECKPOINT_FILE.match(name)) and int(m.group(1)) == step]


def exists(path):
    return retrying(lambda: tf.io.gfile.exists(path), path)


def read_text(path):
    """The text of the file at `path`, None if there is none; transient errors retried."""
    def read():
        try:
            with tf.io.gfile.GFile(path) as f:
                return f.read()
        except tf.errors.NotFoundError:
            return None
    return retrying(read, path)


def index_exists(prefix):
    return exists(prefix + ".index")


def write_text(path, text, temporary=None, retry=True):
    """Replaces the file at `path` whole: written beside it (at `temporary`, by default
    `path`.partial), then renamed over it, so a reader never sees half of it (and ram://, whose
    "w" appends, gets a replacement too). Transient errors are retried, unless `retry` is
    False: a caller whose write must not land late (the lease renewal) tries once."""
    temporary = temporary or f"{path}.partial"
    write = _write_remote if "://" in path else _write_local
    if not retry:
        write(path, text, temporary)
        return
    retrying(lambda: write(path, text, temporary), path, doing="Writing")


def delete(path):
    """Deletes the file or folder at `path`; one already gone counts as deleted. Deletions are
    retried by `retrying`, and a delete that succeeded but reported a transient error is
    retried onto NotFoundError, which `retrying` would take for damage."""
    try:
        if tf.io.gfile.isdir(path):
            tf.io.gfile.rmtree(path)
        else:
            tf.io.gfile.remove(path)
    except tf.errors.NotFoundError:
        pass


def _write_remote(path, text, temporary):
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def _write_local(path, text, temporary):
    with open(temporary, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    folder = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself
    finally:
        os.close(folder)
