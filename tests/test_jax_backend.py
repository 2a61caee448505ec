"""lamb_tf as a JAX user gets it: the wheel with its `jax` extra installed into a fresh virtual
environment, with no TensorFlow anywhere, then the numpy-reference checks of
tests/backend_checks.py run there in one JAX process (the backend is fixed at import; a JAX
start costs seconds), and a .keras file carried TensorFlow -> JAX -> TensorFlow with its
optimizer state, every leg following the reference.

The install reads the package index (pip's cache makes reruns quick); the checks run from a copy
of the few test modules they import, so that `lamb_tf` comes from the venv, not this clone.
"""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import lamb_tf
from tests import wheels
from tests.optimizer_cases import (ROUND_TRIP_LAMB, ROUND_TRIP_SCHEDULE, linear_model,
                                   linear_problem, round_trip_reference)

# On one pytest-xdist worker: the JAX virtual environment is made once, not on each.
pytestmark = pytest.mark.xdist_group("jax_backend")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_MODULES = ("__init__.py", "backend_checks.py", "optimizer_cases.py", "reference.py")


def _run(command, cwd, env=None, check=True):
    env = dict(env or os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=900)
    assert not check or done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def fit(model, x, y, epochs):
    model.fit(x, y, batch_size=len(x), epochs=epochs, shuffle=False, verbose=0)


@pytest.fixture(scope="module")
def jax_venv(tmp_path_factory):
    root = tmp_path_factory.mktemp("jax")
    wheel = wheels.build_wheel(str(root))
    # No pip of its own (seeding one costs ~10 s): this pip installs into it with --python.
    _run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], cwd=root)
    python = str(root / "venv" / "bin" / "python")
    # --no-compile: byte-compiling jax and scipy is most of a cached install's time.
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-compile",
          f"{wheel}[jax]"], cwd=root)
    checks = root / "checks"
    (checks / "tests").mkdir(parents=True)
    for name in TEST_MODULES:
        shutil.copy(os.path.join(REPO, "tests", name), checks / "tests" / name)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    return python, checks, env


@pytest.fixture(scope="module")
def outcomes(jax_venv):
    python, work_dir, env = jax_venv
    x, y, weights = linear_problem()
    model = linear_model(keras, weights)
    model.compile(optimizer=lamb_tf.Lamb(learning_rate=lamb_tf.WarmupPolynomialDecay(
        **ROUND_TRIP_SCHEDULE), **ROUND_TRIP_LAMB), loss="mse", jit_compile=True)
    fit(model, x, y, epochs=2)
    model.save(work_dir / "from_tensorflow.keras")
    _run([python, "-m", "tests.backend_checks", str(work_dir)], cwd=work_dir, env=env)
    with open(work_dir / "outcomes.json") as file:
        return json.load(file)


def test_the_jax_extra_brings_keras_and_jax_and_no_tensorflow(jax_venv, outcomes):
    python, work_dir, _ = jax_venv
    listed = _run([sys.executable, "-m", "pip", "--python", python, "list", "--format=freeze"],
                  cwd=work_dir).stdout.lower()
    assert "jax==" in listed and "keras==" in listed
    assert "tensorflow" not in listed and "tf-keras" not in listed, listed
    assert "/venv/" in outcomes["lamb_tf"]  # the checks ran the wheel's lamb_tf, not the clone's


def test_every_jax_check_passes(outcomes):
    """Lamb and Lars against the references (every case eagerly, the ones that trace
    differently under jax.jit), fit with and without jit_compile, exclusions and their warning,
    mixed_bfloat16, accumulation, EMA, global_clipnorm, config round trip, the .keras file from
    TensorFlow, no TensorFlow import, and the one-line errors of the TensorFlow-only parts."""
    results = outcomes["outcomes"]
    assert len(results) >= 25, sorted(results)
    assert {name: result for name, result in results.items() if result != "ok"} == {}


def test_keras_file_from_jax_trains_on_under_tensorflow(jax_venv, outcomes):
    """2 updates under TensorFlow, 2 under JAX, 1 more here: 5 updates of the reference."""
    _, work_dir, _ = jax_venv
    x, y, weights = linear_problem()
    model = keras.saving.load_model(work_dir / "from_jax.keras")
    assert int(model.optimizer.iterations.numpy()) == 4
    assert model.optimizer.get_config()["exclude_from_weight_decay"] == ["dense/bias"]
    fit(model, x, y, epochs=1)
    for got, want in zip(model.get_weights(), round_trip_reference(weights, x, y, 5)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_without_a_backend_import_lamb_tf_names_the_extras(jax_venv):
    # Keras's default backend is TensorFlow, which the jax extra does not bring.
    python, work_dir, env = jax_venv
    env = dict(env)
    env.pop("KERAS_BACKEND")
    done = _run([python, "-c", "import lamb_tf"], cwd=work_dir, env=env, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: Keras is set to the tensorflow backend, which is not installed: from "
        'the clone, pip install -e ".[tensorflow]", or -e ".[jax]" with KERAS_BACKEND=jax.')
