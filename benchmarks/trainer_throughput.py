"""Examples/s of our trainers against Model Garden's own loops on the same model, data and batch.

    python -m benchmarks.trainer_throughput                     # BERT-mini seq 128, batch 32
    python -m benchmarks.trainer_throughput --workload=resnet   # ResNet-18 32x32, synthetic
    python -m benchmarks.trainer_throughput --bert_size=tiny --train_batch_size=64 --rounds=1

Contenders, each trained for `--loops` loops of `--steps_per_loop` steps on one device (the
first GPU if there is one), in `--dtype` (float32, or bfloat16 / float16 mixed precision):

- lamb_tf runner: `python -m trainers.bert` (or `trainers.resnet --use_synthetic_data`) exactly
  as a user runs it, with `lamb_tf.legacy.Lamb` (ResNet: `Lars`), and again with `--jit_compile`;
- Model Garden loop: `official.core.train_lib.run_experiment` (Orbit) on Model Garden's own
  task (`MaskedLMTask`, `ImageClassificationTask`) whose model is the one our task builds, with
  Model Garden's LAMB (LARS), and again with our `legacy` optimizer swapped in: the same
  training step, only the optimizer differs;
- tf_keras fit (BERT): `model.fit(steps_per_execution=steps_per_loop)` on the same model,
  Model Garden's LAMB and input pipeline.

Every contender runs in a fresh process, and the contenders alternate round by round so that
this machine's drift is shared. Each figure leaves out the first loop (tracing and compiling)
and divides the examples of the remaining loops by their wall time: our runner's own
`throughput:` line; for Orbit and fit, the time between the ends of successive loops (which
also holds the loop's summaries, as Orbit's own steps/sec does). The last line reads
`BERT trainer / Model Garden loop: 1.07x` (or `ResNet trainer / ...`) for scripts.
"""

import argparse
import json
import logging as std_logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from benchmarks import result_file

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERT_RECIPE = os.path.join(REPO, "configs", "bert", "tiny_wiki_lamb.yaml")
RESNET_RECIPE = os.path.join(REPO, "configs", "resnet", "tiny_fashion_mnist.yaml")
RESULT_PREFIX = "RESULT "
LEARNING_RATE, WEIGHT_DECAY = 0.03, 0.01  # BERT's LAMB; ResNet's LARS keeps its recipe's

# (label, kind): "runner" against "orbit_mg" makes the headline ratio, "orbit_lamb_tf" against
# "orbit_mg" the optimizer's share inside Model Garden's step.
CONTENDERS = {
    "bert": [
        ("lamb_tf runner", "runner"),
        ("lamb_tf runner --jit_compile", "runner_jit"),
        ("Model Garden loop (Orbit), MG LAMB", "orbit_mg"),
        ("Model Garden loop (Orbit), lamb_tf.legacy.Lamb", "orbit_lamb_tf"),
        ("tf_keras fit(steps_per_execution), MG LAMB", "fit_mg"),
    ],
    "resnet": [
        ("lamb_tf runner", "runner"),
        ("lamb_tf runner --jit_compile", "runner_jit"),
        ("Model Garden loop (Orbit), MG LARS", "orbit_mg"),
        ("Model Garden loop (Orbit), lamb_tf.legacy.Lars", "orbit_lamb_tf"),
    ],
}


# ----------------------------------------------------------------------------------- children
def runner_flags(args):
    """Our runner's flags for this measurement, after the workload's recipe."""
    steps = args.steps_per_loop * args.loops
    common = [f"--train_batch_size={args.train_batch_size}", f"--num_train_steps={steps}",
              f"--dtype={args.dtype}", "--distribution_strategy=one_device",
              f"--iterations_per_loop={args.steps_per_loop}", f"--save_checkpoints_steps={steps}",
              f"--num_warmup_steps={max(1, steps // 10)}"]
    if args.workload == "bert":
        return [f"--config_file={BERT_RECIPE}", f"--params_override=task.model.size="
                f"{args.bert_size}", f"--learning_rate={LEARNING_RATE}"] + common
    return [f"--config_file={RESNET_RECIPE}", "--use_synthetic_data",
            f"--params_override=task.model.model_id={args.resnet_depth},"
            f"task.model.image_size={args.image_size}"] + common


def our_experiment(args):
    """The experiment our runner resolves from the same flags, and its task."""
    from absl import flags

    from trainers import flags as trainer_flags

    flag_values = flags.FlagValues()
    trainer_flags.define_flags(flag_values)
    if args.workload == "bert":
        from trainers.bert.config import BertExperimentConfig as Experiment
        from trainers.bert.task import BertPretrainingTask as Task
    else:
        from trainers.resnet.config import ResNetExperimentConfig as Experiment
        from trainers.resnet.task import ResNetTask as Task
    flag_values(["throughput"] + [f for f in runner_flags(args) if f != "--use_synthetic_data"])
    experiment = trainer_flags.resolve(Experiment(), flag_values)
    if args.workload == "resnet":
        # The runner's own flag, which the shared flags lack: Model Garden's contenders train on
        # the same synthetic batch, not on the data set.
        experiment.task.use_synthetic_data = True
    return experiment, Task(experiment.task)


def model_garden_optimizer(args, experiment, exclusions):
    """Model Garden's optimization config of the same optimizer, schedule and decay."""
    from official.modeling import optimization

    steps, optimizer = experiment.trainer.num_train_steps, experiment.optimizer
    if args.workload == "bert":
        update = {"type": "lamb", "lamb": {
            "weight_decay_rate": optimizer.lamb.weight_decay,
            "exclude_from_weight_decay": exclusions}}
    else:
        update = {"type": "lars", "lars": {
            "momentum": optimizer.lars.momentum, "eeta": optimizer.lars.trust_coefficient,
            "weight_decay_rate": optimizer.lars.weight_decay,
            "exclude_from_weight_decay": exclusions}}
    return optimization.OptimizationConfig({
        "optimizer": update,
        "learning_rate": {"type": "polynomial", "polynomial": {
            "initial_learning_rate": optimizer.learning_rate, "decay_steps": steps,
            "end_learning_rate": 0.0, "power": optimizer.power}},
        "warmup": {"type": "linear", "linear": {"warmup_steps": optimizer.num_warmup_steps}},
    })


def our_legacy_optimizer(args, experiment, schedule, exclusions):
    from lamb_tf import legacy

    optimizer = experiment.optimizer
    if args.workload == "bert":
        return legacy.Lamb(schedule, weight_decay=optimizer.lamb.weight_decay,
                           exclude_from_weight_decay=exclusions)
    return legacy.Lars(schedule, momentum=optimizer.lars.momentum,
                       trust_coefficient=optimizer.lars.trust_coefficient,
                       weight_decay=optimizer.lars.weight_decay,
                       exclude_from_weight_decay=exclusions)


def model_garden_task(args, use_lamb_tf):
    """Model Garden's own task class and config, training the model our task builds."""
    from official.core import config_definitions as cfg
    from official.modeling import optimization

    experiment, ours = our_experiment(args)
    exclusions = ours.weight_decay_exclusions()
    trainer = experiment.trainer
    steps = trainer.num_train_steps
    if args.workload == "bert":
        from official.nlp.data import pretrain_dataloader
        from official.nlp.tasks import masked_lm

        data = experiment.task.train_data
        base_task = masked_lm.MaskedLMTask
        task_config = masked_lm.MaskedLMConfig(
            train_data=pretrain_dataloader.BertPretrainDataConfig(
                input_path=",".join(ours.inputs("train").files),
                global_batch_size=trainer.train_batch_size, seq_length=data.max_seq_length,
                max_predictions_per_seq=data.max_predictions_per_seq,
                use_next_sentence_label=True, is_training=True))
    else:
        from official.vision.configs import image_classification as image_configs
        from official.vision.tasks import image_classification

        model = experiment.task.model
        base_task = image_classification.ImageClassificationTask
        task_config = image_configs.ImageClassificationTask(
            model=image_configs.ImageClassificationModel(num_classes=model.num_classes),
            losses=image_configs.Losses(label_smoothing=experiment.task.label_smoothing),
            train_data=image_configs.DataConfig(global_batch_size=trainer.train_batch_size,
                                                is_training=True))

    class SameModelTask(base_task):
        def build_model(self, params=None):
            return ours.build_model()

        def build_inputs(self, params, input_context=None):
            if args.workload == "bert":
                return super().build_inputs(params, input_context)
            # Our synthetic batches, as Model Garden's (image, label) pairs.
            return ours.input_fn("train", trainer.train_batch_size, input_context).map(
                lambda features: (features["image"], features["label"]))

        @classmethod
        def create_optimizer(cls, optimizer_config, runtime_config=None, dp_config=None):
            if not use_lamb_tf:
                return super().create_optimizer(optimizer_config, runtime_config, dp_config)
            schedule = optimization.OptimizerFactory(optimizer_config).build_learning_rate()
            return our_legacy_optimizer(args, experiment, schedule, exclusions)

    params = cfg.ExperimentConfig(
        task=task_config, runtime=cfg.RuntimeConfig(mixed_precision_dtype=args.dtype),
        trainer=cfg.TrainerConfig(
        train_steps=steps, steps_per_loop=trainer.iterations_per_loop,
        summary_interval=trainer.iterations_per_loop, checkpoint_interval=steps,
        validation_interval=steps,
        optimizer_config=model_garden_optimizer(args, experiment, exclusions)))
    return ours, SameModelTask, params


class LoopEnds(std_logging.Handler):
    """Times Orbit's "train | step: N | steps/sec" lines: loop ends, with full precision."""

    PATTERN = re.compile(r"train \| step:\s*(\d+) \| steps/sec")

    def __init__(self):
        super().__init__()
        self.ends = []  # (step, seconds)

    def emit(self, record):
        match = self.PATTERN.search(record.getMessage())
        if match:
            self.ends.append((int(match.group(1)), time.perf_counter()))


def rate_after_first_loop(ends, batch_size):
    """Examples/s over every loop but the first, from (step, time) at loop ends."""
    (first_step, first_time), (last_step, last_time) = ends[0], ends[-1]
    return (last_step - first_step) * batch_size / (last_time - first_time)


def set_model_garden_precision(dtype):
    """What Model Garden's train.py does with runtime.mixed_precision_dtype."""
    import tensorflow as tf
    from official.modeling import performance

    performance.set_mixed_precision_policy(tf.as_dtype(dtype))


def run_orbit(args, use_lamb_tf):
    from absl import logging
    from official.core import train_lib

    from trainers import distribution
    from trainers.config import RuntimeConfig

    set_model_garden_precision(args.dtype)
    _, task_class, params = model_garden_task(args, use_lamb_tf)
    ends = LoopEnds()
    logging.set_verbosity(logging.INFO)
    logging.get_absl_logger().addHandler(ends)
    model_dir = tempfile.mkdtemp(prefix="mg_orbit_")
    try:
        # The device our runner's --distribution_strategy=one_device picks.
        strategy = distribution.make_strategy(RuntimeConfig(distribution_strategy="one_device"))
        with strategy.scope():
            task = task_class(params.task)
        train_lib.run_experiment(distribution_strategy=strategy, task=task, mode="train",
                                 params=params, model_dir=model_dir)
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    return rate_after_first_loop(ends.ends, args.train_batch_size)


def run_fit(args):
    import tensorflow as tf
    import tf_keras
    from official.nlp.data import pretrain_dataloader

    set_model_garden_precision(args.dtype)
    ours, task_class, params = model_garden_task(args, use_lamb_tf=False)
    dataset = pretrain_dataloader.BertPretrainDataLoader(params.task.train_data).load()

    class FitPretrainer(tf_keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def train_step(self, features):
            with tf.GradientTape() as tape:
                outputs = self.inner(features, training=True)
                sums = ours.loss_sums(features, outputs)
                normalizers = ours.loss_normalizers(features)
                loss = tf.add_n([tf.math.divide_no_nan(sums[k], normalizers[k]) for k in sums])
            variables = self.inner.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
            return {"loss": loss}

    ends = []

    class Timer(tf_keras.callbacks.Callback):
        # With steps_per_execution, tf_keras calls this once per execution of that many steps.
        def on_train_batch_end(self, batch, logs=None):
            ends.append((batch + 1, time.perf_counter()))

    model = FitPretrainer(ours.build_model())
    model.compile(optimizer=task_class.create_optimizer(params.trainer.optimizer_config),
                  steps_per_execution=args.steps_per_loop)
    model.fit(dataset, epochs=1, steps_per_epoch=args.steps_per_loop * args.loops,
              callbacks=[Timer()], verbose=0)
    return rate_after_first_loop(ends, args.train_batch_size)


def run_child(args):
    rate = {"orbit_mg": lambda: run_orbit(args, use_lamb_tf=False),
            "orbit_lamb_tf": lambda: run_orbit(args, use_lamb_tf=True),
            "fit_mg": lambda: run_fit(args)}[args.child]()
    print(RESULT_PREFIX + json.dumps({"examples_per_second": rate}), flush=True)


# ------------------------------------------------------------------------------------- parent
def child_command(args, kind, model_dir):
    """The command line that measures `kind` once."""
    if kind.startswith("runner"):
        module = "trainers.bert" if args.workload == "bert" else "trainers.resnet"
        return ([sys.executable, "-m", module, f"--model_dir={model_dir}"] + runner_flags(args)
                + (["--jit_compile"] if kind == "runner_jit" else []))
    return [sys.executable, "-m", "benchmarks.trainer_throughput", f"--child={kind}",
            f"--workload={args.workload}", f"--bert_size={args.bert_size}",
            f"--resnet_depth={args.resnet_depth}", f"--image_size={args.image_size}",
            f"--dtype={args.dtype}",
            f"--train_batch_size={args.train_batch_size}",
            f"--steps_per_loop={args.steps_per_loop}", f"--loops={args.loops}"]


def parse_rate(kind, output):
    """Our runner's `throughput:` line, or a child's RESULT line."""
    if kind.startswith("runner"):
        match = re.search(r"^throughput: ([\d.]+) examples/s", output, re.M)
        rate = match and float(match.group(1))
    else:
        match = re.search("^" + RESULT_PREFIX + r"(\{.*\})$", output, re.M)
        rate = match and json.loads(match.group(1))["examples_per_second"]
    if not match:
        raise RuntimeError(f"{kind}: no throughput in its output:\n{output[-3000:]}")
    return rate


def measure_once(args, kind):
    model_dir = tempfile.mkdtemp(prefix="throughput_")
    try:
        completed = subprocess.run(child_command(args, kind, model_dir), cwd=REPO,
                                   capture_output=True, text=True,
                                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)
    if completed.returncode:
        raise RuntimeError(f"{kind} failed (exit {completed.returncode}):\n"
                           f"{completed.stderr[-3000:]}")
    return parse_rate(kind, completed.stdout + completed.stderr)


def describe(args):
    if args.workload == "bert":
        shape = f"BERT-{args.bert_size}, sequence 128"
    else:
        shape = f"ResNet-{args.resnet_depth}, {args.image_size}x{args.image_size} synthetic images"
    return (f"{shape}, global batch {args.train_batch_size}, one device, {args.dtype}; "
            f"{args.loops} loops of {args.steps_per_loop} steps, the first not timed; "
            f"{args.rounds} alternating rounds, median shown")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(CONTENDERS), default="bert")
    parser.add_argument("--bert_size", default="mini", help="tiny, mini, small, base, ...")
    parser.add_argument("--resnet_depth", type=int, default=18)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--train_batch_size", type=int, default=32)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--steps_per_loop", type=int, default=10)
    parser.add_argument("--loops", type=int, default=4, help="the first one is not timed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma list of contender kinds: runner, "
                        "runner_jit, orbit_mg, orbit_lamb_tf, fit_mg (BERT only)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.loops < 2:
        parser.error("--loops must be at least 2: the first loop traces and is not timed.")
    if args.child:
        run_child(args)
        return None

    wanted = [kind for kind in args.only.split(",") if kind]
    contenders = [(label, kind) for label, kind in CONTENDERS[args.workload]
                  if not wanted or kind in wanted]
    print(describe(args), flush=True)
    rates = {kind: [] for _, kind in contenders}
    for round_number in range(args.rounds):
        for label, kind in contenders:
            rates[kind].append(measure_once(args, kind))
            print(f"  round {round_number + 1}: {label}: {rates[kind][-1]:.1f} examples/s",
                  flush=True)
    medians = {kind: statistics.median(values) for kind, values in rates.items()}
    anchor = medians.get("orbit_mg")
    print(f"{'contender':48s} {'examples/s':>10s} {'x MG loop':>10s}")
    for label, kind in contenders:
        ratio = f"{medians[kind] / anchor:10.2f}" if anchor else f"{'':>10s}"
        print(f"{label:48s} {medians[kind]:10.1f} {ratio}")
    name = "BERT" if args.workload == "bert" else "ResNet"
    optimizer = "Lamb" if args.workload == "bert" else "Lars"
    if "orbit_lamb_tf" in medians and anchor:
        print(f"lamb_tf.legacy.{optimizer} / Model Garden {optimizer.upper()} in Model Garden's "
              f"step: {medians['orbit_lamb_tf'] / anchor:.2f}x")
    if "runner" in medians and anchor:
        print(f"{name} trainer / Model Garden loop: {medians['runner'] / anchor:.2f}x")
    return medians


if __name__ == "__main__":
    result_file.run(main)
