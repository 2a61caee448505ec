"""The lean install: `import lamb_tf` needs TensorFlow only; the extras say what is missing."""

import subprocess
import sys

from tests.bert_runs import REPO


def _python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})


def test_import_lamb_tf_loads_neither_tf_keras_nor_model_garden():
    done = _python("import sys, lamb_tf\n"
                   "print(sorted(m for m in ('tf_keras', 'official', 'tensorflow_text') "
                   "if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _without(modules, statement):
    # A None entry in sys.modules makes `import name` raise ImportError, as if not installed.
    return _python("import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
                   + statement)


def test_legacy_without_tf_keras_names_the_extra():
    done = _without(["tf_keras"], "import lamb_tf.legacy")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        'ImportError: lamb_tf.legacy needs tf-keras: from the clone, pip install -e '
        '".[legacy]" (or pip install "tf-keras>=2.20,<2.21").')


def test_trainers_without_model_garden_names_the_extra():
    # find_spec sees the real packages, so hide them from it instead.
    done = _python("import importlib.util, sys\n"
                   "real = importlib.util.find_spec\n"
                   "importlib.util.find_spec = lambda name, *a: None if name in ('official', "
                   "'tensorflow_text') else real(name, *a)\n"
                   "import trainers")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: The trainers need tf-models-official, tensorflow-text: from the clone, "
        'pip install -e ".[trainers]" (or -e ".[demo]" for the built-in data too).')
