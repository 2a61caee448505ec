"""The gradient noise scale against linear least squares, whose per-example gradients, |G|^2
and tr(Sigma) are known in closed form (tests/noise_reference.py)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import lamb_tf
from lamb_tf import noise_scale
from tests import noise_reference

BATCH, PARTS, EPOCHS = 64, 2, 4


def within_sampling_error(measured, expected, spread, count, sigmas=4.0):
    return abs(measured - expected) <= sigmas * spread / math.sqrt(count)


def test_keras_measure_is_unbiased_against_the_closed_form():
    x, y, w = noise_reference.problem()
    model = keras.Sequential([keras.Input((x.shape[1],)),
                              keras.layers.Dense(1, use_bias=False)])
    model.layers[0].set_weights([w])
    model.compile(optimizer=lamb_tf.Lamb(), loss="mse")
    dataset = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=3)
               .batch(BATCH, drop_remainder=True).repeat(EPOCHS))
    result = noise_scale.measure(model, dataset, num_parts=PARTS)
    gradients = noise_reference.per_example_gradients(x, y, w)  # mse: d/dw (x.w - y)^2
    g2, trace = noise_reference.exact_expectations(gradients, BATCH // PARTS, BATCH)
    sd_g2, sd_trace = noise_reference.estimate_spread(gradients, BATCH // PARTS, BATCH)
    count = result["batches"]
    assert count == EPOCHS * len(x) // BATCH
    assert within_sampling_error(result["gradient_sq_norm"], g2, sd_g2, count), (result, g2)
    assert within_sampling_error(result["trace_sigma"], trace, sd_trace, count), (result, trace)
    assert result["b_simple"] == pytest.approx(result["trace_sigma"] / result["gradient_sq_norm"])
    np.testing.assert_allclose(model.layers[0].get_weights()[0], w)  # nothing was trained


def test_keras_measure_needs_a_compiled_model_and_two_parts():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    dataset = tf.data.Dataset.from_tensor_slices((np.ones((4, 2)), np.ones((4, 1)))).batch(4)
    with pytest.raises(ValueError, match=r"needs a compiled model: call model\.compile"):
        noise_scale.measure(model, dataset)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"num_parts=1 must be >= 2"):
        noise_scale.measure(model, dataset, num_parts=1)


def test_keras_measure_leaves_batch_norm_statistics_and_seeds_as_they_were():
    rng = np.random.default_rng(4)
    x = rng.normal(3.0, 2.0, (64, 5)).astype(np.float32)
    y = rng.normal(size=(64, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8),
                              keras.layers.BatchNormalization(), keras.layers.Dropout(0.3),
                              keras.layers.Dense(1)])
    model.compile(optimizer=lamb_tf.Lamb(), loss="mse", metrics=["mae"])
    before = [np.array(v.numpy()) for v in model.variables]
    assert any("moving_mean" in v.path for v in model.variables)
    result = noise_scale.measure(model, tf.data.Dataset.from_tensor_slices((x, y)).batch(16))
    assert result["batches"] == 4 and np.isfinite(result["b_simple"])
    for variable, value in zip(model.variables, before):
        np.testing.assert_array_equal(variable.numpy(), value, err_msg=variable.path)
