"""Training data that resumes from its position: the stream, the epochs, the checkpoint size."""

import os

import numpy as np
import pytest
import tensorflow as tf

from tests import bert_runs
from trainers import runner
from trainers.bert.task import BertPretrainingTask
from trainers.data import positions


def write_files(directory, num_files, records_per_file, record_bytes=8):
    paths = []
    for f in range(num_files):
        path = os.path.join(directory, f"part-{f:02d}.tfrecord")
        with tf.io.TFRecordWriter(path) as writer:
            for r in range(records_per_file):
                writer.write(f"{f:03d}-{r:04d}".encode().ljust(record_bytes, b"."))
        paths.append(path)
    return paths


def stream(files, count, context=None, after=positions.NOTHING_READ, buffer=16, cycle=3):
    dataset = positions.training_records(files, context, seed=7, cycle_length=cycle,
                                         shuffle_buffer_size=buffer, after=after)
    return [(record, tuple(int(v) for v in where))
            for record, where in dataset.take(count).as_numpy_iterator()]


@pytest.mark.parametrize("num_pipelines", [1, 2, 7], ids=["one", "own_files", "sharded"])
def test_resuming_after_any_record_continues_the_uninterrupted_stream(tmp_path, num_pipelines):
    """7 pipelines over 5 files shard records instead of files; windows of 3 files and a
    buffer of 16 put resumes inside windows, at their ends and across epochs."""
    files = write_files(tmp_path, num_files=5, records_per_file=11)
    context = tf.distribute.InputContext(num_pipelines, num_pipelines - 1, num_pipelines)
    per_epoch = 55 // num_pipelines if num_pipelines > 5 else None
    whole = stream(files, 130, context)
    for cut in range(0, 120, 7):
        resumed = stream(files, 10, context, after=whole[cut][1])
        assert resumed == whole[cut + 1:cut + 11], f"resumed after record {cut} ({whole[cut][1]})"
    if per_epoch:
        assert len({w[0] for _, w in whole[:per_epoch]}) == 1


def test_every_epoch_reads_each_record_of_the_pipeline_once_in_a_new_order(tmp_path):
    files = write_files(tmp_path, num_files=5, records_per_file=11)
    pipelines = [stream(files, 3 * 33, tf.distribute.InputContext(2, p, 2)) for p in (0, 1)]
    own = [{r for r, _ in pipeline} for pipeline in pipelines]
    assert not own[0] & own[1]  # each pipeline its own files
    whole = stream(files, 3 * 55)
    epochs = [[r for r, w in whole if w[0] == e] for e in range(3)]
    assert all(sorted(e) == sorted(epochs[0]) and len(set(e)) == 55 for e in epochs)
    assert epochs[0] != epochs[1] != epochs[2]  # reshuffled every epoch


def test_the_order_is_mixed_within_windows_not_file_by_file(tmp_path):
    files = write_files(tmp_path, num_files=6, records_per_file=40)
    records = [r for r, _ in stream(files, 120, buffer=120, cycle=3)]
    first_files = {r[:3] for r in records[:20]}
    assert len(first_files) == 3  # the first 20 records come from all 3 files of the window
    numbers = [int(r[4:8]) for r in records[:40]]
    assert numbers != sorted(numbers)


def test_a_data_position_checkpoint_is_bytes_whatever_the_shuffle_buffer(tmp_path):
    """The tf.data iterator checkpointed before held the shuffle buffer: 10,000 records here."""
    data_dir = bert_runs.make_data(str(tmp_path / "data"))
    sizes = {}
    for buffer in (100, 10000):
        model_dir = str(tmp_path / f"run_{buffer}")
        experiment = bert_runs.experiment(
            data_dir, task={"train_data": {"shuffle_buffer_size": buffer}},
            trainer={"num_train_steps": 2, "iterations_per_loop": 2,
                     "save_checkpoints_steps": 2})
        runner.Runner(BertPretrainingTask(experiment.task), experiment, model_dir).train()
        position_dir = os.path.join(model_dir, "train_data", "worker_0")
        sizes[buffer] = sum(os.path.getsize(os.path.join(position_dir, name))
                            for name in os.listdir(position_dir) if name.startswith("ckpt-2"))
        reader = tf.train.load_checkpoint(os.path.join(position_dir, "ckpt-2"))
        saved = reader.get_tensor("train_data_position/.ATTRIBUTES/VARIABLE_VALUE")
        assert saved[0] == 0 and saved[2] == 2 * 16 - 1  # epoch 0, 32 records read
    assert sizes[100] == sizes[10000] < 4096, sizes


def test_a_global_seed_of_zero_does_not_break_the_pipeline(tmp_path):
    """tf.data's shuffle takes no tensor seed once tf.random.set_seed(0) ran (runtime.seed=0)."""
    files = write_files(tmp_path, num_files=2, records_per_file=5)
    tf.random.set_seed(0)
    try:
        assert len(stream(files, 12)) == 12
    finally:
        tf.random.set_seed(None)


@pytest.mark.parametrize("how", ["experimental_distribute_dataset",
                                 "distribute_datasets_from_function"])
def test_a_distributed_iterator_cannot_be_checkpointed_so_positions_are_needed(how):
    """Why each worker iterates its own pipeline and saves its position (trainers/input.py):
    tf.distribute's iterator is not trackable in TF 2.20 (tensorflow#56372). If this starts
    failing, TensorFlow can checkpoint it now, and the input could be distributed by it."""
    from tests.conftest import two_device_mirrored_strategy
    strategy = two_device_mirrored_strategy()
    dataset = tf.data.Dataset.range(64).batch(4)
    if how == "experimental_distribute_dataset":
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
    else:
        iterator = iter(strategy.distribute_datasets_from_function(lambda context: dataset))
    next(iterator)
    with pytest.raises(ValueError, match="expecting iterator to be a trackable object"):
        tf.train.Checkpoint(iterator=iterator)


def test_each_input_host_saves_the_position_of_its_last_replica(monkeypatch):
    """A TPU pod slice is one process with an input pipeline per host: its checkpoint holds one
    position per host, each from the batch of that host's last replica (replicas in host
    order). Two logical devices stand in for two hosts of one core each."""
    from tests.conftest import two_device_mirrored_strategy
    from trainers import input as input_lib
    monkeypatch.setattr(input_lib, "_input_hosts", lambda strategy: 2)
    strategy = two_device_mirrored_strategy()
    train_input = input_lib.TrainInput(task=None, strategy=strategy, global_batch_size=8, seed=0)
    train_input.carries_position = True
    assert train_input.position.shape == (2, 3)
    ends = {0: [1, 0, 7], 1: [1, 2, 5]}
    last = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant(ends[context.replica_id_in_sync_group], tf.int64))
    train_input.record_position(last)
    np.testing.assert_array_equal(train_input.position.numpy(), [ends[0], ends[1]])
    assert train_input._saved(1) == (1, 2, 5)
