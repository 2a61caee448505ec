"""The optimizer-math cases and the problems the numpy references solve, with no TensorFlow
import: the TensorFlow tests (test_optimizer_math) and the JAX and PyTorch checks
(backend_checks) share them."""

import numpy as np

from tests.reference import lamb_reference, schedule_reference

STEPS = 5

# Shapes include a scalar and zero-initialised biases; names drive exclusion patterns.
SHAPES = [
    ("encoder/dense/kernel", (4, 3), "normal"),
    ("encoder/dense/bias", (3,), "zeros"),
    ("encoder/layer_norm/gamma", (3,), "ones"),
    ("encoder/conv/kernel", (2, 3, 4), "normal"),
    ("encoder/scalar_gain", (), "normal"),
    # Matrices, which the compiled norm sums as rows (one with odd sides).
    ("encoder/embeddings", (48, 64), "normal"),
    ("encoder/odd_kernel", (33, 35), "normal"),
]


def initial_values(rng):
    values = []
    for name, shape, init in SHAPES:
        if init == "zeros":
            value = np.zeros(shape, np.float32)
        elif init == "ones":
            value = np.ones(shape, np.float32)
        else:
            value = rng.normal(size=shape).astype(np.float32)
        values.append((name, value))
    return values


def gradient_steps(rng, steps=STEPS):
    return [[rng.normal(size=shape).astype(np.float32) for _, shape, _ in SHAPES]
            for _ in range(steps)]


def masks(patterns):
    return [not any(p in name for p in patterns) for name, _, _ in SHAPES]


def reference_arguments(spec):
    """The numpy reference's arguments for a case: masks in place of patterns."""
    arguments = {k: v for k, v in spec["kwargs"].items() if not k.startswith("exclude")}
    if "weight_norm_bounds" in arguments:
        arguments["bounds"] = arguments.pop("weight_norm_bounds")
    arguments["decay_mask"] = masks(spec["decay"])
    arguments["adapt_mask"] = (arguments["decay_mask"] if spec["adapt"] is None
                               else masks(spec["adapt"]))
    return arguments


LAMB_CASES = {
    "defaults": dict(kwargs={}, decay=[], adapt=None),
    "decay_with_exclusions": dict(
        kwargs=dict(weight_decay=0.01, exclude_from_weight_decay=["bias", "layer_norm"]),
        decay=["bias", "layer_norm"], adapt=None),
    "separate_adaptation_list": dict(
        kwargs=dict(weight_decay=0.1, exclude_from_weight_decay=["bias"],
                    exclude_from_layer_adaptation=["layer_norm", "scalar"]),
        decay=["bias"], adapt=["layer_norm", "scalar"]),
    "no_bias_correction": dict(
        kwargs=dict(weight_decay=0.05, bias_correction=False, beta_1=0.8, beta_2=0.99,
                    epsilon=1e-4),
        decay=[], adapt=None),
    "weight_norm_bounds": dict(
        kwargs=dict(weight_decay=0.01, weight_norm_bounds=(0.5, 1.5)), decay=[], adapt=None),
}


LARS_CASES = {
    "defaults": dict(kwargs=dict(), decay=[], adapt=None),
    "decay_with_exclusions": dict(
        kwargs=dict(weight_decay=1e-4, exclude_from_weight_decay=["bias", "layer_norm"]),
        decay=["bias", "layer_norm"], adapt=None),
    "nesterov_epsilon_separate_lists": dict(
        kwargs=dict(weight_decay=5e-4, nesterov=True, epsilon=1e-5, momentum=0.8,
                    trust_coefficient=0.02, exclude_from_weight_decay=["bias"],
                    exclude_from_layer_adaptation=["layer_norm"]),
        decay=["bias"], adapt=["layer_norm"]),
}


# A least-squares problem `fit` trains (one Dense(1) layer, mean squared error, the whole set as
# one batch, no shuffling), so the numpy references can follow it update by update.
FEATURES, EXAMPLES = 4, 16


def linear_problem(seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=(FEATURES, 1)) + 0.5).astype(np.float32)
    kernel = rng.normal(size=(FEATURES, 1)).astype(np.float32)
    return x, y, [kernel, np.zeros((1,), np.float32)]


def linear_gradient(x, y):
    """d/d(kernel, bias) of mean((x kernel + bias - y)^2), in float64 (Keras's "mse")."""
    x, y = np.float64(x), np.float64(y)

    def gradient(params):
        kernel, bias = params
        residual = x @ kernel + bias - y
        return [2.0 / len(x) * x.T @ residual, 2.0 / len(x) * residual.sum(axis=0)]

    return gradient


def linear_model(keras, weights):
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1, name="dense")],
                             name="linear")
    model.set_weights(weights)
    return model


# The Lamb and schedule of the .keras round trip TensorFlow -> JAX -> TensorFlow.
ROUND_TRIP_SCHEDULE = dict(peak_learning_rate=0.05, total_steps=10, warmup_steps=2)
ROUND_TRIP_LAMB = dict(weight_decay=0.01, exclude_from_weight_decay=["dense/bias"])


def round_trip_reference(weights, x, y, updates):
    lrs = [schedule_reference(step, 0.05, 10, 2) for step in range(updates)]
    mask = [True, False]
    expected, _ = lamb_reference(weights, [linear_gradient(x, y)] * updates, lr=None,
                                 lr_per_step=lrs, weight_decay=0.01, decay_mask=mask,
                                 adapt_mask=mask)
    return expected
