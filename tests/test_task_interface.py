"""Tasks written to the interface of before data positions (input functions without `after`)
train and resume as they did then: called without `after`, their iterator checkpointed whole."""

import numpy as np
import pytest
import tensorflow as tf

from tests import noise_reference
from tests.test_noise_scale_trainers import LinearInputs, LinearTask, linear_experiment
from trainers import runner
from trainers.data import positions

STEPS = 4


class OldInputs(LinearInputs):
    """`train_dataset` as documented before data positions: no `after`."""

    def train_dataset(self, global_batch_size, input_context=None, seed=None):
        return super().train_dataset(global_batch_size, input_context, seed)


class OldInputFnTask(LinearTask):
    """A custom task overriding `input_fn` with the documented signature of then."""

    def input_fn(self, mode, global_batch_size, input_context, seed=None):
        if mode == "train":
            return self.inputs_.train_dataset(global_batch_size, input_context, seed)
        return self.inputs_.eval_dataset(global_batch_size, input_context)


class OldInputsTask(LinearTask):
    def __init__(self, x, y, w):
        super().__init__(x, y, w)
        self.inputs_ = OldInputs(x, y)


class PositionedInputs(LinearInputs):
    """Batches carrying data positions (epoch 0, window 0, record index) and resuming after one,
    as the built-in tasks' do."""

    def train_dataset(self, global_batch_size, input_context=None, seed=None,
                      after=positions.NOTHING_READ):
        count = len(self.x)
        records = tf.data.Dataset.from_tensor_slices({
            "x": self.x, "y": self.y,
            positions.POSITION_KEY: np.stack([np.zeros(count), np.zeros(count),
                                              np.arange(count)], 1).astype(np.int64)})
        return records.repeat().skip(after[2] + 1).batch(global_batch_size, drop_remainder=True)


class SubclassWithOldInputFn(LinearTask):
    """A subclass of a task whose batches carry positions, overriding `input_fn` the old way
    (calling the base class without `after`)."""

    def __init__(self, x, y, w):
        super().__init__(x, y, w)
        self.inputs_ = PositionedInputs(x, y)

    def input_fn(self, mode, global_batch_size, input_context, seed=None):
        return super().input_fn(mode, global_batch_size, input_context, seed)


class PositionedInputsWithoutAfter(PositionedInputs):
    def train_dataset(self, global_batch_size, input_context=None, seed=None):
        return super().train_dataset(global_batch_size, input_context, seed)


class PositionedInputsWithoutAfterTask(LinearTask):
    """Batches with data positions from a `train_dataset` that cannot start after one."""

    def __init__(self, x, y, w):
        super().__init__(x, y, w)
        self.inputs_ = PositionedInputsWithoutAfter(x, y)


def _experiment():
    experiment = linear_experiment(num_train_steps=STEPS, iterations_per_loop=1,
                                   save_checkpoints_steps=1)
    experiment.optimizer.learning_rate = 0.05
    return experiment


def _weights_after(make_task, model_dir, stops):
    """The weights after runs in `model_dir` stopped at each step of `stops` (a stopped run's
    checkpoint is where the next one resumes)."""
    x, y, w = noise_reference.problem(num_examples=256)
    for stop in stops:
        trained = runner.Runner(make_task(x, y, w), _experiment(), str(model_dir))
        trained.train(eval_each_checkpoint=True,
                      stop_when=lambda _, trained=trained, stop=stop: trained.step >= stop)
    return trained.state.model.layers[0].get_weights()[0]


@pytest.mark.parametrize("make_task", [OldInputFnTask, OldInputsTask, SubclassWithOldInputFn,
                                       PositionedInputsWithoutAfterTask])
def test_a_task_without_after_trains_and_resumes_exactly(tmp_path, make_task):
    x, y, w = noise_reference.problem(num_examples=256)
    whole = _weights_after(make_task, tmp_path / "whole", [STEPS])
    resumed = _weights_after(make_task, tmp_path / "resumed", [STEPS // 2, STEPS])
    assert np.abs(whole - w).max() > 1e-3  # it trained
    np.testing.assert_array_equal(resumed, whole)


def test_positions_a_train_dataset_cannot_resume_from_are_dropped_with_a_warning(
        tmp_path, caplog):
    # As for an old input_fn (SubclassWithOldInputFn): its iterator is checkpointed instead,
    # which the resume test above shows exact; the positions must not reach the runner, which
    # would save them and resume from a position the dataset ignores.
    x, y, w = noise_reference.problem(num_examples=256)
    with caplog.at_level("WARNING"):
        batches = PositionedInputsWithoutAfterTask(x, y, w).input_fn("train", 8, None)
    assert positions.POSITION_KEY not in batches.element_spec
    assert any("PositionedInputsWithoutAfter.train_dataset takes no `after`" in r.getMessage()
               and "checkpointed instead" in r.getMessage() for r in caplog.records)


class RecordingTask(LinearTask):
    record = "vocab one"

    def model_dir_records(self):
        return {"vocab.txt": self.record}


def test_a_resumed_run_must_record_what_its_checkpoints_were_trained_with(tmp_path):
    x, y, w = noise_reference.problem(num_examples=256)
    task = RecordingTask(x, y, w)
    first = runner.Runner(task, _experiment(), str(tmp_path))
    first.train(eval_each_checkpoint=True, stop_when=lambda _: first.step >= 2)
    assert (tmp_path / "vocab.txt").read_text() == "vocab one"
    task.record = "vocab two"
    with pytest.raises(ValueError, match=r"vocab\.txt records what the checkpoints in .* were "
                                         r"trained with, and this run's vocab\.txt differs"):
        runner.Runner(task, _experiment(), str(tmp_path)).train()
    assert (tmp_path / "vocab.txt").read_text() == "vocab one"


@pytest.mark.parametrize("is_chief", [True, False])
def test_every_worker_refuses_other_records_before_it_writes_or_restores(tmp_path, monkeypatch,
                                                                          is_chief):
    """Under MultiWorkerMirrored a check on the chief alone would let the chief exit while the
    other workers wait for it in collectives: each worker compares the records on its own,
    with the params and stream checks, before model_dir or the model changes."""
    x, y, w = noise_reference.problem(num_examples=256)
    task = RecordingTask(x, y, w)
    first = runner.Runner(task, _experiment(), str(tmp_path))
    first.train(eval_each_checkpoint=True, stop_when=lambda _: first.step >= 2)
    task.record = "vocab two"

    def too_early(*_, **__):
        raise AssertionError("wrote or restored before comparing the records")

    monkeypatch.setattr(runner.checkpointing, "remove_interrupted_writes", too_early)
    monkeypatch.setattr(runner.params_record.ParamsRecord, "write", too_early)
    monkeypatch.setattr(runner.checkpointing, "RunCheckpoints", too_early)
    monkeypatch.setattr(runner.Runner, "_restore_or_initialize", too_early)
    again = runner.Runner(task, _experiment(), str(tmp_path))
    again.is_chief = is_chief
    with pytest.raises(ValueError, match=r"vocab\.txt records what the checkpoints in .* were "
                                         r"trained with, and this run's vocab\.txt differs"):
        again.train()
    assert (tmp_path / "vocab.txt").read_text() == "vocab one"
