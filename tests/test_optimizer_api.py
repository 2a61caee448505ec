"""Constructor checks, exclusion warnings, serialization and the Keras exclusion method."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import lamb_tf
from tests.generations import GENERATIONS, Keras3, Legacy
from tests.reference import schedule_reference

BAD_ARGUMENTS = [
    ("Lamb", dict(beta_1=1.0), "beta_1"),
    ("Lamb", dict(beta_2=-0.1), "beta_2"),
    ("Lamb", dict(epsilon=-1e-6), "epsilon"),
    ("Lamb", dict(weight_decay=-0.01), "weight_decay"),
    ("Lamb", dict(learning_rate=-1.0), "learning_rate"),
    ("Lamb", dict(weight_norm_bounds=(2.0, 1.0)), "weight_norm_bounds"),
    ("Lamb", dict(weight_norm_bounds=3.0), "weight_norm_bounds"),
    ("Lamb", dict(exclude_from_weight_decay="bias"), "exclude_from_weight_decay=\\['bias'\\]"),
    ("Lamb", dict(exclude_from_layer_adaptation=["bias("]), "invalid regular expression"),
    ("Lars", dict(momentum=1.0), "momentum"),
    ("Lars", dict(momentum=-0.5), "momentum"),
    ("Lars", dict(trust_coefficient=0.0), "trust_coefficient"),
    ("Lars", dict(epsilon=-1.0), "epsilon"),
    ("Lars", dict(weight_decay=-1e-4), "weight_decay"),
]


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
@pytest.mark.parametrize("algorithm,kwargs,message", BAD_ARGUMENTS)
def test_out_of_range_hyperparameters_raise_naming_the_argument(
        generation, algorithm, kwargs, message):
    with pytest.raises(ValueError, match=message):
        getattr(generation, algorithm)(**kwargs)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_pattern_matching_nothing_warns_once_at_build(generation):
    variables = generation.make_variables(
        [("dense/kernel", np.ones((2, 2), np.float32)), ("dense/bias", np.zeros(2, np.float32))])
    optimizer = generation.Lamb(weight_decay=0.01,
                                exclude_from_weight_decay=["bias", "LayerNorm"])
    with pytest.warns(UserWarning, match="'LayerNorm'.*matches none of the 2 variables"):
        optimizer.build(variables)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(2):
            generation.apply(optimizer, [tf.ones((2, 2)), tf.ones(2)], variables)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
@pytest.mark.parametrize("algorithm", ["Lamb", "Lars"])
def test_every_argument_survives_serialization(generation, algorithm):
    schedule = generation.WarmupPolynomialDecay(
        0.1, total_steps=100, warmup_steps=10, end_learning_rate=0.001, power=2.0,
        start_warmup_step=5)
    specific = (dict(beta_1=0.8, beta_2=0.98, epsilon=1e-5, bias_correction=False,
                     weight_norm_bounds=(0.1, 10.0))
                if algorithm == "Lamb" else
                dict(momentum=0.8, trust_coefficient=0.02, epsilon=1e-5, nesterov=True))
    optimizer = getattr(generation, algorithm)(
        learning_rate=schedule, weight_decay=0.02, exclude_from_weight_decay=["bias"],
        exclude_from_layer_adaptation=["LayerNorm", "bias"], global_clipnorm=1.0,
        name="my_opt", **specific)
    restored = generation.deserialize(generation.serialize(optimizer))
    assert type(restored) is type(optimizer)
    config = restored.get_config()
    assert config == optimizer.get_config()
    expected = dict(weight_decay=0.02, exclude_from_weight_decay=["bias"],
                    exclude_from_layer_adaptation=["LayerNorm", "bias"], global_clipnorm=1.0,
                    name="my_opt", **specific)
    for key, value in expected.items():
        got = config[key]
        assert (tuple(got) if isinstance(value, tuple) else got) == value, key
    restored_schedule = restored._learning_rate
    assert isinstance(restored_schedule, generation.WarmupPolynomialDecay)
    assert restored_schedule.get_config() == schedule.get_config()


def test_keras_exclusion_method_keeps_working_and_feeds_adaptation():
    kernel = keras.Variable(np.ones((2, 2), np.float32), name="kernel")
    bias = keras.Variable(np.ones(2, np.float32), name="bias")
    optimizer = lamb_tf.Lamb(learning_rate=0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    gradient = [tf.fill((2, 2), 1e-3), tf.fill((2,), 1e-3)]
    optimizer.apply(gradient, [kernel, bias])
    ratios = optimizer.trust_ratios
    # Excluded from decay (by the method) means excluded from adaptation when the list is None.
    assert float(ratios["bias"]) == 1.0
    assert float(ratios["kernel"]) != 1.0
    with pytest.raises(ValueError, match="before the optimizer is built"):
        optimizer.exclude_from_weight_decay(var_names=["kernel"])


def test_legacy_exclusion_method_keeps_working():
    variables = Legacy.make_variables(
        [("dense/kernel", np.ones((2, 2), np.float32)), ("dense/bias", np.ones(2, np.float32))])
    optimizer = Legacy.Lamb(learning_rate=0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    Legacy.apply(optimizer, [tf.fill((2, 2), 1e-3), tf.fill((2,), 1e-3)], variables)
    assert float(optimizer.trust_ratios["dense/bias"]) == 1.0
    assert float(optimizer.trust_ratios["dense/kernel"]) != 1.0


def test_keras3_lamb_is_a_tf_keras_optimizer():
    assert isinstance(lamb_tf.Lamb(), tf.keras.optimizers.Optimizer)
    assert isinstance(lamb_tf.Lars(), tf.keras.optimizers.Optimizer)
    assert isinstance(Keras3.WarmupPolynomialDecay(1.0, 10, 1),
                      tf.keras.optimizers.schedules.LearningRateSchedule)


@pytest.mark.parametrize("kwargs,message", [
    (dict(total_steps=10, warmup_steps=10), "total_steps"),
    (dict(total_steps=10, warmup_steps=-1), "warmup_steps"),
    (dict(total_steps=10.5, warmup_steps=1), "total_steps"),
    (dict(total_steps=10, warmup_steps=1, power=0.0), "power"),
])
def test_schedule_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        lamb_tf.WarmupPolynomialDecay(1.0, **kwargs)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_schedule_matches_reference(generation):
    for power, start in ((1.0, 0), (2.0, 0), (1.0, 7)):
        schedule = generation.WarmupPolynomialDecay(
            3.0, total_steps=40, warmup_steps=6, end_learning_rate=0.1, power=power,
            start_warmup_step=start)
        got = [float(schedule(step)) for step in range(45)]
        want = [schedule_reference(step, 3.0, 40, 6, 0.1, power, start) for step in range(45)]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_weight_decay_none_means_no_decay(generation):
    """Keras's own default is `weight_decay=None`; it must equal an explicit 0."""
    arrays = [("dense/kernel", np.linspace(-1.0, 1.0, 6, dtype=np.float32).reshape(2, 3))]
    gradient = [tf.constant(np.linspace(0.5, -0.3, 6).reshape(2, 3), tf.float32)]
    results = []
    for weight_decay in (None, 0.0):
        variables = generation.make_variables(arrays)
        optimizer = generation.Lamb(learning_rate=0.1, weight_decay=weight_decay)
        generation.apply(optimizer, gradient, variables)
        results.append(variables[0].numpy())
        assert optimizer.get_config()["weight_decay"] == 0.0
    np.testing.assert_array_equal(results[0], results[1])
    assert not np.array_equal(results[0], arrays[0][1])


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_exclusion_method_names_matching_nothing_are_reported(generation):
    variables = generation.make_variables(
        [("dense/kernel", np.ones((2, 2), np.float32)), ("dense/bias", np.ones(2, np.float32))])
    optimizer = generation.Lamb(learning_rate=0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["bias", "no_such_layer"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        generation.apply(optimizer, [tf.fill((2, 2), 1e-3), tf.fill((2,), 1e-3)], variables)
    messages = [str(w.message) for w in caught if "exclude_from_weight_decay(var_names" in
                str(w.message)]
    assert len(messages) == 1
    assert "'no_such_layer'" in messages[0]
    assert "matches none of the 2 variable names" in messages[0]
    assert float(optimizer.trust_ratios["dense/bias" if generation is Legacy
                                        else "dense_bias"]) == 1.0  # "bias" still excluded


def test_a_full_path_given_to_the_keras3_exclusion_method_is_reported():
    """Keras 3 searches var_names in the short `variable.name` ('bias'), not the path."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")])
    optimizer = lamb_tf.Lamb(learning_rate=0.1, weight_decay=0.5)
    optimizer.exclude_from_weight_decay(var_names=["dense/bias"])
    with pytest.warns(UserWarning, match=r"'dense/bias' in exclude_from_weight_decay\(var_names"
                                         r"=\.\.\.\) matches none .*short name"):
        optimizer.build(model.trainable_variables)


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_trust_ratios_are_values_that_later_updates_do_not_change(generation):
    variables = generation.make_variables([("dense/kernel", np.ones((2, 2), np.float32))])
    optimizer = generation.Lamb(learning_rate=0.1)
    generation.apply(optimizer, [tf.fill((2, 2), 1e-3)], variables)
    kept = dict(optimizer.trust_ratios)
    first = {k: float(v) for k, v in kept.items()}
    generation.apply(optimizer, [tf.constant([[5.0, -3.0], [0.1, 2.0]])], variables)
    assert {k: float(v) for k, v in kept.items()} == first
    assert {k: float(v) for k, v in optimizer.trust_ratios.items()} != first


def test_registered_name_finds_lamb_tf_optimizers():
    assert isinstance(keras.optimizers.get("lamb_tf>Lamb"), lamb_tf.Lamb)
    assert isinstance(keras.optimizers.get("lamb_tf>Lars"), lamb_tf.Lars)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="lamb_tf>Lamb", loss="mse")
    assert isinstance(model.optimizer, lamb_tf.Lamb)


def test_a_variable_excluded_after_a_restore_reports_the_ratio_1_it_is_updated_with(tmp_path):
    # Its ratio variable is not written at each step (it is the constant 1), so one restored
    # from a run that adapted it must not be reported as this run's.
    x = np.ones((8, 3), np.float32)
    y = np.ones((8, 1), np.float32)

    def trained(optimizer, checkpoint=None):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="dense")],
                                 name="model")
        model.compile(optimizer=optimizer, loss="mse")
        model.optimizer.build(model.trainable_variables)
        if checkpoint:
            tf.train.Checkpoint(optimizer=optimizer).read(checkpoint).expect_partial()
        model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        return optimizer

    first = trained(lamb_tf.Lamb(0.1, weight_decay=0.01))
    bias = next(path for path in first.trust_ratios if "bias" in path)
    assert float(first.trust_ratios[bias]) != 1.0  # adapted in the first run
    saved = tf.train.Checkpoint(optimizer=first).write(str(tmp_path / "ckpt"))
    excluded = trained(lamb_tf.Lamb(0.1, weight_decay=0.01,
                                    exclude_from_layer_adaptation=["bias"]), saved)
    assert float(excluded.trust_ratios[bias]) == 1.0


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: g.name)
def test_an_excluded_variable_reports_ratio_1_from_the_restore_on(generation, tmp_path):
    # Before its first step too: a ratio restored from a run that adapted the variable is that
    # run's, not this one's.
    arrays = [("dense/kernel", np.ones((2, 2), np.float32)),
              ("dense/bias", np.full(2, 0.5, np.float32))]
    grads = [tf.fill((2, 2), 1e-3), tf.constant([0.2, -0.1])]
    adapted = generation.Lamb(learning_rate=0.1, weight_decay=0.01)
    generation.apply(adapted, grads, generation.make_variables(arrays))
    bias = next(path for path in adapted.trust_ratios if "bias" in path)
    adapted_ratio = float(adapted.trust_ratios[bias])
    assert adapted_ratio != 1.0
    saved = tf.train.Checkpoint(optimizer=adapted).write(str(tmp_path / "ckpt"))
    variables = generation.make_variables(arrays)
    excluded = generation.Lamb(learning_rate=0.1, weight_decay=0.01,
                               exclude_from_layer_adaptation=["bias"])
    excluded.build(variables)
    tf.train.Checkpoint(optimizer=excluded).read(saved).assert_existing_objects_matched()
    restored = [float(ratio) for ratio in excluded._trust_ratios]
    assert adapted_ratio in restored  # the restore did bring the adapted run's ratio back
    assert float(excluded.trust_ratios[bias]) == 1.0
    generation.apply(excluded, grads, variables)
    assert float(excluded.trust_ratios[bias]) == 1.0
