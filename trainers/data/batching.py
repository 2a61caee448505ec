"""Batch arithmetic shared by the input_fns: per-replica sizes and padded eval batches."""

import functools
import math

import tensorflow as tf

from trainers.data import files as files_lib


class RecordFiles:
    """TFRecord files matched by patterns, with the eval arithmetic over all their records."""

    def __init__(self, file_patterns, what):
        self.files = files_lib.expand_patterns(file_patterns, what=what)

    @functools.cached_property
    def num_examples(self):
        """Records in all files, counted once (eval runs at every checkpoint)."""
        return count_records(self.files)

    def eval_steps(self, global_batch_size):
        return eval_steps(self.num_examples, global_batch_size)


def per_replica_batch_size(global_batch_size, input_context):
    if input_context is None:
        return global_batch_size
    return input_context.get_per_replica_batch_size(global_batch_size)


def count_records(files):
    return int(tf.data.TFRecordDataset(files).reduce(
        tf.constant(0, tf.int64), lambda count, _: count + 1))


def eval_steps(num_examples, global_batch_size):
    """Steps that cover every example once at this global batch size."""
    return max(1, math.ceil(num_examples / global_batch_size))


def pipeline_records(files, input_context):
    """Every num_pipelines-th record of the files, in order: this pipeline's eval share."""
    records = tf.data.TFRecordDataset(files)
    if input_context is None:
        return records
    return records.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)


def padded_eval_batches(examples, padding, num_examples, global_batch_size, input_context):
    """This pipeline's examples then copies of `padding`, in exactly eval_steps batches per
    replica, so all replicas run the same steps and no example is dropped or repeated.

    Each pipeline holds at most ceil(num_examples / pipelines) examples, which is no more than
    eval_steps x (global batch / pipelines): the padding only ever fills.
    """
    num_pipelines = input_context.num_input_pipelines if input_context else 1
    per_pipeline = eval_steps(num_examples, global_batch_size) * (
        global_batch_size // num_pipelines)
    padded = examples.concatenate(tf.data.Dataset.from_tensors(padding).repeat())
    return padded.take(per_pipeline).batch(
        per_replica_batch_size(global_batch_size, input_context), drop_remainder=True)
