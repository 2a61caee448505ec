"""Input file lists: pattern expansion, per-pipeline sharding, and naming a corrupt file.

Paths go through tf.io.gfile, so local paths and gs:// work alike.
"""

import contextlib
import os
import re

import tensorflow as tf
from absl import logging


def cache_root():
    """Where the built-in data sets are made on first use: $LAMB_TF_DATA_DIR or
    ~/.cache/lamb_tf."""
    return os.environ.get("LAMB_TF_DATA_DIR",
                          os.path.join(os.path.expanduser("~"), ".cache", "lamb_tf"))


def relative_to_common_directory(paths):
    """`paths` relative to the deepest directory holding them all (string operations, so that
    gs:// paths work too): what a data stream's files are called wherever its root lives."""
    if not paths:
        return []
    directories = [path.split("/")[:-1] for path in paths]
    common = directories[0]
    for parts in directories[1:]:
        common = common[:next((i for i, (a, b) in enumerate(zip(common, parts)) if a != b),
                              min(len(common), len(parts)))]
    return ["/".join(path.split("/")[len(common):]) for path in paths]


def is_absolute(path):
    return path.startswith("/") or "://" in path


def expand_patterns(patterns, what="input"):
    """Sorted, de-duplicated files matching a comma-separated string or a list of globs.

    A pattern that matches nothing is an error naming it: a typo must not silently shrink the
    data set.
    """
    if isinstance(patterns, str):
        patterns = patterns.split(",")
    patterns = [p.strip() for p in patterns if p and p.strip()]
    if not patterns:
        raise ValueError(f"No {what} file pattern given: pass one or more comma-separated paths "
                         "or globs (local or gs://).")
    files = []
    for pattern in patterns:
        matched = tf.io.gfile.glob(pattern)
        if not matched:
            raise FileNotFoundError(
                f"The {what} file pattern {pattern!r} matches no file. Check the path (globs "
                "like data/train-*.tfrecord are expanded; comma-separate several patterns).")
        files.extend(matched)
    return sorted(set(files))


def files_for_pipeline(files, input_context):
    """The files one input pipeline reads, or None when pipelines must shard records instead.

    With fewer files than pipelines, some pipeline would get no file, so every pipeline reads
    all files and keeps every num_pipelines-th record (slower; warned once).
    """
    if input_context is None or input_context.num_input_pipelines == 1:
        return list(files)
    num_pipelines = input_context.num_input_pipelines
    if len(files) < num_pipelines:
        logging.warning(
            "%d input files for %d input pipelines: every pipeline reads all files and keeps "
            "1/%d of the records. Write at least %d shards to let each host read its own files.",
            len(files), num_pipelines, num_pipelines, num_pipelines)
        return None
    return list(files[input_context.input_pipeline_id::num_pipelines])


def first_record(path):
    """The first serialized record of a TFRecord file; a clear error if the file is unusable."""
    try:
        for record in tf.data.TFRecordDataset(path).take(1):
            return record.numpy()
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise ValueError(f"{path} is not a readable TFRecord file (its first record is "
                         f"corrupt or truncated: {e.message}).") from None
    raise ValueError(f"{path} holds no record; remove it from the input patterns.")


def locate_corrupt_record(files):
    """(path, number of good records before the bad one, error message), or None.

    Reads record by record, so it is slow on big files; it only runs after a read failed.
    """
    for path in files:
        good = 0
        try:
            for _ in tf.data.TFRecordDataset(path):
                good += 1
        except tf.errors.DataLossError as e:
            return path, good, e.message
    return None


# Input pipelines start their tf.debugging assertion messages with this, so that the runner can
# tell a user's data problem from a bug and show the message without the graph's traceback.
DATA_CHECK = "Data check failed: "


@contextlib.contextmanager
def naming_corrupt_file(files):
    """Turns tf.data's DataLossError, which names no file, into one that names the file, and a
    failed DATA_CHECK assertion of an input pipeline into its message alone."""
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        check = re.search(re.escape(DATA_CHECK) + r"(.*?)\]", e.message)
        if check is None:
            raise
        value = re.search(r"\[x \(.*?\) = \] \[(.*?)\]", e.message)
        found = f" (a value the check met: {value.group(1)})" if value else ""
        raise ValueError(f"{check.group(1)}{found}") from e
    except tf.errors.DataLossError as e:
        found = locate_corrupt_record(files)
        if found is None:
            raise
        path, index, message = found
        raise ValueError(f"Corrupt record in {path} after {index} good records ({message}). "
                         "Re-create or re-copy that file, or drop it from the input "
                         "patterns.") from e


def _shard_pattern(split):
    return re.compile(rf"^{re.escape(split)}-\d{{5}}-of-\d{{5}}(\.tfrecord)?(\.incomplete)?$")


def existing_shards(output_dir, splits):
    """Shard files of these splits (`split-NNNNN-of-NNNNN[.tfrecord]`) already in output_dir."""
    if not tf.io.gfile.isdir(output_dir):
        return []
    patterns = [_shard_pattern(split) for split in splits]
    return sorted(os.path.join(output_dir, name) for name in tf.io.gfile.listdir(output_dir)
                  if any(p.match(name) for p in patterns))


def prepare_shard_dir(output_dir, splits, overwrite):
    """Makes output_dir ready for new shards of `splits`.

    Shards of an earlier run would sit beside the new ones and be read with them by a glob
    such as train-*: they are an error unless `overwrite`, in which case they are removed.
    """
    old = existing_shards(output_dir, splits)
    if old and not overwrite:
        raise ValueError(
            f"{output_dir} already holds {len(old)} {'/'.join(splits)} shard(s) of an earlier "
            f"run (e.g. {os.path.basename(old[0])}); new shards beside them would be read "
            "together with them. Pass --overwrite to replace them, or choose an empty "
            "--output_dir.")
    for path in old:
        tf.io.gfile.remove(path)
    if old:
        logging.info("Removed %d old shard(s) from %s (--overwrite).", len(old), output_dir)
    tf.io.gfile.makedirs(output_dir)
