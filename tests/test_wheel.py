"""Installed from a wheel, not a clone: the recipes come along and run by name from anywhere.

The wheel is built from a copy of the package's sources (a build in the clone would leave
`build/` behind) and installed, not editable, into a fresh virtual environment that sees the
dependencies installed where the tests run (a venv of the user's or the machine's Python;
tests/wheels.py says how), with `--no-index`: the `demo` extra must then be satisfied by what is
installed, and nothing is downloaded.
"""

import glob
import os
import subprocess
import sys

import pytest

from tests import bert_runs
from tests import wheels

# On one pytest-xdist worker: the wheel's virtual environment is made once, not on each.
pytestmark = pytest.mark.xdist_group("wheel")


def _run(command, cwd, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("PYTHONPATH", None)
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=timeout)
    assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory):
    root = tmp_path_factory.mktemp("wheel")
    wheel = wheels.build_wheel(str(root))
    python = wheels.make_venv_over_installed_packages(str(root / "venv"))
    # Forced: the machine's own lamb_tf (editable, a clone's) would otherwise count as there.
    _run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--force-reinstall",
          wheel], cwd=root)
    _run([python, "-m", "pip", "install", "-q", "--no-index", "--find-links",
          str(root / "dist"), "lamb_tf[demo]"], cwd=root)
    return python, root


@pytest.fixture
def empty_dir(tmp_path):
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    return directory


def test_the_wheel_holds_the_recipes_and_neither_tests_nor_benchmarks(venv_python):
    _, root = venv_python
    import zipfile
    names = zipfile.ZipFile(glob.glob(str(root / "dist" / "*.whl"))[0]).namelist()
    assert "trainers/configs/bert/tiny_wiki_lamb.yaml" in names
    assert "trainers/configs/resnet/resnet50_lars_32k.yaml" in names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "configs/"))]


def test_the_installed_trainers_run_the_tiny_recipes_by_name(venv_python, empty_dir,
                                                              tmp_path_factory):
    python, _ = venv_python
    where = _run([python, "-c", "import trainers; print(trainers.__file__)"], cwd=empty_dir)
    assert "/venv/" in where  # the wheel's, not the clone's
    # Shards of the recipe's own pair task: the trainer checks them against the recipe.
    data_dir = bert_runs.make_data(str(tmp_path_factory.mktemp("wheel_data")),
                                   pair_task="sentence_order")
    vocab_size = len(open(os.path.join(data_dir, "vocab.txt")).read().split())
    data = f"max_seq_length={bert_runs.SEQ},max_predictions_per_seq={bert_runs.PREDICTIONS}"
    override = ",".join([
        f"task.model.vocab_size={vocab_size}",
        f"task.model.max_position_embeddings={bert_runs.SEQ}",
        f"task.train_data.input_path={data_dir}/train-*",
        f"task.eval_data.input_path={data_dir}/eval-*",
        *(f"task.{split}.{item}" for split in ("train_data", "eval_data")
          for item in data.split(","))])
    output = _run([python, "-m", "trainers.bert", "--config_file=tiny_wiki_lamb",
                   f"--params_override={override}", "--train_batch_size=8",
                   "--eval_batch_size=8", "--num_train_steps=2", "--num_warmup_steps=1",
                   "--iterations_per_loop=1", "--mode=train"], cwd=empty_dir)
    assert "model_dir: runs/tiny_wiki_lamb" in output
    assert os.path.exists(empty_dir / "runs" / "tiny_wiki_lamb" / "ckpt-2.index")
    output = _run([python, "-m", "trainers.resnet", "--config_file=resnet/tiny_fashion_mnist",
                   "--use_synthetic_data", "--train_batch_size=4", "--num_train_steps=2",
                   "--num_warmup_steps=1", "--iterations_per_loop=1",
                   f"--model_dir={empty_dir / 'resnet'}"], cwd=empty_dir)
    assert os.path.exists(empty_dir / "resnet" / "ckpt-2.index")


def test_an_unknown_recipe_lists_the_recipes_in_one_line(venv_python, empty_dir):
    python, _ = venv_python
    done = subprocess.run([python, "-m", "trainers.bert", "--config_file=tiny_wiki"],
                          cwd=empty_dir, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "error: Config file tiny_wiki does not exist, and no recipe has that name. Recipes: "
        "bert/finetune_bbc_news, bert/finetune_health_tweets, bert/finetune_reuters_r8, "
        "bert/finetune_tweet_sentiment, "
        "bert/large_lamb_32k, bert/large_lamb_512, bert/large_lamb_64k_phase1, "
        "bert/large_lamb_64k_phase2, bert/mlperf_lamb_bs256, bert/mlperf_lamb_bs6912, "
        "bert/tiny_wiki_lamb, bert/tiny_wiki_lamb_hour, bert/tiny_wiki_lamb_hour_bbc, "
        "resnet/resnet50_lamb_32k, "
        "resnet/resnet50_lars_32k, "
        "resnet/tiny_fashion_mnist.")


def test_the_venv_takes_the_dependencies_from_here_and_leaves_them_in_place(venv_python,
                                                                           empty_dir):
    python, _ = venv_python
    import keras
    # Where each import would come from, without the seconds of importing TensorFlow (the
    # test below imports lamb_tf there for real).
    where = _run([python, "-c", "from importlib.util import find_spec; "
                  "print(find_spec('keras').origin); print(find_spec('lamb_tf').origin)"],
                 cwd=empty_dir).split()
    assert where[0] == keras.__file__  # the environment running the tests provides keras
    assert "/venv/" in where[1]
    # The wheel's install did not uninstall the lamb_tf of the environment running the tests.
    here = _run([sys.executable, "-c", "from importlib.util import find_spec; "
                 "print(find_spec('lamb_tf').origin)"], cwd=empty_dir)
    assert "/venv/" not in here and here.strip().endswith("__init__.py")


def test_lamb_tf_alone_imports_from_the_wheel_without_the_extras(venv_python, empty_dir):
    python, _ = venv_python
    hide = "".join(f"sys.modules[{m!r}] = None\n"
                   for m in ("tf_keras", "official", "tensorflow_text"))
    output = _run([python, "-c", "import sys\n" + hide + "import lamb_tf\n"
                   "optimizer = lamb_tf.Lamb(learning_rate=0.1)\n"
                   "print(lamb_tf.__file__, type(optimizer).__name__)"], cwd=empty_dir)
    assert "/venv/" in output and output.strip().endswith(" Lamb")
