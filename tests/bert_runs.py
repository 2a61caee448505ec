"""Small BERT pretraining runs for the runner tests: synthetic data, configs, checkpoints."""

import os
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf
import yaml

from tests import synthetic_text
from trainers import config as config_lib
from trainers.bert.config import BertExperimentConfig
from trainers.data import create_pretraining_data as creator

SEQ, PREDICTIONS = 32, 6
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_data(directory, num_output_files=4, pair_task="random_next"):
    paths, vocab_path, _ = synthetic_text.write_corpus(os.path.join(directory, "text"))
    creator.create(creator.CreationOptions(
        input_file=",".join(paths), output_dir=os.path.join(directory, "data"),
        vocab_file=vocab_path, max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS,
        dupe_factor=2, num_output_files=num_output_files, holdout_fraction=0.2, num_workers=1,
        pair_task=pair_task))
    return os.path.join(directory, "data")


def pretrain(root, num_train_steps=3):
    """A tiny pretraining run in `root`: (data_dir, model_dir, the trained pretrainer restored
    from its last checkpoint by a plain tf.train.Checkpoint, independently of any exporting or
    fine-tuning code)."""
    from trainers import runner
    from trainers.bert.task import BertPretrainingTask
    data_dir = make_data(os.path.join(root, "data"))
    pretraining = experiment(data_dir, trainer={"num_train_steps": num_train_steps})
    model_dir = os.path.join(root, "run")
    runner.run(BertPretrainingTask(pretraining.task), pretraining, model_dir, "train")
    trained = BertPretrainingTask(pretraining.task).build_model()
    tf.train.Checkpoint(model=trained).read(tf.train.latest_checkpoint(model_dir)) \
        .expect_partial()
    return data_dir, model_dir, trained


def copy_run(model_dir, to):
    """`to` made a copy of the finished run in `model_dir`, as if trained there: its checkpoint
    state file (which the trainer writes with absolute paths) points into the copy."""
    shutil.copytree(model_dir, to, dirs_exist_ok=True)
    state = tf.train.get_checkpoint_state(str(to))
    if state:
        def moved(path):
            return os.path.join(str(to), os.path.basename(path))
        tf.compat.v1.train.update_checkpoint_state(
            str(to), moved(state.model_checkpoint_path),
            all_model_checkpoint_paths=[moved(p) for p in state.all_model_checkpoint_paths])
    return str(to)


def settings(data_dir, **sections):
    """A nested dict config for a tiny BERT on the synthetic data; `sections` override."""
    vocab_size = len(open(os.path.join(data_dir, "vocab.txt")).read().split())
    data = {"max_seq_length": SEQ, "max_predictions_per_seq": PREDICTIONS}
    base = {
        "task": {
            "model": {"size": "tiny", "vocab_size": vocab_size, "max_position_embeddings": SEQ,
                      "dropout_rate": 0.0, "attention_dropout_rate": 0.0},
            "train_data": dict(data, input_path=os.path.join(data_dir, "train-*")),
            "eval_data": dict(data, input_path=os.path.join(data_dir, "eval-*")),
        },
        "trainer": {"train_batch_size": 16, "eval_batch_size": 16, "num_train_steps": 4,
                    "iterations_per_loop": 2, "save_checkpoints_steps": 2},
        "optimizer": {"name": "lamb", "learning_rate": 0.01, "num_warmup_steps": 1},
    }
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict):
                base[section].setdefault(key, {}).update(value)
            else:
                base.setdefault(section, {})[key] = value
    return base


def experiment(data_dir, **sections):
    return config_lib.merge(BertExperimentConfig(), settings(data_dir, **sections))


def write_config(path, data_dir, **sections):
    with open(path, "w") as f:
        yaml.safe_dump(settings(data_dir, **sections), f)
    return path


def cli(*args, env=None, **popen):
    """`python -m trainers.bert ARGS` as a child process (Popen)."""
    child_env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    child_env["PYTHONPATH"] = REPO + os.pathsep + child_env.get("PYTHONPATH", "")
    return subprocess.Popen([sys.executable, "-m", "trainers.bert", *args], cwd=REPO,
                            env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)


def run_cli(*args, timeout=300, **kwargs):
    process = cli(*args, **kwargs)
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def model_weights(checkpoint_path):
    """{key: array} of a checkpoint's variables: model weights and optimizer state.

    (The object graph files each variable under the first path that reaches it, often the
    optimizer's, so keys are compared whole.)
    """
    reader = tf.compat.v1.train.NewCheckpointReader(checkpoint_path)  # exact, ram:// too
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.endswith("VARIABLE_VALUE") and "save_counter" not in name}


def assert_same_weights(path_a, path_b, rtol=0.0, atol=0.0):
    a, b = model_weights(path_a), model_weights(path_b)
    assert sorted(a) == sorted(b) and len(a) > 20
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)
