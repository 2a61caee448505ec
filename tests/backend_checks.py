"""lamb_tf under Keras's JAX (or PyTorch) backend, checked against the numpy references in one
process.

The Keras backend is fixed at import, so tests/test_jax_backend.py runs this module as
`KERAS_BACKEND=jax python -m tests.backend_checks WORK_DIR`: each check runs on its own and the
outcomes ("ok" or the error's last line) go to WORK_DIR/outcomes.json with the path lamb_tf was
imported from, one process for all (a JAX start costs seconds). WORK_DIR holds `from_tensorflow.keras`, a model the TensorFlow side
trained and saved; this side continues it and saves `from_jax.keras` for the way back.
Under `KERAS_BACKEND=torch` (checked by hand, README) the "jit" checks apply eagerly.
"""

import json
import os
import sys
import traceback
import warnings

import numpy as np

if __name__ == "__main__" and os.environ.get("KERAS_BACKEND") not in ("jax", "torch"):
    raise SystemExit("usage: KERAS_BACKEND=jax (or torch) python -m tests.backend_checks "
                     "WORK_DIR [CHECK ...]")

import keras  # noqa: E402

import lamb_tf  # noqa: E402

TENSORFLOW_AFTER_IMPORT = "tensorflow" in sys.modules
from tests.optimizer_cases import (LAMB_CASES, LARS_CASES, STEPS, gradient_steps,  # noqa: E402
                                   initial_values, linear_gradient, linear_model, linear_problem,
                                   masks, reference_arguments, round_trip_reference)
from tests.reference import lamb_reference, lars_reference, schedule_reference  # noqa: E402

CHECKS = {}

def check(function):
    CHECKS[function.__name__] = function
    return function


def make_variables(named_arrays):
    return [keras.Variable(value, name=name.replace("/", "_")) for name, value in named_arrays]


BACKEND = keras.backend.backend()


def jitted_apply(optimizer, variables):
    """optimizer.apply as `fit(jit_compile=True)` runs it on JAX: stateless, inside jax.jit."""
    optimizer.build(variables)
    if BACKEND != "jax":
        return lambda grads: optimizer.apply(grads, variables)
    import jax
    step = jax.jit(lambda state, values, grads: optimizer.stateless_apply(state, grads, values))

    def apply(grads):
        values, state = step([v.value for v in optimizer.variables],
                             [v.value for v in variables], grads)
        for variable, value in zip(variables, values):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, state):
            variable.assign(value)

    return apply


def run(optimizer, compiled, steps=STEPS, seed=1234, transform=None):
    rng = np.random.default_rng(seed)
    named = initial_values(rng)
    variables = make_variables(named)
    grads = gradient_steps(rng, steps)
    apply = jitted_apply(optimizer, variables) if compiled else (
        lambda g: optimizer.apply(g, variables))
    for step_grads in grads:
        apply([keras.ops.convert_to_tensor(g) for g in step_grads])
    return [v for _, v in named], grads, [keras.ops.convert_to_numpy(v.value) for v in variables]


def assert_close(got, want, rtol=2e-5, atol=1e-6):
    assert len(got) == len(want), (len(got), len(want))
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.float64(keras.ops.convert_to_numpy(g)), w, rtol=rtol,
                                   atol=atol)


def matches_reference(optimizer, reference, learning_rate, spec, compiled):
    start, grads, result = run(optimizer, compiled)
    expected, ratios = reference(start, grads, lr=learning_rate, **reference_arguments(spec))
    assert_close(result, expected)
    assert_close([float(r) for r in optimizer.trust_ratios.values()], ratios)


# Every case eagerly; under jax.jit the cases that trace differently (static exclusions, phi
# bounds, Nesterov): a compile costs about a second each.
JITTED = ("decay_with_exclusions", "weight_norm_bounds", "nesterov_epsilon_separate_lists")

for _case, _spec in sorted(LAMB_CASES.items()):
    for _compiled in (False, True)[:1 + (_case in JITTED)]:
        def _lamb(spec=_spec, compiled=_compiled):
            optimizer = lamb_tf.Lamb(learning_rate=0.01, **spec["kwargs"])
            matches_reference(optimizer, lamb_reference, 0.01, spec, compiled)
        _lamb.__name__ = f"lamb_{_case}_{'jit' if _compiled else 'eager'}"
        check(_lamb)

for _case, _spec in sorted(LARS_CASES.items()):
    for _compiled in (False, True)[:1 + (_case in JITTED)]:
        def _lars(spec=_spec, compiled=_compiled):
            optimizer = lamb_tf.Lars(learning_rate=0.5, **spec["kwargs"])
            matches_reference(optimizer, lars_reference, 0.5, spec, compiled)
        _lars.__name__ = f"lars_{_case}_{'jit' if _compiled else 'eager'}"
        check(_lars)


@check
def lamb_jit_with_schedule():
    schedule = lamb_tf.WarmupPolynomialDecay(0.02, total_steps=8, warmup_steps=2, power=2.0)
    optimizer = lamb_tf.Lamb(learning_rate=schedule, weight_decay=0.01,
                             exclude_from_weight_decay=["bias"])
    start, grads, result = run(optimizer, compiled=True)
    lrs = [schedule_reference(step, 0.02, 8, 2, power=2.0) for step in range(STEPS)]
    decay_mask = masks(["bias"])
    expected, _ = lamb_reference(start, grads, lr=None, lr_per_step=lrs, weight_decay=0.01,
                                 decay_mask=decay_mask, adapt_mask=decay_mask)
    assert_close(result, expected)


def fit_matches_reference(jit_compile, epochs=3, **lamb_kwargs):
    x, y, weights = linear_problem()
    model = linear_model(keras, weights)
    model.compile(optimizer=lamb_tf.Lamb(learning_rate=1e-2, **lamb_kwargs), loss="mse",
                  jit_compile=jit_compile)
    model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)
    decay_mask = [True, not lamb_kwargs.get("exclude_from_weight_decay")]
    expected, _ = lamb_reference(weights, [linear_gradient(x, y)] * epochs, lr=1e-2,
                                 weight_decay=lamb_kwargs.get("weight_decay", 0.0),
                                 decay_mask=decay_mask, adapt_mask=decay_mask)
    assert_close(model.get_weights(), expected, rtol=1e-4)
    return model


@check
def fit_jit_compile_issue_snippet():
    fit_matches_reference(jit_compile=True, weight_decay=0.01)
    # Keras's own serialization imports TensorFlow where it is installed; training does not.
    assert "tensorflow" not in sys.modules, "fit imported tensorflow"


@check
def fit_without_jit_compile_with_full_path_exclusion():
    model = fit_matches_reference(jit_compile=False, weight_decay=0.01,
                                  exclude_from_weight_decay=[r"^linear/dense/bias$"])
    assert list(model.optimizer.trust_ratios) == ["linear/dense/kernel", "linear/dense/bias"]
    assert float(model.optimizer.trust_ratios["linear/dense/bias"]) == 1.0


@check
def unmatched_pattern_warns_once_at_build():
    optimizer = lamb_tf.Lamb(exclude_from_weight_decay=["bias", "no_such_layer"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        optimizer.build([keras.Variable(np.ones((2, 2), np.float32), name="kernel"),
                         keras.Variable(np.ones((2,), np.float32), name="bias")])
    messages = [str(w.message) for w in caught if "matches none" in str(w.message)]
    assert len(messages) == 1 and "'no_such_layer'" in messages[0], messages


@check
def mixed_bfloat16_state_and_math_float32():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        x = np.random.default_rng(0).normal(size=(32, 8)).astype(np.float32)
        model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(1)])
        model.compile(optimizer=lamb_tf.Lamb(learning_rate=1e-2, weight_decay=0.01),
                      loss="mse", jit_compile=True)
        before = [w.copy() for w in model.get_weights()]
        history = model.fit(x, x[:, :1], batch_size=16, epochs=2, verbose=0)
        assert all(np.isfinite(history.history["loss"]))
        assert {v.dtype for v in model.optimizer.variables if len(v.shape) > 0} == {"float32"}
        assert not np.allclose(model.get_weights()[0], before[0])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # A bfloat16 variable itself: its slots are float32 and the update reaches it.
    values = np.random.default_rng(1).normal(size=(8, 8)).astype(np.float32)
    variable = keras.Variable(keras.ops.cast(values, "bfloat16"), name="kernel")
    optimizer = lamb_tf.Lamb(learning_rate=0.01, weight_decay=0.01)
    gradient = keras.ops.cast(np.random.default_rng(2).normal(size=(8, 8)), "bfloat16")
    for _ in range(3):
        optimizer.apply([gradient], [variable])
    slots = [v for v in optimizer.variables if tuple(v.shape) == (8, 8)]
    assert len(slots) == 2 and all(s.dtype == "float32" for s in slots)
    moved = keras.ops.convert_to_numpy(keras.ops.cast(variable.value, "float32"))
    assert np.all(np.isfinite(moved)) and not np.allclose(moved, values)


@check
def gradient_accumulation_counts_updates():
    schedule = lamb_tf.WarmupPolynomialDecay(0.05, total_steps=6, warmup_steps=1)
    optimizer = lamb_tf.Lamb(learning_rate=schedule, weight_decay=0.01,
                             gradient_accumulation_steps=2)
    rng = np.random.default_rng(5)
    named = initial_values(rng)
    variables = make_variables(named)
    micro = gradient_steps(rng, 6)
    apply = jitted_apply(optimizer, variables)
    for grads in micro:
        apply(grads)
    updates = [[(a + b) / 2 for a, b in zip(micro[i], micro[i + 1])] for i in (0, 2, 4)]
    lrs = [schedule_reference(step, 0.05, 6, 1) for step in range(3)]
    expected, _ = lamb_reference([v for _, v in named], updates, lr=None, lr_per_step=lrs,
                                 weight_decay=0.01)
    assert_close([v.value for v in variables], expected)
    assert int(optimizer.iterations) == 3


@check
def bfloat16_variable_accumulates_in_float32():
    """Accumulators are optimizer state, float32 as on TensorFlow: 7 micro-batches of 1 + 2^-7
    (exact in bf16) sum to 7.0546875, which bf16 accumulators round to 7.03125."""
    for compiled in (False, True):
        variable = keras.Variable(keras.ops.cast(np.ones((4,)), "bfloat16"), name="kernel")
        optimizer = lamb_tf.Lamb(learning_rate=0.01, gradient_accumulation_steps=8)
        optimizer.build([variable])
        apply = jitted_apply(optimizer, [variable]) if compiled else (
            lambda grads: optimizer.apply(grads, [variable]))
        assert [a.dtype for a in optimizer._accumulated_gradients] == ["float32"]
        gradient = keras.ops.cast(np.full((4,), 1 + 2 ** -7), "bfloat16")
        for _ in range(7):
            apply([gradient])
        accumulated = keras.ops.convert_to_numpy(optimizer._accumulated_gradients[0].value)
        assert accumulated.dtype == np.float32, (compiled, accumulated.dtype)
        np.testing.assert_array_equal(accumulated, np.full((4,), 7.0546875, np.float32))
        apply([gradient])  # the update: the accumulators reset, still float32
        assert int(optimizer.iterations) == 1
        assert [a.dtype for a in optimizer._accumulated_gradients] == ["float32"]
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(optimizer._accumulated_gradients[0].value), 0.0)


@check
def use_ema_averages_the_references_weights():
    optimizer = lamb_tf.Lars(learning_rate=0.5, use_ema=True, ema_momentum=0.6)
    start, grads, _ = run(optimizer, compiled=True, steps=3)
    average = None
    for steps in range(1, 4):  # Keras's EMA: the first update copies the weights
        weights, _ = lars_reference(start, grads[:steps], lr=0.5)
        average = weights if average is None else [
            0.6 * a + 0.4 * w for a, w in zip(average, weights)]
    assert_close(optimizer._model_variables_moving_average, average)


@check
def global_clipnorm_clips_before_the_update():
    optimizer = lamb_tf.Lamb(learning_rate=0.01, weight_decay=0.01, global_clipnorm=0.5)
    start, grads, result = run(optimizer, compiled=True)
    clipped = []
    for step in grads:
        norm = np.sqrt(sum(np.sum(np.float64(g) ** 2) for g in step))
        clipped.append([np.float64(g) * min(1.0, 0.5 / norm) for g in step])
    expected, _ = lamb_reference(start, clipped, lr=0.01, weight_decay=0.01)
    assert_close(result, expected)


@check
def config_round_trip():
    schedule = lamb_tf.WarmupPolynomialDecay(0.02, total_steps=8, warmup_steps=2)
    for optimizer in (
            lamb_tf.Lamb(learning_rate=schedule, weight_decay=0.01, weight_norm_bounds=(0, 10),
                         exclude_from_weight_decay=["bias"],
                         exclude_from_layer_adaptation=["norm"]),
            lamb_tf.Lars(learning_rate=0.1, nesterov=True, exclude_from_weight_decay=["bias"])):
        again = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
        assert type(again) is type(optimizer)
        assert again.get_config() == optimizer.get_config(), (again.get_config(),
                                                              optimizer.get_config())


@check
def keras_file_from_tensorflow_trains_on_and_saves_back():
    """The TensorFlow side fitted 2 updates and saved; 2 more here follow the reference."""
    x, y, weights = linear_problem()
    model = keras.saving.load_model(os.path.join(WORK_DIR, "from_tensorflow.keras"))
    assert isinstance(model.optimizer, lamb_tf.Lamb)
    assert int(model.optimizer.iterations) == 2
    model.fit(x, y, batch_size=len(x), epochs=2, shuffle=False, verbose=0)
    assert_close(model.get_weights(), round_trip_reference(weights, x, y, 4), rtol=1e-4)
    model.save(os.path.join(WORK_DIR, "from_jax.keras"))


@check
def import_lamb_tf_imported_no_tensorflow():
    assert not TENSORFLOW_AFTER_IMPORT, "import lamb_tf imported tensorflow"


def last_line_of(error_type, statement):
    try:
        exec(statement, {})
    except error_type as error:
        return str(error).strip().splitlines()[-1]
    raise AssertionError(f"{statement!r} did not raise {error_type.__name__}")


@check
def tensorflow_only_parts_name_the_backend():
    assert last_line_of(ImportError, "import lamb_tf.legacy") == (
        f"lamb_tf.legacy (tf_keras) needs KERAS_BACKEND=tensorflow; this Keras 3 runs on "
        f"{BACKEND}: use lamb_tf.Lamb and lamb_tf.Lars.")
    assert last_line_of(RuntimeError, "import lamb_tf.callbacks as c\n"
                        "c.TrustRatioLogger('logs')") == (
        "TrustRatioLogger writes TensorBoard summaries with TensorFlow and needs "
        f"KERAS_BACKEND=tensorflow (this Keras runs on {BACKEND}); read optimizer.trust_ratios "
        "in a callback of your own instead.")
    assert last_line_of(ImportError, "import trainers") == (
        "The trainers run on TensorFlow (tf_keras, tf.distribute) and need "
        f"KERAS_BACKEND=tensorflow; this Keras 3 runs on {BACKEND}.")


@check
def noise_scale_measure_names_the_backend():
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        expected = ("lamb_tf.noise_scale needs TensorFlow (it takes gradients with "
                    'tf.GradientTape): from the clone, pip install -e ".[tensorflow]".')
        assert last_line_of(ImportError, "import lamb_tf.noise_scale") == expected
        return
    assert last_line_of(RuntimeError, "from lamb_tf import noise_scale\n"
                        "noise_scale.measure(None, None)") == (
        "noise_scale.measure() takes gradients with tf.GradientTape and needs "
        f"KERAS_BACKEND=tensorflow (this Keras runs on {BACKEND}).")


def main(names):
    outcomes = {}
    for name, function in CHECKS.items():
        if names and name not in names:
            continue
        try:
            function()
            outcomes[name] = "ok"
        except Exception:  # each check reports on its own; one failure stops none of the others
            outcomes[name] = traceback.format_exc().strip().splitlines()[-1]
    report = {"lamb_tf": lamb_tf.__file__, "outcomes": outcomes}
    with open(os.path.join(WORK_DIR, "outcomes.json"), "w") as file:
        json.dump(report, file, indent=1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    WORK_DIR = sys.argv[1]
    main(sys.argv[2:])
