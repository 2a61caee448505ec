"""The config that wrote a model_dir's checkpoints: model_dir/params.yaml and its history.

A rerun that changes what the checkpoints depend on (INCOMPATIBLE_KEYS: the model's variables,
the saved training-data position's batch shape, files and seed) is refused before anything is
written, naming the keys; compatible changes are recorded in params_history.yaml. The record
also holds the cluster's shape and the training-data stream the saved positions point into.
"""

import datetime
import os

import tensorflow as tf
import yaml
from absl import logging

from trainers import config as config_lib
from trainers import storage
from trainers.data import files as files_lib

PARAMS_FILE = "params.yaml"
PARAMS_HISTORY_FILE = "params_history.yaml"
CLUSTER_KEY = "cluster"  # params.yaml's record of the shape that wrote the checkpoints
STREAM_KEY = "train_data_stream"  # ... and of the training data its positions point into
_LISTED_FILES = 3  # files named per kind of difference in an error

# Keys the checkpoints depend on: the model's variables and the saved training-data position
# (its batch shape, files and the seed that orders them). Everything else (steps, rates, eval
# settings) may change.
INCOMPATIBLE_KEYS = (
    "task.model.", "task.train_data.", "runtime.seed", "trainer.train_batch_size",
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

    def _load(self):
        """The recorded dict; None if there is no params.yaml; ValueError if it holds none."""
        if not storage.retrying(lambda: tf.io.gfile.exists(self.path), self.path):
            return None
        def read():
            with tf.io.gfile.GFile(self.path) as f:
                return f.read()

        text = storage.retrying(read, self.path)
        try:
            recorded = yaml.safe_load(text)
            problem = None if isinstance(recorded, dict) else (
                "is empty" if recorded is None else "holds no config")
        except yaml.YAMLError as e:
            problem = f"is not valid YAML ({config_lib.yaml_problem(e)})"
        if problem:
            raise ValueError(
                f"{self.path} {problem}, so this resume cannot be checked against the config "
                "that wrote the checkpoints. Restore it from a copy, or remove it to resume with "
                "only the check that the checkpoint fits the model.")
        return recorded

    def previous(self):
        """The recorded experiment config (without the cluster's shape), or None."""
        recorded = self._load()
        if recorded is not None:
            recorded.pop(CLUSTER_KEY, None)
            recorded.pop(STREAM_KEY, None)
        return recorded

    def previous_cluster(self):
        """{"workers": N, "replicas": R} the checkpoints were written by, if recorded."""
        return (self._load() or {}).get(CLUSTER_KEY)

    def check_same_cluster(self, cluster):
        """Refuses to resume on another cluster shape: each worker's saved data position
        belongs to the shards and per-replica batches of the shape that wrote it."""
        before = self.previous_cluster()
        if before is None or before == cluster:
            return

        def shape(c):
            return f"{c['workers']} worker(s) with {c['replicas']} replica(s) in all"

        raise ValueError(
            f"The checkpoints in {os.path.dirname(self.path)} were written by {shape(before)}; "
            f"this run has {shape(cluster)}. The saved positions in the training data belong "
            "to the old shape, so this run would read other records. Resume on the old shape, "
            "or pass another --model_dir with --init_checkpoint set to this one to go on from "
            "its weights (the optimizer state and data position start anew).")

    def check_same_stream(self, stream):
        """Refuses to resume on other training data: a saved position (epoch, window, index)
        applied to other files or another layout repeats some records and skips others."""
        recorded = self._load() or {}
        if STREAM_KEY not in recorded:
            logging.warning("%s is missing or records no training-data stream (an older version "
                            "wrote it): this resume cannot check that its data files are the "
                            "ones its saved positions point into.", self.path)
            return
        before = recorded[STREAM_KEY] or {}
        if "files" in before and "table" in stream:
            logging.warning("%s records the training data as the files of its table (an older "
                            "version did), this run as the table's digest: this resume cannot "
                            "check that its examples are the ones its saved positions point "
                            "into.", self.path)
            return
        differences = _stream_differences(before, stream)
        if differences:
            model_dir = os.path.dirname(self.path)
            raise ValueError(
                f"The training-data positions saved in {model_dir} belong to other data than "
                f"this run reads ({'; '.join(differences)}): resumed here they would repeat "
                f"some records and skip others. Resume with the data recorded in {self.path}, "
                f"or pass another --model_dir with --init_checkpoint={model_dir} to start a new "
                "data stream from these weights.")

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

    def write(self, experiment, step, cluster, stream):
        """Records the config in force, the cluster's shape and the training data's stream
        (`Task.train_stream`); changes against the previous config go to the history."""
        try:
            changed = self.changes(experiment)
        except ValueError as e:
            # Reached only without checkpoints (a resume is refused before): nothing depends on
            # the unreadable record, so it is replaced.
            logging.warning("Replacing it: %s", e)
            changed = {}
        if changed and tf.io.gfile.exists(self.path):
            entry = {"step": step,
                     "time": datetime.datetime.now().isoformat(timespec="seconds"),
                     "changed": {k: {"from": old, "to": new} for k, (old, new) in changed.items()}}
            history = ""
            if tf.io.gfile.exists(self.history_path):
                with tf.io.gfile.GFile(self.history_path) as f:
                    history = f.read()
            storage.write_text(self.history_path, history + yaml.safe_dump([entry],
                                                                           sort_keys=False))
            logging.info("Config changed since the last run (recorded in %s): %s",
                         self.history_path, ", ".join(changed))
        storage.write_text(self.path, config_lib.dump_yaml(experiment) +
                           yaml.safe_dump({CLUSTER_KEY: cluster}, sort_keys=False) +
                           # one line per file
                           yaml.safe_dump({STREAM_KEY: stream}, sort_keys=False,
                                          default_flow_style=None))


def _stream_differences(before, after):
    """What differs between two `Task.train_stream` records, in a few words each."""
    def listed(paths):
        more = len(paths) - _LISTED_FILES
        return ", ".join(paths[:_LISTED_FILES]) + (f" and {more} more" if more > 0 else "")

    def named(files):
        # Older versions recorded absolute paths: compared as the relative names recorded now.
        paths = [path for path, _ in files]
        if paths and all(files_lib.is_absolute(path) for path in paths):
            paths = files_lib.relative_to_common_directory(paths)
        return {path: size for path, (_, size) in zip(paths, files)}

    old_files = named(before.get("files", []))
    new_files = named(after.get("files", []))
    differences = []
    added = sorted(set(new_files) - set(old_files))
    removed = sorted(set(old_files) - set(new_files))
    resized = sorted(p for p in set(old_files) & set(new_files) if old_files[p] != new_files[p])
    if added:
        differences.append(f"{len(added)} file(s) added: {listed(added)}")
    if removed:
        differences.append(f"{len(removed)} file(s) gone: {listed(removed)}")
    if resized:
        differences.append(f"{len(resized)} file(s) of another size: " + listed(
            [f"{p} ({old_files[p]} -> {new_files[p]} bytes)" for p in resized]))
    for key in sorted((set(before) | set(after)) - {"files"}):
        if before.get(key) != after.get(key):
            differences.append(f"{key} {before.get(key)} -> {after.get(key)}")
    return differences
