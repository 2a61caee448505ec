"""Keras 3's optimizer conventions, for `lamb_tf.Lamb` and `lamb_tf.Lars`, in the form of Keras's
own `keras/src/optimizers/optimizer_test.py` (shipped in the keras wheel), with expected values
from an independent source: numpy, or the same optimizer run without the feature."""

import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import lamb_tf
from lamb_tf import legacy

ALGORITHMS = {
    "Lamb": lambda **kw: lamb_tf.Lamb(**{"learning_rate": 0.1, "weight_decay": 0.01, **kw}),
    "Lars": lambda **kw: lamb_tf.Lars(**{"learning_rate": 0.5, "weight_decay": 0.01, **kw}),
}
START = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)


def grads_at(step):
    return tf.constant(np.array([[1.0, -2.0], [0.5, 3.0]], np.float32) * (1.0 + 0.3 * step))


def run(make, steps, start=START, **kwargs):
    """The variable's value after each of `steps` updates."""
    variable = keras.Variable(start)
    optimizer = make(**kwargs)
    values = []
    for step in range(steps):
        optimizer.apply_gradients([(grads_at(step), variable)])
        values.append(variable.numpy().copy())
    return values, optimizer, variable


@pytest.fixture(autouse=True)
def fresh_names():
    keras.backend.clear_session()  # Keras numbers auto-names per session


def test_keras3_names_follow_keras_auto_naming():
    assert [lamb_tf.Lamb().name, lamb_tf.Lamb().name] == ["lamb", "lamb_1"]
    assert [lamb_tf.Lars().name, lamb_tf.Lars().name] == ["lars", "lars_1"]
    assert lamb_tf.Lamb(name="encoder_lamb").name == "encoder_lamb"
    keras.optimizers.AdamW()  # Keras's own share the counter per name only
    assert lamb_tf.Lamb().name == "lamb_2"


def test_legacy_names_follow_tf_keras_class_names():
    # tf_keras names an optimizer after its class and does not number them.
    assert tf_keras.optimizers.AdamW().name == "AdamW"
    assert [legacy.Lamb().name, legacy.Lamb().name, legacy.Lars().name] == [
        "Lamb", "Lamb", "Lars"]


def test_two_optimizers_in_one_program_have_distinct_variable_paths():
    first, second = lamb_tf.Lamb(), lamb_tf.Lamb()
    first.build([keras.Variable(START, name="kernel")])
    second.build([keras.Variable(START, name="kernel")])
    first_paths = {v.path for v in first.variables}
    second_paths = {v.path for v in second.variables}
    assert not first_paths & second_paths, first_paths & second_paths


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_ema_averages_the_weights_and_overwrites_them_every_n_updates(algorithm):
    plain, _, _ = run(ALGORITHMS[algorithm], 4)
    averaged, optimizer, variable = run(ALGORITHMS[algorithm], 2, use_ema=True,
                                        ema_momentum=0.9, ema_overwrite_frequency=3)
    np.testing.assert_allclose(averaged, plain[:2], rtol=1e-6)
    ema = plain[0]  # Keras: the average starts at the first update's weights
    ema = 0.9 * ema + 0.1 * plain[1]
    np.testing.assert_allclose(optimizer._model_variables_moving_average[0], ema, rtol=1e-6)
    optimizer.apply_gradients([(grads_at(2), variable)])
    ema = 0.9 * ema + 0.1 * plain[2]
    np.testing.assert_allclose(variable.numpy(), ema, rtol=1e-6)  # overwritten at update 3


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_constraints_are_applied_after_the_update(algorithm):
    variable = keras.Variable(-np.abs(START))
    variable.constraint = keras.constraints.NonNeg()
    ALGORITHMS[algorithm]().apply_gradients([(grads_at(0), variable)])
    assert np.min(variable.numpy()) == 0.0


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_loss_scale_factor_unscales_the_gradients(algorithm):
    plain, _, _ = run(ALGORITHMS[algorithm], 1)
    variable = keras.Variable(START)
    optimizer = ALGORITHMS[algorithm](loss_scale_factor=1024.0)
    optimizer.apply_gradients([(grads_at(0) * 1024.0, variable)])
    assert float(optimizer.scale_loss(1.0)) == 1024.0
    np.testing.assert_allclose(variable.numpy(), plain[0], rtol=1e-6)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_set_weights_copies_the_whole_state(algorithm):
    plain, trained, _ = run(ALGORITHMS[algorithm], 3)
    variable = keras.Variable(plain[1])
    copy = ALGORITHMS[algorithm]()
    with pytest.raises(ValueError, match="You are calling"):
        copy.set_weights(trained.variables)
    copy.build([variable])
    _, two_steps, _ = run(ALGORITHMS[algorithm], 2)
    copy.set_weights(two_steps.variables)
    copy.apply_gradients([(grads_at(2), variable)])
    np.testing.assert_allclose(variable.numpy(), plain[2], rtol=1e-6)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_a_callable_learning_rate_is_called_at_each_update(algorithm):
    constant, _, _ = run(ALGORITHMS[algorithm], 2, learning_rate=0.05)
    rates = iter([0.05, 0.05])
    called, _, _ = run(ALGORITHMS[algorithm], 2, learning_rate=lambda: next(rates))
    np.testing.assert_allclose(called, constant, rtol=1e-6)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_setting_a_schedule_untracks_the_learning_rate_variable(algorithm):
    optimizer = ALGORITHMS[algorithm]()
    tracked = len(optimizer.variables)
    optimizer.learning_rate = keras.optimizers.schedules.PolynomialDecay(0.1, 4)
    assert len(optimizer.variables) == tracked - 1


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_pickling_keeps_the_config(algorithm):
    optimizer = ALGORITHMS[algorithm](exclude_from_weight_decay=["bias"])
    reloaded = pickle.loads(pickle.dumps(optimizer))
    assert type(reloaded) is type(optimizer)
    assert reloaded.get_config() == optimizer.get_config()


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_overwrite_with_gradient_variables_take_their_gradient(algorithm):
    plain, _, _ = run(ALGORITHMS[algorithm], 1)
    overwritten = keras.Variable(START)
    overwritten.overwrite_with_gradient = True
    updated = keras.Variable(START)
    ALGORITHMS[algorithm]().apply_gradients(
        [(grads_at(0), overwritten), (grads_at(0), updated)])
    np.testing.assert_array_equal(overwritten.numpy(), grads_at(0).numpy())
    np.testing.assert_allclose(updated.numpy(), plain[0], rtol=1e-6)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_overwrite_with_gradient_under_accumulation_takes_the_maximum(algorithm):
    """Keras's rule for float8 scale variables: the largest gradient of the k micro-batches."""
    overwritten = keras.Variable(START)
    overwritten.overwrite_with_gradient = True
    other = keras.Variable(START)
    optimizer = ALGORITHMS[algorithm](gradient_accumulation_steps=2)
    small, large = tf.ones([2, 2]), 2.0 * tf.ones([2, 2])
    optimizer.apply_gradients([(small, overwritten), (small, other)])
    np.testing.assert_array_equal(overwritten.numpy(), START)
    optimizer.apply_gradients([(large, overwritten), (large, other)])
    np.testing.assert_array_equal(overwritten.numpy(), 2.0 * np.ones([2, 2]))
    assert int(optimizer.iterations) == 1


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_accumulating_three_gradients_equals_one_update_with_their_mean(algorithm):
    rng = np.random.default_rng(0)
    whole, accumulated = keras.Variable([[0.9], [0.5]]), keras.Variable([[0.9], [0.5]])
    one = ALGORITHMS[algorithm]()
    three = ALGORITHMS[algorithm](gradient_accumulation_steps=3)
    for _ in range(4):
        grads = rng.random([3, 2, 1]).astype(np.float32)
        one.apply_gradients([(tf.constant(grads.mean(axis=0)), whole)])
        for micro in grads:
            three.apply_gradients([(tf.constant(micro), accumulated)])
    np.testing.assert_allclose(accumulated.numpy(), whole.numpy(), rtol=1e-5)
    np.testing.assert_allclose(three._accumulated_gradients[0].numpy(), 0.0)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_keras_and_tf_variables_mixed_and_missing_gradients(algorithm):
    keras_variable, tf_variable = keras.Variable(START), tf.Variable(START)
    optimizer = ALGORITHMS[algorithm]()
    optimizer.apply_gradients([(grads_at(0), keras_variable), (grads_at(0), tf_variable)])
    np.testing.assert_allclose(tf_variable.numpy(), keras_variable.numpy(), rtol=1e-6)
    with pytest.warns(UserWarning, match="Gradients do not exist for variables"):
        optimizer.apply_gradients([(grads_at(1), keras_variable), (None, tf_variable)])
    assert int(optimizer.iterations) == 2
    with pytest.raises(ValueError, match="No gradients provided for any variable"):
        optimizer.apply_gradients([(None, keras_variable)])


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_tf_checkpoint_restores_model_and_optimizer(algorithm, tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile(ALGORITHMS[algorithm](), "mse")
    x, y = np.random.default_rng(0).random((2, 1, 2))
    model.train_on_batch(x, y)
    saved = model.predict(x, verbose=0)
    path = tf.train.Checkpoint(model, optimizer=model.optimizer).save(str(tmp_path / "ckpt"))
    model.train_on_batch(x, y)
    assert not np.allclose(model.predict(x, verbose=0), saved, atol=1e-4)
    tf.train.Checkpoint(model, optimizer=model.optimizer).restore(path)
    np.testing.assert_allclose(model.predict(x, verbose=0), saved, atol=1e-6)
