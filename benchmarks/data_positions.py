"""What a resumable training-data position costs: the trainers' positioned records against the
usual tf.data pipeline (interleave, shuffle buffer) whose iterator is checkpointed whole.

    python -m benchmarks.data_positions                    # 16 files of 250 records of 92 KB
    python -m benchmarks.data_positions --shuffle_buffer_size=4000

Records are random bytes the size of the ImageNet JPEGs that `images_to_tfrecords` writes
(92.6 KB on average), so reading, not decoding, is measured. For each pipeline, in this one
process, alternating rounds: records per second over `--records` records read from a fresh
pipeline (start-up included, as after every resume), the bytes of one data-position
checkpoint after them, and the seconds to resume there (restore the iterator, or rebuild the
pipeline from the position and reach the next record).
"""

import argparse
import os
import shutil
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from trainers.data import positions  # noqa: E402
from benchmarks import result_file  # noqa: E402

SEED, CYCLE_LENGTH = 7, 8


def write_files(directory, num_files, records_per_file, record_bytes):
    rng = np.random.default_rng(0)
    paths = []
    for f in range(num_files):
        path = os.path.join(directory, f"train-{f:05d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for _ in range(records_per_file):
                writer.write(rng.bytes(record_bytes))
        paths.append(path)
    return paths


def shuffle_buffer_pipeline(files, buffer):
    """The pipeline the trainers used before: its iterator, buffer and all, is the position."""
    names = tf.data.Dataset.from_tensor_slices(files).shuffle(len(files), seed=SEED).repeat()
    return names.interleave(tf.data.TFRecordDataset, cycle_length=CYCLE_LENGTH,
                            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
                            ).shuffle(buffer, seed=SEED)


def directory_bytes(directory):
    return sum(os.path.getsize(os.path.join(directory, name)) for name in os.listdir(directory))


def run_shuffle_buffer(files, buffer, count, scratch):
    iterator = iter(shuffle_buffer_pipeline(files, buffer))
    start = time.perf_counter()
    for _ in range(count):
        next(iterator)
    rate = count / (time.perf_counter() - start)
    target = os.path.join(scratch, "iterator")
    tf.train.Checkpoint(train_data=iterator).write(os.path.join(target, "ckpt"))
    size = directory_bytes(target)
    start = time.perf_counter()
    resumed = iter(shuffle_buffer_pipeline(files, buffer))
    tf.train.Checkpoint(train_data=resumed).read(os.path.join(target, "ckpt")).assert_consumed()
    next(resumed)
    resume_seconds = time.perf_counter() - start
    shutil.rmtree(target)
    return rate, size, resume_seconds


def run_positioned(files, buffer, count, scratch):
    dataset = positions.training_records(files, None, SEED, CYCLE_LENGTH, buffer)
    iterator = iter(dataset)
    start = time.perf_counter()
    for _ in range(count):
        _, where = next(iterator)
    rate = count / (time.perf_counter() - start)
    position = tf.Variable(where)
    target = os.path.join(scratch, "position")
    tf.train.Checkpoint(train_data_position=position).write(os.path.join(target, "ckpt"))
    size = directory_bytes(target)
    start = time.perf_counter()
    restored = tf.Variable(positions.NOTHING_READ, dtype=tf.int64)
    tf.train.Checkpoint(train_data_position=restored).read(
        os.path.join(target, "ckpt")).assert_consumed()
    after = tuple(int(v) for v in restored.numpy())
    next(iter(positions.training_records(files, None, SEED, CYCLE_LENGTH, buffer, after)))
    resume_seconds = time.perf_counter() - start
    shutil.rmtree(target)
    return rate, size, resume_seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_files", type=int, default=16)
    parser.add_argument("--records_per_file", type=int, default=250)
    parser.add_argument("--record_bytes", type=int, default=92_600)
    parser.add_argument("--shuffle_buffer_size", type=int, default=2000)
    parser.add_argument("--records", type=int, default=6000, help="read per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    scratch = tempfile.mkdtemp(prefix="data_positions_")
    try:
        files = write_files(scratch, args.num_files, args.records_per_file, args.record_bytes)
        contenders = [("shuffle buffer, iterator checkpointed", run_shuffle_buffer),
                      ("positioned records (trainers)", run_positioned)]
        results = {name: [] for name, _ in contenders}
        for _ in range(args.rounds):
            for name, run in contenders:
                results[name].append(run(files, args.shuffle_buffer_size, args.records, scratch))
        print(f"{args.num_files} files x {args.records_per_file} records of "
              f"{args.record_bytes / 1e3:.1f} KB, shuffle buffer {args.shuffle_buffer_size}, "
              f"{args.records} records read per round, median of {args.rounds} rounds")
        print(f"{'pipeline':40s} {'records/s':>10s} {'checkpoint':>12s} {'resume s':>9s}")
        for name, rows in results.items():
            rate, size, seconds = (statistics.median(column) for column in zip(*rows))
            print(f"{name:40s} {rate:10.0f} {size:10.0f} B {seconds:9.2f}")
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    result_file.run(main)
