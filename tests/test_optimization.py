"""The optimizer section of a config reaches the optimizer the trainers build."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from trainers import config as config_lib
from trainers import optimization
from tests.reference import adamw_reference, lamb_reference


@pytest.mark.parametrize("bias_correction", [True, False])
def test_lamb_bias_correction_from_config_matches_the_reference(bias_correction):
    config = config_lib.OptimizerConfig(
        name="lamb", learning_rate=0.05, num_warmup_steps=0, end_learning_rate=0.05,
        lamb=config_lib.LambConfig(weight_decay=0.1, beta_1=0.8, beta_2=0.95,
                                   bias_correction=bias_correction))
    start = [np.linspace(-1.0, 1.0, 12).reshape(3, 4), np.full(4, 0.3)]
    kernel = tf.Variable(start[0], dtype=tf.float32, name="dense/kernel")
    bias = tf.Variable(start[1], dtype=tf.float32, name="dense/bias")
    rng = np.random.default_rng(7)
    grads_per_step = [[rng.normal(size=(3, 4)), rng.normal(size=4)] for _ in range(3)]
    optimizer = optimization.build_optimizer(config, num_train_steps=10,
                                             default_exclusions=["bias"])
    for grads in grads_per_step:
        optimizer.apply_gradients(zip([tf.constant(g, tf.float32) for g in grads],
                                      [kernel, bias]))

    expected, _ = lamb_reference(
        start, grads_per_step, lr=0.05, beta_1=0.8, beta_2=0.95, weight_decay=0.1,
        decay_mask=[True, False], adapt_mask=[True, False], bias_correction=bias_correction)
    np.testing.assert_allclose(kernel.numpy(), expected[0], rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(bias.numpy(), expected[1], rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("nesterov", [True, False])
def test_momentum_nesterov_from_config_matches_the_reference(nesterov):
    config = config_lib.OptimizerConfig(
        name="momentum", learning_rate=0.1, num_warmup_steps=0, end_learning_rate=0.1,
        momentum=config_lib.MomentumConfig(weight_decay=0.0, momentum=0.8, nesterov=nesterov))
    start = np.linspace(-1.0, 1.0, 6)
    variable = tf.Variable(start, dtype=tf.float32, name="dense/kernel")
    optimizer = optimization.build_optimizer(config, num_train_steps=10, default_exclusions=[])
    rng = np.random.default_rng(3)
    expected, velocity = start.copy(), np.zeros(6)
    for _ in range(3):
        gradient = rng.normal(size=6)
        optimizer.apply_gradients([(tf.constant(gradient, tf.float32), variable)])
        # Sutskever et al. (2013) in the "look-ahead" form Keras implements.
        velocity = 0.8 * velocity - 0.1 * gradient
        expected += 0.8 * velocity - 0.1 * gradient if nesterov else velocity
    np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6)


# A value for every field of every section, none of them a default.
YAML_SETTINGS = {
    "lamb": {"weight_decay": 0.03, "beta_1": 0.81, "beta_2": 0.91, "epsilon": 3e-5,
             "bias_correction": False, "weight_norm_bounds": [0.5, 7.0],
             "exclude_from_weight_decay": ["bias"], "exclude_from_layer_adaptation": ["gamma"]},
    "lars": {"momentum": 0.77, "nesterov": True, "trust_coefficient": 0.02, "epsilon": 1e-4,
             "weight_decay": 0.0004, "exclude_from_weight_decay": ["beta"],
             "exclude_from_layer_adaptation": ["gamma"]},
    "adamw": {"weight_decay": 0.05, "beta_1": 0.85, "beta_2": 0.97, "epsilon": 1e-5,
              "amsgrad": True, "exclude_from_weight_decay": ["bias"], "layer_decay": 0.7},
    "momentum": {"momentum": 0.66, "nesterov": True, "weight_decay": 0.002,
                 "exclude_from_weight_decay": ["bias"]},
}


def _yaml_for(name):
    lines = [f"optimizer:", f"  name: {name}", "  learning_rate: 0.1", "  global_clipnorm: 2.5"]
    for section, settings in YAML_SETTINGS.items():
        lines.append(f"  {section}:")
        lines += [f"    {key}: {value}".replace("True", "true").replace("False", "false")
                  .replace("'", "") for key, value in settings.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", sorted(YAML_SETTINGS))
def test_every_optimizer_argument_in_yaml_reaches_that_optimizer_and_no_other(name, tmp_path):
    from trainers.bert.config import BertExperimentConfig
    path = tmp_path / "optimizer.yaml"
    path.write_text(_yaml_for(name))
    config = config_lib.merge(BertExperimentConfig(), config_lib.load_yaml(str(path))).optimizer
    assert set(YAML_SETTINGS[name]) == {f.name for f in dataclasses.fields(config.selected)}, \
        "the test must set every field of the section"
    optimizer = optimization.build_optimizer(config, num_train_steps=10,
                                             default_exclusions=["LayerNorm"],
                                             layer_depths=(lambda path: 0, 1))
    built = optimizer.get_config()
    assert built["global_clipnorm"] == 2.5
    for key, value in YAML_SETTINGS[name].items():
        if key == "exclude_from_weight_decay" and name in ("adamw", "momentum"):
            got = list(optimizer._exclude_from_weight_decay_names)  # tf_keras keeps it here
        else:
            got = built[key]
        got = list(got) if isinstance(got, (list, tuple)) else got
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, key


def _adamw_config(layer_decay, weight_decay=0.1):
    return config_lib.OptimizerConfig(
        name="adamw", learning_rate=0.05, num_warmup_steps=0, end_learning_rate=0.05,
        adamw=config_lib.AdamWConfig(weight_decay=weight_decay, beta_1=0.8, beta_2=0.95,
                                     epsilon=1e-3, layer_decay=layer_decay))


def test_layer_decay_steps_each_depth_at_its_power_of_the_rate():
    start = [np.linspace(-1.0, 1.0, 12).reshape(4, 3), np.linspace(0.5, -0.5, 6).reshape(2, 3),
             np.full(3, 0.3)]
    names = ["net/embeddings/table", "net/layer_0/kernel", "net/head/bias"]
    variables = [tf.Variable(w, dtype=tf.float32, name=n) for w, n in zip(start, names)]
    depths = {"net/embeddings/table": 0, "net/layer_0/kernel": 1, "net/head/bias": 2}
    optimizer = optimization.build_optimizer(
        _adamw_config(layer_decay=0.5), num_train_steps=10, default_exclusions=["bias"],
        layer_depths=(depths.__getitem__, 2))
    rng = np.random.default_rng(5)
    grads_per_step = [[rng.normal(size=w.shape) for w in start] for _ in range(3)]
    for step, grads in enumerate(grads_per_step):
        as_tensors = [tf.constant(g, tf.float32) for g in grads]
        if step == 1:  # an embedding lookup's gradient: rows 0 and 2 only
            rows = grads[0][[0, 2]]
            grads[0] = np.zeros_like(grads[0])
            grads[0][[0, 2]] = rows
            as_tensors[0] = tf.IndexedSlices(tf.constant(rows, tf.float32),
                                             tf.constant([0, 2]), tf.constant([4, 3]))
        optimizer.apply_gradients(zip(as_tensors, variables))
    expected = adamw_reference(start, grads_per_step, factors=[0.25, 0.5, 1.0],
                                decayed=[True, True, False])
    for variable, want in zip(variables, expected):
        np.testing.assert_allclose(variable.numpy(), want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_layer_decay_of_one_is_tf_keras_adamw(amsgrad):
    config = _adamw_config(layer_decay=1.0)
    assert type(optimization.build_optimizer(config, 10, [])) is tf_keras.optimizers.AdamW
    # ... and the layer-wise class at factor 1 takes the same steps.
    start = np.linspace(-1.0, 1.0, 6)
    ours, theirs = (tf.Variable(start, dtype=tf.float32, name="dense/kernel") for _ in range(2))
    settings = dict(learning_rate=0.05, weight_decay=0.1, beta_1=0.8, beta_2=0.95,
                    epsilon=1e-3, amsgrad=amsgrad)
    layerwise = optimization.LayerDecayAdamW(1.0, (lambda path: 0, 3), **settings)
    plain = tf_keras.optimizers.AdamW(**settings)
    rng = np.random.default_rng(9)
    for step in range(4):
        # Large then small: AMSGrad then keeps the larger second moment.
        gradient = tf.constant(rng.normal(size=6) * (3.0 if step < 2 else 0.1), tf.float32)
        layerwise.apply_gradients([(gradient, ours)])
        plain.apply_gradients([(gradient, theirs)])
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6, atol=1e-7)


def test_a_fine_tuning_run_builds_layer_decay_over_the_encoders_depths():
    from trainers.bert.finetune.config import ClassificationExperimentConfig
    from trainers.bert.finetune.task import ClassificationTask
    from trainers.train_state import TrainState
    from lamb_tf import exclusions
    experiment = ClassificationExperimentConfig()
    experiment.task.model.size = "tiny"
    experiment.task.model.vocab_size = 100
    experiment.task.labels = ["a", "b"]
    experiment.task.train_data.max_seq_length = 8
    experiment.trainer.num_train_steps = 10
    experiment.optimizer = _adamw_config(layer_decay=0.8)
    state = TrainState(ClassificationTask(experiment.task), experiment,
                       tf.distribute.OneDeviceStrategy("/cpu:0"))
    factors = {exclusions.variable_path(v): state.inner_optimizer.rate_factor(v)
               for v in state.model.trainable_variables}
    # Tiny: 2 layers; the embeddings 3 steps below the head.
    expected = {"word_embeddings/": 0.8 ** 3, "position_embedding/": 0.8 ** 3,
                "type_embeddings/": 0.8 ** 3, "embeddings/layer_norm/": 0.8 ** 3,
                "transformer/layer_0/": 0.8 ** 2, "transformer/layer_1/": 0.8,
                "pooler_transform/": 1.0, "sentence_prediction/": 1.0}
    for part, factor in expected.items():
        matching = [f for path, f in factors.items() if part in path]
        assert matching and all(f == pytest.approx(factor) for f in matching), part
    assert all(any(part in path for part in expected) for path in factors), "a path unchecked"


def test_layer_decay_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match=r"layer_decay=1.5 must be in \(0, 1\]"):
        optimization.build_optimizer(_adamw_config(1.5), 10, [], (lambda path: 0, 1))
    with pytest.raises(ValueError, match="this task does not say which layer each variable is "
                                         "in; leave layer_decay at 1"):
        optimization.build_optimizer(_adamw_config(0.8), 10, [], None)
    everything_at_the_head = optimization.build_optimizer(_adamw_config(0.8), 10, [],
                                                          (lambda path: 2, 2))
    with pytest.raises(ValueError, match=r"places none of the 1 variables below the head "
                                         r"\(e\.g\. renamed/kernel\)"):
        everything_at_the_head.build([tf.Variable([1.0], name="renamed/kernel")])
    with pytest.raises(NotImplementedError, match="build it with trainers.optimization"):
        optimization.LayerDecayAdamW.from_config(everything_at_the_head.get_config())
