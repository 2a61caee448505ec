"""What a model_dir holds between runs, and the checks that keep it whole.

- `newest_whole_checkpoint`: restore takes the newest checkpoint whose model files and every
  worker's data-position files are present and readable (checksums verified); broken newer ones
  are named, moved aside, and never silently replaced by a start from step 0. Only damage makes
  a checkpoint broken: storage that fails otherwise is retried, then stops the run
  (`trainers.storage`).
- `remove_interrupted_writes`: the `*_temp` folders a killed save leaves behind.
- The config that wrote the checkpoints is `trainers.params_record`'s.
- `RunCheckpoints`: a run's saves, exactly `keep_checkpoint_max` of them however often it
  restarts.

Paths go through tf.io.gfile with exact names (no glob), so local folders, gs:// and ram://
work alike.
"""

import os
import re
import sys

import tensorflow as tf
from absl import logging

from trainers import storage

BROKEN_DIR = "broken_checkpoints"
DATA_POSITION_DIR = "train_data"
DATA_POSITION_KEY = "train_data_position"  # (epoch, window, index): trainers.data.positions
DATA_ITERATOR_KEY = "train_data"  # a whole tf.data iterator, for datasets with no position
WORKER_COPIES_DIR = "worker_tmp"  # a non-chief worker's save, removed once written
# TensorFlow's temporary names of a save under way (functional_saver: "_temp/part", on s3://
# ".part").
_INTERRUPTED_WRITE = re.compile(r"^ckpt-\d+(_temp|\.part-\d+-of-\d+\.(index|data-\d+-of-\d+))$")
_VERIFY_BYTES = 256 << 20  # tensors read per RestoreV2 call while verifying
# What TensorFlow's checkpoint reader says (with no error code) of an index that is not one.
_DAMAGED_INDEX = re.compile(r"sstable|too short|corrupt|Unable to (read|open)|checksum|"
                            r"[Dd]ata loss|truncated", re.IGNORECASE)

checkpoint_steps = storage.checkpoint_steps


class CheckpointError(ValueError):
    """model_dir holds checkpoints, none of them usable: a user must decide what to do."""


def data_position_dir(model_dir, pipeline_id):
    return os.path.join(model_dir, DATA_POSITION_DIR, f"worker_{pipeline_id}")


def step_of(path):
    """The N of a `.../ckpt-N` prefix."""
    return int(path.rsplit("-", 1)[1])


def _open_reader(prefix):
    """The checkpoint reader of exactly `prefix` (tf.train.load_checkpoint guesses whether a
    path is a folder, which a prefix on ram:// also is); damage raised as DataLossError."""
    tf.io.gfile.stat(prefix + ".index")  # storage errors keep their codes here
    try:
        return tf.compat.v1.train.NewCheckpointReader(prefix)
    except tf.errors.OpError as e:
        if e.error_code == tf.errors.UNKNOWN and _DAMAGED_INDEX.search(e.message):
            raise tf.errors.DataLossError(None, None, e.message) from None
        raise


def verify(prefix):
    """None if the checkpoint at `prefix` reads back whole, else the reason in a few words.

    Every tensor is read with RestoreV2, which checks the checksums (variant tensors such as a
    tf.data iterator's state included, which the Python reader cannot return). Reads that fail
    without damage are retried; StorageUnavailableError if they keep failing.
    """
    try:
        reader = storage.retrying(lambda: _open_reader(prefix), f"the checkpoint {prefix}")
    except storage.DAMAGE as e:
        return _reason(e, "its .index file is missing or unreadable")
    dtypes = reader.get_variable_to_dtype_map()
    shapes = reader.get_variable_to_shape_map()
    batch, batch_bytes = [], 0
    names = sorted(dtypes)
    for i, name in enumerate(names):
        size = max(1, dtypes[name].size) if dtypes[name] != tf.variant else 1 << 20
        for dim in shapes[name] or []:
            size *= dim
        batch.append(name)
        batch_bytes += size
        if batch_bytes >= _VERIFY_BYTES or i == len(names) - 1:
            def read(batch=batch):
                return tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=batch,
                                            shape_and_slices=[""] * len(batch),
                                            dtypes=[dtypes[n] for n in batch])
            try:
                storage.retrying(read, f"the checkpoint {prefix}")
            except storage.DAMAGE as e:
                return _reason(e, "its data file is missing, truncated or corrupt")
            batch, batch_bytes = [], 0
    return None


def _reason(error, summary):
    return f"{summary} ({storage.short(error)[:160]})"


def newest_whole_checkpoint(model_dir, num_pipelines, move_broken=True):
    """The prefix of the newest checkpoint whose model and data-position files are whole.

    Newer broken ones are logged in one line each and (chief only, `move_broken`) moved to
    model_dir/broken_checkpoints, so that they neither hide the good one nor get mixed with
    new saves. Returns None when model_dir holds no checkpoint at all; raises CheckpointError
    when it holds only broken ones, StorageUnavailableError (moving nothing) when storage keeps
    failing without damage.
    """
    model_checkpoints = checkpoint_steps(model_dir)
    broken = []
    for step in sorted(model_checkpoints, reverse=True):
        prefix = model_checkpoints[step]
        reason = verify(prefix)
        if reason is None:
            for pipeline_id in range(num_pipelines):
                data_prefix = os.path.join(data_position_dir(model_dir, pipeline_id),
                                           f"ckpt-{step}")
                data_reason = verify(data_prefix)
                if data_reason is not None:
                    reason = f"the training-data position of worker {pipeline_id}: {data_reason}"
                    break
        if reason is None:
            if broken and move_broken:
                _move_aside(model_dir, [s for s, _ in broken], num_pipelines)
            return prefix
        print(f"Skipping checkpoint {prefix}: {reason}.", file=sys.stderr)
        broken.append((step, reason))
    if broken:
        listing = "; ".join(f"ckpt-{step}: {reason}" for step, reason in broken)
        raise CheckpointError(
            f"model_dir {model_dir} holds checkpoints but none is whole ({listing}). Restore "
            "them from a copy, or move them away (or pass another --model_dir) to start from "
            "step 0.")
    return None


def _move_aside(model_dir, steps, num_pipelines):
    """Moves the files of broken checkpoints into model_dir/broken_checkpoints."""
    target = os.path.join(model_dir, BROKEN_DIR)
    tf.io.gfile.makedirs(target)
    directories = [model_dir] + [data_position_dir(model_dir, p) for p in range(num_pipelines)]
    for directory in directories:
        relative = os.path.relpath(directory, model_dir)
        prefix = "" if relative == "." else relative.replace(os.sep, "_") + "_"
        for step in steps:
            for path in storage.checkpoint_files(directory, step):
                tf.io.gfile.rename(path, os.path.join(target, prefix + os.path.basename(path)),
                                   overwrite=True)
    logging.warning("Moved the broken checkpoint(s) %s to %s.",
                    ", ".join(f"ckpt-{s}" for s in steps), target)


def keep_newest(directory, keep, up_to=None):
    """Deletes every checkpoint in `directory` but the newest `keep` (of those at most `up_to`,
    deleting the newer ones too); returns the kept prefixes, oldest first."""
    steps = sorted(checkpoint_steps(directory))
    kept = [s for s in steps if up_to is None or s <= up_to][-keep:]
    for step in steps:
        if step not in kept:
            for path in storage.checkpoint_files(directory, step):
                storage.delete(path)  # idempotent: keep_newest runs under storage.retrying
    return [os.path.join(directory, f"ckpt-{s}") for s in kept]


def write_state(model_dir, kept):
    """The `checkpoint` state file, for tools that look for the latest checkpoint
    (TensorBoard, checkpoints_iterator); the runner itself never reads it."""
    if kept:
        tf.compat.v1.train.update_checkpoint_state(model_dir, kept[-1],
                                                   all_model_checkpoint_paths=kept)


def remove_interrupted_writes(model_dir):
    """Removes what saves that a kill interrupted leave: TensorFlow's `ckpt-N_temp` folders
    (`ckpt-N.part-*` files on s3://) and the non-chief workers' `worker_tmp/` copies. Nothing
    else, whatever its name: a model_dir may hold a user's own files. Transient errors are
    retried (each try lists again; a path already gone counts as removed)."""
    def remove():
        data_root = os.path.join(model_dir, DATA_POSITION_DIR)
        directories = [model_dir] + [os.path.join(data_root, d.rstrip("/"))
                                     for d in storage.listing(data_root)]
        leftovers = [os.path.join(directory, name.rstrip("/")) for directory in directories
                     for name in storage.listing(directory)
                     if _INTERRUPTED_WRITE.match(name.rstrip("/"))]
        worker_copies = os.path.join(model_dir, WORKER_COPIES_DIR)
        if tf.io.gfile.isdir(worker_copies):
            leftovers.append(worker_copies)
        for path in leftovers:
            logging.info("Removing %s, left by an interrupted checkpoint write.", path)
            storage.delete(path)

    storage.retrying(remove, f"what interrupted saves left in {model_dir}", doing="Removing")


class RunCheckpoints:
    """A training run's saves in its model_dir: model checkpoints and this worker's position in
    its training data, restored and saved together.

    Retention is our own (exact names, no glob): after every save, and on every resume, exactly
    the newest `keep` model checkpoints and this worker's `keep` data positions remain.
    TensorFlow's CheckpointManager keeps every checkpoint it recovers from a state file written
    without timestamps, which leaked `keep` more per restart. Every MultiWorkerMirrored worker
    must take part in a save; a non-chief saves into a `worker_tmp/` copy that is removed at
    once, leaving the chief's the only one.
    """

    def __init__(self, model_dir, checkpoint, data_state, step_counter, keep,
                 num_pipelines, pipeline_id, worker_id=None):
        """`data_state`: the worker's data-position variable (`trainers.data.positions`), or a
        tf.data iterator for datasets that carry no position."""
        self.model_dir = model_dir
        self._is_chief = worker_id is None
        self._checkpoint = checkpoint
        self._data_key = (DATA_POSITION_KEY if isinstance(data_state, tf.Variable)
                          else DATA_ITERATOR_KEY)
        self._data_checkpoint = tf.train.Checkpoint(**{self._data_key: data_state})
        for root in (checkpoint, self._data_checkpoint):
            # `restore` makes it and then expects it; `write` saves it only if it exists.
            _ = root.save_counter
        self._step_counter = step_counter
        self._keep = keep
        self._data_dir = data_position_dir(model_dir, pipeline_id)
        self._own_dir = (model_dir if self._is_chief
                         else os.path.join(model_dir, WORKER_COPIES_DIR, str(worker_id)))
        # The chief moves broken newer checkpoints aside before anyone resumes.
        self.resume_from = newest_whole_checkpoint(model_dir, num_pipelines,
                                                   move_broken=self._is_chief)
        step = step_of(self.resume_from) if self.resume_from else 0
        # Data positions newer than the resumed step belong to saves a kill cut short.
        storage.retrying(lambda: keep_newest(self._data_dir, keep, up_to=step),
                         f"old training-data positions in {self._data_dir}", doing="Deleting")
        if self.resume_from and self._is_chief:
            storage.retrying(
                lambda: write_state(model_dir, keep_newest(model_dir, keep, up_to=step)),
                f"old checkpoints in {model_dir}", doing="Deleting")
        self.latest = self.resume_from

    def restore_data_position(self, step):
        if step == 0:
            return
        path = os.path.join(self._data_dir, f"ckpt-{step}")
        if not storage.index_exists(path):
            logging.warning("No saved training-data position for step %d in %s: this worker's "
                            "data starts again from the beginning of its shard.", step,
                            self._data_dir)
            return
        reader = storage.retrying(lambda: _open_reader(path), f"the training-data position {path}")
        saved_keys = {name.split("/")[0] for name in reader.get_variable_to_shape_map()}
        if self._data_key not in saved_keys:
            logging.warning(
                "The training-data position %s was saved by a version that checkpointed the "
                "whole input iterator (or this task's dataset changed kind): this worker's data "
                "starts again from the beginning of its shard.", path)
            return
        storage.retrying(lambda: self._data_checkpoint.restore(path).assert_consumed(),
                         f"the training-data position {path}")

    def save(self, check_lease=None):
        """Saves this step. `check_lease()` runs before every try of storage made in the save,
        retries nested in a part included, so that a save retried or slowed past the model_dir
        lease's deadline stops (LeaseLostError) before it writes or deletes more: by then a
        successor may have taken model_dir over."""
        with storage.checked_before_each_try(check_lease):
            self._save()

    def _save(self):
        step = int(self._step_counter.numpy())
        data_prefix = os.path.join(self._data_dir, f"ckpt-{step}")
        model_prefix = os.path.join(self._own_dir, f"ckpt-{step}")
        # Each part is retried whole (a rewrite of the same prefix, a deletion by exact name).
        # The data position first: a model checkpoint is the commit point.
        storage.retrying(lambda: self._data_checkpoint.write(data_prefix),
                         f"the training-data position {data_prefix}", "Writing")
        storage.retrying(lambda: self._checkpoint.write(model_prefix),
                         f"the checkpoint {model_prefix}", "Writing")
        storage.retrying(lambda: keep_newest(self._data_dir, self._keep),
                         f"old training-data positions in {self._data_dir}", "Deleting")
        if self._is_chief:
            storage.retrying(
                lambda: write_state(self.model_dir, keep_newest(self.model_dir, self._keep)),
                f"old checkpoints in {self.model_dir}", "Deleting")
        else:
            storage.retrying(lambda: storage.delete(self._own_dir), self._own_dir, "Deleting")
        # Every worker names the chief's copy, which all of them restore from.
        self.latest = os.path.join(self.model_dir, f"ckpt-{step}")


def checkpoint_in(path):
    """`path` if it is a checkpoint prefix; else the newest checkpoint in folder `path` (its
    state file's, or the newest ckpt-N); None if neither."""
    if storage.index_exists(path):
        return path
    if not tf.io.gfile.isdir(path):
        return None
    state = tf.train.get_checkpoint_state(path)
    if state and storage.index_exists(state.model_checkpoint_path):
        return state.model_checkpoint_path
    steps = [s for s, prefix in storage.checkpoint_steps(path).items()
             if storage.index_exists(prefix)]
    return os.path.join(path, f"ckpt-{max(steps)}") if steps else None
