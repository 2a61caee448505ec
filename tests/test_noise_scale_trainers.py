"""The trainers' gradient noise scale: unbiased against linear least squares' closed form
(tests/noise_reference.py) wherever the runner finds gradients at two batch sizes, and written
to TensorBoard in a real BERT run."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from tests import bert_runs, noise_reference
from tests.conftest import two_device_mirrored_strategy
from tests.test_runner import scalars
from trainers import config as config_lib
from trainers import replica_step, runner, task as task_lib
from trainers.bert.config import BertExperimentConfig
from trainers.bert.task import BertPretrainingTask

BATCH, SMALL, STEPS = 64, 32, 256


class LinearInputs:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def train_dataset(self, global_batch_size, input_context=None, seed=None, after=None):
        del after  # no data positions: the runner checkpoints this dataset's iterator
        per_replica = (input_context.get_per_replica_batch_size(global_batch_size)
                       if input_context else global_batch_size)
        return (tf.data.Dataset.from_tensor_slices({"x": self.x, "y": self.y})
                .shuffle(len(self.x), seed=seed).repeat()
                .batch(per_replica, drop_remainder=True))

    def eval_dataset(self, global_batch_size, input_context=None):
        return self.train_dataset(global_batch_size, input_context).take(1)

    def eval_steps(self, global_batch_size):
        return 1


class LinearTask(task_lib.Task):
    """Least squares, loss (x.w - y)^2 per example, at the fixed weights `w`."""

    def __init__(self, x, y, w):
        self.inputs_ = LinearInputs(x, y)
        self.w = w

    def build_model(self):
        model = tf_keras.Sequential([tf_keras.layers.Dense(1, use_bias=False,
                                                           input_shape=(self.w.shape[0],))])
        model.layers[0].set_weights([self.w])
        return model

    def weight_decay_exclusions(self):
        return []

    def inputs(self, mode):
        return self.inputs_

    def model_inputs(self, features):
        return features["x"]

    def loss_normalizers(self, features):
        return {"squared_error": tf.cast(tf.shape(features["y"])[0], tf.float32)}

    def loss_sums(self, features, outputs):
        return {"squared_error": tf.reduce_sum(tf.square(outputs - features["y"]))}

    def build_metrics(self):
        return []

    def update_metrics(self, metrics, features, outputs):
        pass


class CountingLayer(tf_keras.layers.Layer):
    """The identity, counting its training-mode calls in a non-trainable variable: model state
    that a training pass updates, as batch norm's moving statistics."""

    def build(self, input_shape):
        self.count = self.add_weight("count", shape=(), initializer="zeros", trainable=False)

    def call(self, inputs, training=None):
        if training:
            self.count.assign_add(1.0)
        return inputs


class StatefulLinearTask(LinearTask):
    def build_model(self):
        model = super().build_model()
        model.add(CountingLayer())
        return model


def linear_experiment(**trainer):
    # Learning rate 0: the weights, and so |G|^2 and tr(Sigma), stay where they were.
    return config_lib.merge(BertExperimentConfig(), {
        "trainer": {"train_batch_size": BATCH, "num_train_steps": STEPS,
                    "iterations_per_loop": 32, "save_checkpoints_steps": 10 ** 6, **trainer},
        "optimizer": {"name": "momentum", "learning_rate": 0.0, "num_warmup_steps": 0},
    })


LAYOUTS = {
    "two micro-batches": (dict(num_accumulation_steps=2), None, LinearTask),
    "one batch split in two": (dict(noise_scale="split"), None, LinearTask),
    # The halves in extra passes whose state changes are undone.
    "one batch split in two, model with state": (dict(noise_scale="split"), None,
                                                 StatefulLinearTask),
    "two replicas": ({}, two_device_mirrored_strategy, LinearTask),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_the_runners_estimates_are_unbiased_against_the_closed_form(layout, tmp_path):
    trainer, make_strategy, make_task = LAYOUTS[layout]
    x, y, w = noise_reference.problem()
    experiment = linear_experiment(**trainer)
    trained = runner.Runner(make_task(x, y, w), experiment, str(tmp_path),
                            strategy=make_strategy() if make_strategy else None)
    trained.train()
    np.testing.assert_allclose(trained.state.model.layers[0].get_weights()[0], w)
    if make_task is StatefulLinearTask:
        assert float(trained.state.model.layers[1].count.numpy()) == STEPS  # one pass per update
    gradients = noise_reference.per_example_gradients(x, y, w)
    g2, trace = noise_reference.exact_expectations(gradients, SMALL, BATCH)
    sd_g2, sd_trace = noise_reference.estimate_spread(gradients, SMALL, BATCH)
    # An exponential average of decay d over many updates has the variance of a mean of
    # (1 + d) / (1 - d) of them.
    decay = runner.NOISE_SCALE_DECAY
    effective = (1 + decay) / (1 - decay)
    measured = trained.noise_scale
    assert abs(measured.gradient_sq_norm - g2) <= 4 * sd_g2 / math.sqrt(effective), (
        measured.gradient_sq_norm, g2)
    assert abs(measured.trace_sigma - trace) <= 4 * sd_trace / math.sqrt(effective), (
        measured.trace_sigma, trace)


@pytest.mark.parametrize("trainer", [{}, {"num_accumulation_steps": 2,
                                      "noise_scale": "disabled"}])
def test_nothing_is_measured_off_or_without_two_batch_sizes(tmp_path, trainer):
    x, y, w = noise_reference.problem(num_examples=256)
    trained = runner.Runner(LinearTask(x, y, w), linear_experiment(num_train_steps=4, **trainer),
                            str(tmp_path))
    trained.train()
    assert not trained.noise_scale.ready


def test_an_odd_batch_cannot_be_split_and_says_so(tmp_path):
    x, y, w = noise_reference.problem(num_examples=256)
    with pytest.raises(ValueError, match=r"train_batch_size=63 is odd: "
                                         r"trainer\.noise_scale=split cuts"):
        runner.Runner(LinearTask(x, y, w), linear_experiment(
            train_batch_size=63, noise_scale="split"), str(tmp_path))
    with pytest.raises(ValueError, match=r"trainer\.noise_scale='always'; choose one of "
                                         r"\['auto', 'split', 'disabled'\]"):
        runner.Runner(LinearTask(x, y, w), linear_experiment(noise_scale="always"),
                      str(tmp_path))


def test_a_bert_run_writes_the_noise_scale_to_tensorboard(tmp_path_factory):
    data_dir = bert_runs.make_data(str(tmp_path_factory.mktemp("noise_bert")))
    experiment = bert_runs.experiment(data_dir, trainer={"num_accumulation_steps": 2})
    model_dir = str(tmp_path_factory.mktemp("noise_bert_run"))
    runner.run(BertPretrainingTask(experiment.task), experiment, model_dir)
    b_simple = scalars(model_dir, "noise_scale/b_simple")
    assert [step for step, _ in b_simple] == [2, 4]
    g2 = dict(scalars(model_dir, "noise_scale/gradient_sq_norm"))
    trace = dict(scalars(model_dir, "noise_scale/trace_sigma"))
    for step, value in b_simple:
        assert value == pytest.approx(trace[step] / g2[step], rel=1e-5)


def _resnet_run(model_dir, noise_scale):
    from trainers.resnet.config import ResNetExperimentConfig
    from trainers.resnet.task import ResNetTask
    experiment = config_lib.merge(ResNetExperimentConfig(), {
        "task": {"model": {"model_id": 10, "num_classes": 3, "image_size": 16,
                           "norm_momentum": 0.5}, "use_synthetic_data": True},
        "trainer": {"train_batch_size": 8, "num_train_steps": 3, "iterations_per_loop": 3,
                    "save_checkpoints_steps": 3, "noise_scale": noise_scale},
        "optimizer": {"name": "momentum", "learning_rate": 0.1, "num_warmup_steps": 0},
    })
    trained = runner.Runner(ResNetTask(experiment.task), experiment, model_dir)
    trained.train()
    return trained


def test_split_leaves_a_batch_norm_model_as_it_trains_without_it(tmp_path):
    # Halves would normalize by half-batch statistics and update the moving averages twice.
    plain = _resnet_run(str(tmp_path / "plain"), "disabled")
    split = _resnet_run(str(tmp_path / "split"), "split")
    assert split.noise_scale.ready and not plain.noise_scale.ready
    names = [v.name for v in plain.state.model.variables]  # (the second model's get a suffix)
    assert any("moving_mean" in n for n in names)
    assert len(names) == len(split.state.model.variables)
    for name, want, got in zip(names, plain.state.model.variables, split.state.model.variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    for want, got in zip(replica_step.dropout_generators(plain.state.model),
                         replica_step.dropout_generators(split.state.model)):
        np.testing.assert_array_equal(got.state.numpy(), want.state.numpy())
