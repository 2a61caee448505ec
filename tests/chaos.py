r"""SIGKILL at random moments, then the same command: the final weights must be bit-identical to
an uninterrupted run's, for BERT and ResNet.

    python -m tests.chaos [--kills=8] [--seed=0] [--workloads=bert,resnet]

Not part of the suite (a few minutes): each workload trains with a checkpoint after every update,
so kills land inside saves, restores and retention as often as inside steps. Prints one line per
kill and `chaos: bert bit-identical after 6 kills` per workload; exits 1 on any difference.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from tests import bert_runs

STEPS = 30


def _resnet_data(root):
    from trainers.data import images_to_tfrecords as converter
    rng = np.random.default_rng(0)
    images = [converter.LabelledImage(
        tf.io.encode_png(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).numpy(), "png",
        int(i % 3), 16, 16, 3, f"{i}.png") for i in range(96)]
    converter.write_shards(images, ["a", "b", "c"], os.path.join(root, "images"), "train", 2)
    return os.path.join(root, "images", "train-*")


def commands(workload, root):
    common = [f"--num_train_steps={STEPS}", "--iterations_per_loop=1",
              "--save_checkpoints_steps=1", "--keep_checkpoint_max=2"]
    if workload == "bert":
        config = bert_runs.write_config(
            os.path.join(root, "bert.yaml"), bert_runs.make_data(os.path.join(root, "bert")),
            task={"model": {"dropout_rate": 0.1, "attention_dropout_rate": 0.1}})
        return [sys.executable, "-m", "trainers.bert", f"--config_file={config}"] + common
    pattern = _resnet_data(root)
    override = ",".join([
        "task.model.model_id=10", "task.model.num_classes=3", "task.model.image_size=16",
        f"task.train_data.input_path={pattern}", f"task.eval_data.input_path={pattern}",
        "task.train_data.shuffle_buffer_size=32"])
    return [sys.executable, "-m", "trainers.resnet", "--config_file=resnet/tiny_fashion_mnist",
            f"--params_override={override}", "--train_batch_size=8",
            "--num_warmup_steps=2"] + common


def run(command, model_dir, kill_at_step=None, then_wait=0.0):
    """Runs to the end, or SIGKILLs the run `then_wait` s after ckpt-`kill_at_step` appears."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=bert_runs.REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen(command + [f"--model_dir={model_dir}"], cwd=bert_runs.REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    if kill_at_step is None:
        _, error = process.communicate()
        if process.returncode:
            sys.exit(f"chaos: the run failed:\n{error[-3000:]}")
        return
    marker = os.path.join(model_dir, f"ckpt-{kill_at_step}.index")
    while not os.path.exists(marker) and process.poll() is None:
        time.sleep(0.01)
    time.sleep(then_wait)
    process.send_signal(signal.SIGKILL)
    process.wait()


def latest_step(model_dir):
    state = tf.train.get_checkpoint_state(model_dir) if os.path.isdir(model_dir) else None
    return int(state.model_checkpoint_path.rsplit("-", 1)[1]) if state else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workloads", default="bert,resnet")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failed = False
    for workload in args.workloads.split(","):
        with tempfile.TemporaryDirectory() as root:
            command = commands(workload, root)
            reference = os.path.join(root, "uninterrupted")
            run(command, reference)
            killed = os.path.join(root, "killed")
            kills = 0
            for kill in range(args.kills):
                before = latest_step(killed)
                if before >= STEPS - 1:
                    break
                # A few steps on, past that step's save, then up to a quarter second more: into
                # the next step, its save, or the retention after it.
                at_step = min(STEPS - 1, before + rng.randint(1, 3))
                wait = rng.uniform(0.0, 0.25)
                kills += 1
                run(command, killed, kill_at_step=at_step, then_wait=wait)
                print(f"{workload}: kill {kill + 1} {wait:.2f} s after ckpt-{at_step} appeared; "
                      f"the newest checkpoint is then ckpt-{latest_step(killed)}", flush=True)
            run(command, killed)
            try:
                bert_runs.assert_same_weights(os.path.join(killed, f"ckpt-{STEPS}"),
                                              os.path.join(reference, f"ckpt-{STEPS}"))
                print(f"chaos: {workload} bit-identical after {kills} kills")
            except AssertionError as e:
                failed = True
                print(f"chaos: {workload} DIFFERS after {kills} kills: {str(e)[:300]}")
            left = sorted(os.listdir(killed))
            print(f"{workload}: model_dir holds {left}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
