"""The optimizer section of a config reaches the optimizer the trainers build."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from trainers import config as config_lib
from trainers import optimization
from tests.reference import lamb_reference


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
              "amsgrad": True, "exclude_from_weight_decay": ["bias"]},
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
                                             default_exclusions=["LayerNorm"])
    built = optimizer.get_config()
    assert built["global_clipnorm"] == 2.5
    for key, value in YAML_SETTINGS[name].items():
        if key == "exclude_from_weight_decay" and name in ("adamw", "momentum"):
            got = list(optimizer._exclude_from_weight_decay_names)  # tf_keras keeps it here
        else:
            got = built[key]
        got = list(got) if isinstance(got, (list, tuple)) else got
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, key
