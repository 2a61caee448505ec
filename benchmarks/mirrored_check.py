"""Does MirroredStrategy over this machine's devices train the same weights as one device?

    python -m benchmarks.mirrored_check            # every GPU, or 2 logical CPUs without one
    python -m benchmarks.mirrored_check --num_cpu_devices=4

Runs `python -m trainers.bert` twice on the built-in data, exactly as a user would: once with
`--distribution_strategy=one_device`, once `mirrored`, same global batch, no dropout (each
replica would draw its own masks), float32. The runner reduces gradients and loss
normalizers over the whole global batch, so both must end with the same model and optimizer
state up to floating-point summation order; the check compares every variable of the two last
checkpoints, element by element. Exit status 1 when they differ beyond the tolerance.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from benchmarks import result_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT_RECIPE = os.path.join(REPO, "configs", "bert", "tiny_wiki_lamb.yaml")


def train(model_dir, strategy, args):
    command = [
        sys.executable, "-m", "trainers.bert", f"--config_file={BERT_RECIPE}",
        f"--model_dir={model_dir}", f"--distribution_strategy={strategy}",
        f"--train_batch_size={args.train_batch_size}", f"--num_train_steps={args.steps}",
        f"--iterations_per_loop={args.steps}", f"--save_checkpoints_steps={args.steps}",
        "--num_warmup_steps=1", "--dtype=float32",
        "--params_override=task.model.dropout_rate=0.0,task.model.attention_dropout_rate=0.0",
    ]
    if strategy == "mirrored" and not gpus_present():
        command.append(f"--num_cpu_devices={args.num_cpu_devices}")
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    if completed.returncode:
        raise RuntimeError(f"{strategy} training failed (exit {completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")
    import tensorflow as tf

    return tf.train.latest_checkpoint(model_dir)


def gpus_present():
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def variables(checkpoint):
    import tensorflow as tf

    reader = tf.train.load_checkpoint(checkpoint)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.endswith("VARIABLE_VALUE") and "save_counter" not in name}


def worst_against_tolerance(one, mirrored, rtol, atol):
    """(variable, max |a - b| / (atol + rtol |b|)): at most 1 everywhere means the same state.

    The absolute part matters for variables whose gradient is zero in exact arithmetic (an
    attention key bias cancels in the softmax): their moments are pure round-off, ~1e-7.
    """
    a, b = variables(one), variables(mirrored)
    if sorted(a) != sorted(b):
        raise RuntimeError(f"the checkpoints hold different variables: "
                           f"{sorted(set(a) ^ set(b))[:5]}")

    def ratio(name):
        return float(np.max(np.abs(a[name] - b[name]) / (atol + rtol * np.abs(b[name]))))

    worst = max(a, key=ratio)
    return worst, ratio(worst)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--train_batch_size", type=int, default=16)
    parser.add_argument("--num_cpu_devices", type=int, default=2,
                        help="logical CPU devices to mirror over when there is no GPU")
    # Float32 summation in another order gives ~1e-5 relative here; TF32 matmuls on recent
    # GPUs give more.
    parser.add_argument("--rtol", type=float, default=1e-3)
    parser.add_argument("--atol", type=float, default=1e-6)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="mirrored_check_")
    try:
        one = train(os.path.join(workdir, "one"), "one_device", args)
        mirrored = train(os.path.join(workdir, "mirrored"), "mirrored", args)
        name, ratio = worst_against_tolerance(one, mirrored, args.rtol, args.atol)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    devices = "GPUs" if gpus_present() else f"{args.num_cpu_devices} logical CPUs"
    verdict = "OK" if ratio <= 1.0 else "DIFFERENT"
    print(f"mirrored over {devices} vs one device after {args.steps} steps: largest "
          f"difference {ratio:.2f}x the tolerance (|a - b| <= {args.atol:g} + {args.rtol:g} |b|) "
          f"in {name}: {verdict}")
    return verdict == "OK"


if __name__ == "__main__":
    sys.exit(0 if result_file.run(main) else 1)
