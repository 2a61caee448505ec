"""What a model_dir holds between runs, and the checks that keep it whole.

- `newest_whole_checkpoint`: restore takes the newest checkpoint whose model files and every
  worker's data-position files are present and readable (checksums verified); broken newer ones
  are named, moved aside, and never silently replaced by a start from step 0.
- `remove_interrupted_writes`: the `*_temp` folders a killed save leaves behind.
- `ModelDirLock`: one live training run per model_dir.
- `ParamsRecord`: the config that wrote the checkpoints; a rerun that changes what the
  checkpoints depend on is refused before anything is written, compatible changes are recorded.

Paths go through tf.io.gfile, so local folders and gs:// work alike (the lock is local-only).
"""

import datetime
import os
import re
import socket
import sys

import tensorflow as tf
import yaml
from absl import logging

from trainers import config as config_lib

BROKEN_DIR = "broken_checkpoints"
DATA_POSITION_DIR = "train_data"
PARAMS_FILE = "params.yaml"
PARAMS_HISTORY_FILE = "params_history.yaml"
LOCK_FILE = "run.lock"
_CHECKPOINT_NAME = re.compile(r"^(ckpt-(\d+))(\.index|\.data-\d+-of-\d+)$")
_VERIFY_BYTES = 256 << 20  # tensors read per RestoreV2 call while verifying


class CheckpointError(ValueError):
    """model_dir holds checkpoints, none of them usable: a user must decide what to do."""


def data_position_dir(model_dir, pipeline_id):
    return os.path.join(model_dir, DATA_POSITION_DIR, f"worker_{pipeline_id}")


def step_of(path):
    """The N of a `.../ckpt-N` prefix."""
    return int(path.rsplit("-", 1)[1])


def checkpoint_steps(directory):
    """{step: prefix} of every ckpt-N in `directory` with an index or data file (whole or not)."""
    found = {}
    if not tf.io.gfile.isdir(directory):
        return found
    for name in tf.io.gfile.listdir(directory):
        match = _CHECKPOINT_NAME.match(name)
        if match:
            found[int(match.group(2))] = os.path.join(directory, match.group(1))
    return found


def verify(prefix):
    """None if the checkpoint at `prefix` reads back whole, else the reason in a few words.

    Every tensor is read with RestoreV2, which checks the checksums (variant tensors such as a
    tf.data iterator's state included, which the Python reader cannot return).
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
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
            try:
                tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=batch,
                                     shape_and_slices=[""] * len(batch),
                                     dtypes=[dtypes[n] for n in batch])
            except tf.errors.OpError as e:
                return _reason(e, "its data file is missing, truncated or corrupt")
            batch, batch_bytes = [], 0
    return None


def _reason(error, summary):
    detail = error.message if isinstance(error, tf.errors.OpError) else str(error)
    detail = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", detail).split("\n")[0].strip()
    return f"{summary} ({detail[:160]})"


def newest_whole_checkpoint(model_dir, num_pipelines, move_broken=True):
    """The prefix of the newest checkpoint whose model and data-position files are whole.

    Newer broken ones are logged in one line each and (chief only, `move_broken`) moved to
    model_dir/broken_checkpoints, so that they neither hide the good one nor get mixed with
    new saves. Returns None when model_dir holds no checkpoint at all; raises CheckpointError
    when it holds only broken ones.
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
        prefix = os.path.relpath(directory, model_dir).replace(os.sep, "_")
        for step in steps:
            for path in tf.io.gfile.glob(os.path.join(directory, f"ckpt-{step}.*")):
                name = os.path.basename(path) if prefix == "." else f"{prefix}_{os.path.basename(path)}"
                tf.io.gfile.rename(path, os.path.join(target, name), overwrite=True)
    logging.warning("Moved the broken checkpoint(s) %s to %s.",
                    ", ".join(f"ckpt-{s}" for s in steps), target)


def rewrite_states(model_dir, num_pipelines, latest):
    """Points the `checkpoint` state files (which may be garbled) of the model and of every
    data position at the checkpoints up to `latest`, so that the managers see only those."""
    step = step_of(latest)
    for directory in [model_dir] + [data_position_dir(model_dir, p)
                                    for p in range(num_pipelines)]:
        kept = sorted(s for s in checkpoint_steps(directory) if s <= step)
        if kept:
            prefixes = [os.path.join(directory, f"ckpt-{s}") for s in kept]
            tf.compat.v1.train.update_checkpoint_state(directory, prefixes[-1],
                                                       all_model_checkpoint_paths=prefixes)


def remove_interrupted_writes(model_dir):
    """Removes the `*_temp` folders of saves that a kill interrupted."""
    directories = [model_dir]
    data_root = os.path.join(model_dir, DATA_POSITION_DIR)
    if tf.io.gfile.isdir(data_root):
        directories += [os.path.join(data_root, d.rstrip("/"))
                        for d in tf.io.gfile.listdir(data_root)]
    for directory in directories:
        for path in tf.io.gfile.glob(os.path.join(directory, "*_temp*")):
            logging.info("Removing %s, left by an interrupted checkpoint write.", path)
            if tf.io.gfile.isdir(path):
                tf.io.gfile.rmtree(path)
            else:
                tf.io.gfile.remove(path)


# ---------------------------------------------------------------------------------- lock
class ModelDirLock:
    """An exclusive lock on model_dir for the life of a training run.

    `fcntl.flock` is released by the kernel when its process dies, so a killed run never
    leaves the directory stuck. Creating the lock file is also the check that model_dir can be
    written, before any training time is spent. Remote paths (gs://...) cannot be locked; they
    get a probe write and a warning.
    """

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self._file = None

    def __enter__(self):
        try:
            tf.io.gfile.makedirs(self.model_dir)
            if "://" in self.model_dir:
                self._probe_write()
                logging.warning("model_dir %s is remote: it cannot be locked, so make sure no "
                                "other run uses it.", self.model_dir)
                return self
            path = os.path.join(self.model_dir, LOCK_FILE)
            self._file = open(path, "a+")
        except (OSError, tf.errors.OpError) as e:
            raise ValueError(f"model_dir {self.model_dir} cannot be written "
                             f"({_short(e)}). Pass a --model_dir you can write to.") from None
        import fcntl
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            raise ValueError(f"model_dir {self.model_dir} is in use by {holder}. Wait for that "
                             "run to end, stop it, or pass another --model_dir.") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                         f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")
        self._file.flush()
        return self

    def _probe_write(self):
        probe = os.path.join(self.model_dir, f".write_probe_{os.getpid()}")
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("probe")
        tf.io.gfile.remove(probe)

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.close()  # closing releases the lock
            self._file = None


def _short(error):
    return error.message if isinstance(error, tf.errors.OpError) else str(error)


# -------------------------------------------------------------------------------- params
# Keys the checkpoints depend on: the model's variables and the saved training-data position
# (its batch shape and files). Everything else (steps, rates, eval settings) may change.
INCOMPATIBLE_KEYS = (
    "task.model.", "task.train_data.", "trainer.train_batch_size",
    "trainer.num_accumulation_steps", "optimizer.name", "runtime.dtype",
    "runtime.distribution_strategy", "runtime.num_gpus", "runtime.num_cpu_devices",
)


def _flatten(tree, prefix=""):
    flat = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


class ParamsRecord:
    """model_dir/params.yaml (the config in force) and params_history.yaml (each change)."""

    def __init__(self, model_dir):
        self.path = os.path.join(model_dir, PARAMS_FILE)
        self.history_path = os.path.join(model_dir, PARAMS_HISTORY_FILE)

    def previous(self):
        if not tf.io.gfile.exists(self.path):
            return None
        with tf.io.gfile.GFile(self.path) as f:
            try:
                return yaml.safe_load(f.read()) or {}
            except yaml.YAMLError:
                return None

    def changes(self, experiment):
        """{dotted key: (old, new)} between params.yaml and `experiment`."""
        old = self.previous()
        if old is None:
            return {}
        before = _flatten(old)
        after = _flatten(config_lib.to_dict(experiment))
        return {key: (before.get(key), after.get(key))
                for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)}

    def check_compatible(self, experiment):
        """Raises, naming the keys, if `experiment` changes what the checkpoints depend on."""
        changed = self.changes(experiment)
        refused = {k: v for k, v in changed.items()
                   if any(k == p or (p.endswith(".") and k.startswith(p))
                          for p in INCOMPATIBLE_KEYS)}
        if refused:
            listing = ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in refused.items())
            raise ValueError(
                f"The checkpoints in {os.path.dirname(self.path)} were written with another "
                f"config ({listing}); they cannot be resumed with it. Use the settings in "
                f"{self.path}, or pass another --model_dir (with --init_checkpoint to start "
                "from these weights).")
        return changed

    def write(self, experiment, step):
        """Records the config in force; changes against the previous one go to the history."""
        changed = self.changes(experiment)
        if changed and tf.io.gfile.exists(self.path):
            entry = {"step": step,
                     "time": datetime.datetime.now().isoformat(timespec="seconds"),
                     "changed": {k: {"from": old, "to": new} for k, (old, new) in changed.items()}}
            history = ""
            if tf.io.gfile.exists(self.history_path):
                with tf.io.gfile.GFile(self.history_path) as f:
                    history = f.read()
            with tf.io.gfile.GFile(self.history_path, "w") as f:
                f.write(history + yaml.safe_dump([entry], sort_keys=False))
            logging.info("Config changed since the last run (recorded in %s): %s",
                         self.history_path, ", ".join(changed))
        temporary = self.path + ".tmp"
        with tf.io.gfile.GFile(temporary, "w") as f:
            f.write(config_lib.dump_yaml(experiment))
        tf.io.gfile.rename(temporary, self.path, overwrite=True)


class RunCheckpoints:
    """A training run's saves in its model_dir: model checkpoints and this worker's position in
    its training data, restored and saved together.

    Every MultiWorkerMirrored worker must take part in a save; a non-chief saves into a
    `worker_tmp/` copy that is removed at once, leaving the chief's the only one.
    """

    def __init__(self, model_dir, checkpoint, train_iterator, step_counter, keep,
                 num_pipelines, pipeline_id, worker_id=None):
        self.model_dir = model_dir
        self._is_chief = worker_id is None
        self._step_counter = step_counter
        # The chief moves broken newer checkpoints aside and rewrites the (maybe garbled) state
        # files before the managers below read them.
        self.resume_from = newest_whole_checkpoint(model_dir, num_pipelines,
                                                   move_broken=self._is_chief)
        if self.resume_from and self._is_chief:
            rewrite_states(model_dir, num_pipelines, self.resume_from)
        self._own_dir = (model_dir if self._is_chief
                         else os.path.join(model_dir, "worker_tmp", str(worker_id)))
        self._model = tf.train.CheckpointManager(checkpoint, self._own_dir, max_to_keep=keep,
                                                 step_counter=step_counter)
        # One more: the data position is saved first, and each kept model checkpoint keeps its.
        self._data = tf.train.CheckpointManager(
            tf.train.Checkpoint(train_data=train_iterator),
            data_position_dir(model_dir, pipeline_id), max_to_keep=keep + 1)

    @property
    def latest(self):
        """The chief's newest checkpoint (every worker reads the chief's copy), or None."""
        return tf.train.latest_checkpoint(self.model_dir)

    def restore_data_position(self, step):
        if step == 0:
            return
        path = os.path.join(self._data.directory, f"ckpt-{step}")
        if not tf.io.gfile.glob(path + ".index"):
            logging.warning("No saved training-data position for step %d in %s: this worker's "
                            "data starts again from the beginning of its shard.", step,
                            self._data.directory)
            return
        self._data.checkpoint.restore(path).assert_consumed()

    def save(self):
        step = int(self._step_counter.numpy())
        # The data position first: a model checkpoint is the commit point.
        self._data.save(checkpoint_number=step)
        self._model.save(checkpoint_number=step)
        if not self._is_chief:
            tf.io.gfile.rmtree(self._own_dir)
