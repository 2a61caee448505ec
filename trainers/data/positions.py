"""Training records that carry their own position, so that a run resumes from three integers.

A worker's position in its training data is (epoch, window, index): the epoch; the window, a
group of `cycle_length` files of that epoch read interleaved; and the index of the record in
that window's shuffled stream. Every epoch orders this pipeline's files by a seeded
permutation of its own, and every window shuffles its records with a seed of its own, so the
stream from any position on is a function of the seed alone. A checkpoint then holds 24 bytes
per worker where a tf.data iterator holds its whole shuffle buffer (929 MB for ImageNet JPEG
records at a buffer of 10,000), and resuming re-reads at most one window.

Shuffling permutes consecutive chunks of `shuffle_buffer_size` records of a window (as much
memory as a shuffle buffer of that size) and, across windows, the file order; the
iterator-checkpointed shuffle buffer this replaces also mixed across chunk and window
boundaries.
"""

import math
import random

import tensorflow as tf

from trainers.data import files as files_lib

POSITION_KEY = "data_position"  # a batch's [batch, 3] positions, popped by the runner
NOTHING_READ = (0, 0, -1)  # the position before the first record
_EPOCHS = 2 ** 62  # endless


def training_records(files, input_context, seed, cycle_length, shuffle_buffer_size,
                     after=NOTHING_READ):
    """Endless (serialized record, position) pairs for one input pipeline, starting with the
    record after position `after`.

    Each pipeline reads its own files when there are at least as many files as pipelines (else
    all files, keeping every num_pipelines-th record). `seed` fixes the order; None draws
    one, so each call then gives another order (the runner always passes its seed).
    """
    seed = seed_or_draw(seed)
    pipeline_files = files_lib.files_for_pipeline(files, input_context)
    shard = None
    if pipeline_files is None:
        pipeline_files = list(files)
        shard = (input_context.num_input_pipelines, input_context.input_pipeline_id)
    names = tf.constant(pipeline_files)
    window = min(cycle_length, len(pipeline_files))
    num_windows = math.ceil(len(pipeline_files) / window)
    start_epoch, start_window, last_index = (tf.constant(v, tf.int64) for v in after)
    seed = tf.constant(seed, tf.int64)

    def windows_of(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(len(pipeline_files)), seed=tf.stack([seed, epoch]))
        epoch_files = tf.gather(names, order)
        first = tf.where(epoch == start_epoch, start_window, 0)
        return tf.data.Dataset.range(first, num_windows).map(
            lambda w: (epoch, w, epoch_files[w * window:(w + 1) * window]))

    def records_of(epoch, w, window_files):
        records = tf.data.Dataset.from_tensor_slices(window_files).interleave(
            tf.data.TFRecordDataset, cycle_length=window, block_length=1,
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        if shard is not None:
            records = records.shard(*shard)
        resumed_here = (epoch == start_epoch) & (w == start_window)
        first = tf.where(resumed_here, last_index + 1, 0)  # the window's first index to give
        window_seed = _window_seed(seed, epoch, w)

        def permuted(chunk_index, chunk):
            size = tf.shape(chunk, out_type=tf.int64)[0]
            order = tf.random.experimental.stateless_shuffle(
                tf.range(size), seed=tf.stack([window_seed, chunk_index]))
            offset = chunk_index * shuffle_buffer_size
            # Record by record (1.5x the records/s of one gather of the whole chunk).
            return tf.data.Dataset.range(tf.clip_by_value(first - offset, 0, size), size).map(
                lambda j: (chunk[order[j]], tf.stack([epoch, w, offset + j])))

        # Stateless permutations of consecutive chunks of `shuffle_buffer_size` records: the
        # same memory as a shuffle buffer, and seeds that may be tensors (Dataset.shuffle's
        # cannot be when the global seed is 0).
        return records.batch(shuffle_buffer_size).enumerate().flat_map(permuted)

    # Reads the next chunk while this one is consumed: a chunk gives nothing until it has
    # read `shuffle_buffer_size` records.
    return (tf.data.Dataset.range(start_epoch, _EPOCHS).flat_map(windows_of)
            .flat_map(records_of).prefetch(shuffle_buffer_size))


def permuted_indices(num_examples, seed, after=NOTHING_READ):
    """Endless (example index, position) pairs over examples held in memory: each epoch a
    permutation of range(num_examples) of its own, starting after position `after`
    ((epoch, 0, index in the epoch's order)). `seed` fixes the orders; None draws one."""
    seed = tf.constant(seed_or_draw(seed), tf.int64)
    start_epoch, _, last_index = (tf.constant(v, tf.int64) for v in after)

    def epoch_of(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64), seed=tf.stack([seed, epoch]))
        first = tf.where(epoch == start_epoch, last_index + 1, 0)
        return tf.data.Dataset.range(first, num_examples).map(
            lambda j: (order[j], tf.stack([epoch, tf.constant(0, tf.int64), j])))

    return tf.data.Dataset.range(start_epoch, _EPOCHS).flat_map(epoch_of)


def seed_or_draw(seed):
    """`seed`, or a freshly drawn one when it is None (another order on every call)."""
    return random.SystemRandom().randrange(2 ** 31) if seed is None else seed


def _window_seed(seed, epoch, window):
    """One int64 seed per (seed, epoch, window), distinct for any realistic run."""
    return (seed * 1_000_003 + epoch) * 1_000_003 + window


def example_seed(seed, position):
    """A per-record [2] seed for stateless augmentation, fixed by the record's position."""
    return tf.stack([tf.constant(seed, tf.int64) * 1_000_003 + position[0],
                     position[1] * (2 ** 32) + position[2]])
