"""lamb_tf on Keras's JAX backend: the numpy-reference checks of tests/jax_checks.py, run in one
JAX process (the backend is fixed at import), and a .keras file carried TensorFlow -> JAX ->
TensorFlow with its optimizer state, every leg following the reference."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import lamb_tf
from tests.optimizer_cases import (ROUND_TRIP_LAMB, ROUND_TRIP_SCHEDULE, linear_model,
                                   linear_problem, round_trip_reference)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fit(model, x, y, epochs):
    model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("jax")
    x, y, weights = linear_problem()
    model = linear_model(keras, weights)
    model.compile(optimizer=lamb_tf.Lamb(learning_rate=lamb_tf.WarmupPolynomialDecay(
        **ROUND_TRIP_SCHEDULE), **ROUND_TRIP_LAMB), loss="mse", jit_compile=True)
    fit(model, x, y, epochs=2)
    model.save(work_dir / "from_tensorflow.keras")
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3",
               JAX_PLATFORMS="cpu")
    done = subprocess.run([sys.executable, "-m", "tests.jax_checks", str(work_dir)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with open(work_dir / "outcomes.json") as file:
        return json.load(file), work_dir


def test_every_jax_check_passes(outcomes):
    """Lamb and Lars against the references (eager and jitted, every case), fit with and
    without jit_compile, exclusions and their warning, mixed_bfloat16, accumulation, EMA,
    global_clipnorm, config round trip, the .keras file from TensorFlow, no TensorFlow
    import, and the one-line errors of the TensorFlow-only parts (tests/jax_checks.py)."""
    results, _ = outcomes
    assert len(results) >= 29, sorted(results)
    assert {name: result for name, result in results.items() if result != "ok"} == {}


def test_keras_file_from_jax_trains_on_under_tensorflow(outcomes):
    """2 updates under TensorFlow, 2 under JAX, 1 more here: 5 updates of the reference."""
    _, work_dir = outcomes
    x, y, weights = linear_problem()
    model = keras.saving.load_model(work_dir / "from_jax.keras")
    assert int(model.optimizer.iterations.numpy()) == 4
    assert model.optimizer.get_config()["exclude_from_weight_decay"] == ["dense/bias"]
    fit(model, x, y, epochs=1)
    for got, want in zip(model.get_weights(), round_trip_reference(weights, x, y, 5)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
