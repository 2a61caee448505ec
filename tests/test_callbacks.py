"""TrustRatioLogger: what `model.fit` users see in TensorBoard."""

import collections

import keras
import numpy as np
import pytest
import tensorflow as tf

import lamb_tf


def _events(log_dir):
    """{tag: {step: value or histogram}} from the event files in log_dir."""
    found = collections.defaultdict(dict)
    for path in tf.io.gfile.glob(f"{log_dir}/events*"):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found[value.tag][event.step] = tf.make_ndarray(value.tensor)
    return found


def _fit(log_dir, every_n_steps, steps_per_execution=1, optimizer=None):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    schedule = lamb_tf.WarmupPolynomialDecay(peak_learning_rate=0.01, total_steps=12,
                                             warmup_steps=4)
    optimizer = optimizer or lamb_tf.Lamb(learning_rate=schedule, weight_decay=0.01,
                                          exclude_from_weight_decay=["bias"])
    model.compile(optimizer=optimizer, loss="mse", steps_per_execution=steps_per_execution)
    x = np.random.default_rng(0).normal(size=(96, 4)).astype(np.float32)
    logger = lamb_tf.callbacks.TrustRatioLogger(str(log_dir), every_n_steps=every_n_steps)
    model.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=0, shuffle=False,
              callbacks=[logger])
    return model, schedule


def test_logs_trust_ratios_and_learning_rate_every_n_updates(tmp_path):
    model, schedule = _fit(tmp_path, every_n_steps=5)
    events = _events(tmp_path)
    paths = [v.path for v in model.trainable_variables]
    assert sorted(events["trust_ratio"]) == [5, 10]
    for path in paths:
        assert sorted(events[f"trust_ratio/{path}"]) == [5, 10]
    # Like Keras's own TensorBoard callback: the rate the schedule gives at `iterations`.
    for step in (5, 10):
        assert float(events["learning_rate"][step]) == pytest.approx(float(schedule(step)),
                                                                     rel=1e-6)
    for path in paths:
        logged = float(events[f"trust_ratio/{path}"][10])
        assert (logged == 1.0) == path.endswith("bias")
    histogram = events["trust_ratio"][10]
    assert histogram[:, 2].sum() == len(paths)  # one count per variable


def test_steps_per_execution_still_logs_once_per_multiple(tmp_path):
    _fit(tmp_path, every_n_steps=5, steps_per_execution=3)
    assert sorted(_events(tmp_path)["trust_ratio"]) == [6, 12]  # first calls past 5 and 10


def test_an_optimizer_without_trust_ratios_is_named(tmp_path):
    with pytest.raises(ValueError, match="TrustRatioLogger needs a lamb_tf optimizer .* "
                                         "compiled with Adam"):
        _fit(tmp_path, every_n_steps=5, optimizer=keras.optimizers.Adam())
