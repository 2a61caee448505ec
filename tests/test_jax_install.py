"""A JAX user's install: the wheel with its `jax` extra into a fresh virtual environment, from
the package index (pip's cache makes reruns quick), with no TensorFlow anywhere; then training
that follows the numpy reference, and one-line errors for what needs TensorFlow.

The checks are tests/jax_checks.py's, run from a copy of the few test modules they import, so
that `lamb_tf` comes from the venv and not from this clone.
"""

import glob
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCES = ("setup.py", "README.md", "lamb_tf", "trainers", "configs")
TEST_MODULES = ("__init__.py", "jax_checks.py", "optimizer_cases.py", "reference.py")
CHECKS = ("fit_jit_compile_issue_snippet", "fit_without_jit_compile_with_full_path_exclusion",
          "import_lamb_tf_imported_no_tensorflow", "tensorflow_only_parts_name_the_backend",
          "noise_scale_measure_names_the_backend")


def _run(command, cwd, env=None, check=True):
    env = dict(env or os.environ)
    env.pop("PYTHONPATH", None)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=900)
    assert not check or done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done


def test_a_fresh_venv_with_the_jax_extra_trains_without_tensorflow(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(path, source / name)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(tmp_path / "dist"), str(source)], cwd=tmp_path)
    wheel = glob.glob(str(tmp_path / "dist" / "*.whl"))[0]
    _run([sys.executable, "-m", "venv", str(tmp_path / "venv")], cwd=tmp_path)
    python = str(tmp_path / "venv" / "bin" / "python")
    # --no-compile: byte-compiling jax and scipy on install is most of a cached install's time.
    _run([python, "-m", "pip", "install", "-q", "--no-compile", f"{wheel}[jax]"], cwd=tmp_path)
    listed = _run([python, "-m", "pip", "list", "--format=freeze"], cwd=tmp_path).stdout.lower()
    assert "jax==" in listed and "keras==" in listed
    assert "tensorflow" not in listed and "tf-keras" not in listed, listed

    checks = tmp_path / "checks"
    (checks / "tests").mkdir(parents=True)
    for name in TEST_MODULES:
        shutil.copy(os.path.join(REPO, "tests", name), checks / "tests" / name)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    done = _run([python, "-m", "tests.jax_checks", str(checks), *CHECKS], cwd=checks, env=env)
    assert "/venv/" in _run([python, "-c", "import lamb_tf; print(lamb_tf.__file__)"],
                            cwd=checks, env=env).stdout
    assert f'"{CHECKS[0]}": "ok"' in done.stdout, done.stdout
    failed = [line for line in done.stdout.splitlines() if ":" in line and '"ok"' not in line]
    assert not failed, done.stdout

    # Keras's default backend is TensorFlow: without it, one line says which extra to install.
    env.pop("KERAS_BACKEND")
    done = _run([python, "-c", "import lamb_tf"], cwd=checks, env=env, check=False)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: Keras is set to the tensorflow backend, which is not installed: pip "
        'install "lamb_tf[tensorflow]", or "lamb_tf[jax]" with KERAS_BACKEND=jax.')
