"""The two workloads: what one run of (optimizer, batch, peak rate, updates, seed) trains.

`fashion_cnn` is how most users meet `lamb_tf.Lamb`: Keras 3 `compile`/`fit`. `bert` goes
through the trainers' own API (`trainers.runner`), the way the recipes run.
"""

import dataclasses
import json
import math
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

import lamb_tf
from lamb_tf import noise_scale

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
VALIDATION_IMAGES = 5000  # the last 5,000 training images choose the rate; test is reported
# B_simple at a run's end: 20 batches of 1,024 training images, each cut in two halves.
NOISE_SCALE_BATCH, NOISE_SCALE_BATCHES = 1024, 20


@dataclasses.dataclass
class Outcome:
    metric: float
    selection_metric: float
    examples_per_sec: float  # training only, after the first compiled execution
    finite: bool


def keras3_optimizer(name, schedule):
    """The contenders as a Keras user writes them; only the learning rate is tuned."""
    if name == "lamb":
        return lamb_tf.Lamb(learning_rate=schedule)
    if name == "lars":
        return lamb_tf.Lars(learning_rate=schedule, momentum=0.9)
    if name == "adamw":
        # weight_decay 0 like the others here (Keras's default is 0.004).
        return keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.0)
    if name == "nesterov":
        return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, nesterov=True)
    raise ValueError(f"Unknown optimizer {name!r}.")


class TrainingThroughput(keras.callbacks.Callback):
    """Examples/s of the training batches after the first compiled call (which traces)."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch
        self.start = None
        self.first = self.last = 0
        self.seconds = 0.0

    def on_train_batch_end(self, index, logs=None):
        now = time.perf_counter()
        if self.start is None:
            self.start, self.first = now, index
        else:
            self.last, self.seconds = index, now - self.start

    def examples_per_sec(self):
        if self.seconds <= 0:
            return float("nan")
        return (self.last - self.first) * self.batch / self.seconds


class FashionCnn:
    """A small CNN (two strided convolutions, one hidden dense layer; 106k parameters) on
    Fashion-MNIST: ~10,000 images/s on 2 CPU cores, so 32x batch ranges fit in minutes."""

    def __init__(self, data_dir=FASHION_MNIST_DIR, jit_compile=True):
        self.data_dir = data_dir
        self.jit_compile = jit_compile  # False: graph mode, which compiles faster (tests)
        self._data = None

    def _load(self):
        if self._data is None:
            from trainers.data.images_to_tfrecords import read_idx

            def split(stem):
                images = os.path.join(self.data_dir, f"{stem}-images-idx3-ubyte.gz")
                labels = os.path.join(self.data_dir, f"{stem}-labels-idx1-ubyte.gz")
                if not os.path.exists(images):
                    raise FileNotFoundError(
                        f"Fashion-MNIST is not installed ({images} is missing): install it with "
                        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu).")
                return ((read_idx(images, 3)[..., None] / np.float32(255)).astype(np.float32),
                        read_idx(labels, 1).astype(np.int32))

            train_x, train_y = split("train")
            test_x, test_y = split("t10k")
            cut = len(train_x) - min(VALIDATION_IMAGES, len(train_x) // 10)
            self._data = {"train": (train_x[:cut], train_y[:cut]),
                          "validation": (train_x[cut:], train_y[cut:]),
                          "test": (test_x, test_y)}
        return self._data

    @staticmethod
    def build_model(image_shape):
        layers = keras.layers
        return keras.Sequential([
            keras.Input(image_shape),
            layers.Conv2D(16, 5, strides=2, padding="same", activation="relu"),
            layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ])

    def run(self, optimizer, batch, peak_lr, updates, warmup_updates, seed):
        data = self._load()
        keras.utils.set_random_seed(seed)  # same initial weights for every optimizer
        model = self.build_model(data["train"][0].shape[1:])
        schedule = lamb_tf.WarmupPolynomialDecay(
            peak_learning_rate=peak_lr, total_steps=updates, warmup_steps=warmup_updates)
        # Several updates per compiled call keep Python out of the small-batch runs.
        per_call = math.gcd(updates, max(1, 4096 // batch))
        model.compile(optimizer=keras3_optimizer(optimizer, schedule),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"], jit_compile=self.jit_compile,
                      steps_per_execution=per_call)
        train = (tf.data.Dataset.from_tensor_slices(data["train"])
                 .shuffle(len(data["train"][0]), seed=seed, reshuffle_each_iteration=True)
                 .repeat().batch(batch, drop_remainder=True).prefetch(4))
        throughput = TrainingThroughput(batch)
        history = model.fit(train, steps_per_epoch=updates, epochs=1, verbose=0, shuffle=False,
                            callbacks=[throughput])
        finite = bool(np.isfinite(history.history["loss"][-1]))

        def accuracy(split):
            x, y = data[split]
            return float(model.evaluate(x, y, batch_size=1000, verbose=0,
                                        return_dict=True)["accuracy"])

        return Outcome(metric=accuracy("test"), selection_metric=accuracy("validation"),
                       examples_per_sec=throughput.examples_per_sec(), finite=finite)

    def run_to_target(self, optimizer, batch, peak_lr, cap_updates, warmup_updates, eval_every,
                      target, seed):
        """Trains at `peak_lr` (after a linear warmup, constant) until the validation accuracy
        first reaches `target`, checked every `eval_every` updates, or `cap_updates` pass;
        then measures the gradient noise scale at the weights it stopped at."""
        data = self._load()
        keras.utils.set_random_seed(seed)
        model = self.build_model(data["train"][0].shape[1:])
        schedule = lamb_tf.WarmupPolynomialDecay(
            peak_learning_rate=peak_lr, total_steps=cap_updates, warmup_steps=warmup_updates,
            end_learning_rate=peak_lr)
        per_call = math.gcd(eval_every, max(1, 4096 // batch))
        model.compile(optimizer=keras3_optimizer(optimizer, schedule),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      jit_compile=self.jit_compile, steps_per_execution=per_call)
        train = (tf.data.Dataset.from_tensor_slices(data["train"])
                 .shuffle(len(data["train"][0]), seed=seed, reshuffle_each_iteration=True)
                 .repeat().batch(batch, drop_remainder=True).prefetch(4))
        validation_x, validation_y = data["validation"]

        def validation_accuracy():
            logits = model.predict(validation_x, batch_size=1000, verbose=0)
            return float(np.mean(np.argmax(logits, axis=1) == validation_y))

        stop = StopAtTarget(validation_accuracy, target, eval_every)
        throughput = TrainingThroughput(batch)
        model.fit(train, steps_per_epoch=eval_every, epochs=cap_updates // eval_every,
                  verbose=0, shuffle=False, callbacks=[throughput, stop])
        b_simple = float("nan")
        if stop.finite:
            measured = noise_scale.measure(
                model, tf.data.Dataset.from_tensor_slices(data["train"])
                .shuffle(len(data["train"][0]), seed=seed + 1).batch(NOISE_SCALE_BATCH)
                .take(NOISE_SCALE_BATCHES), num_parts=2)
            b_simple = measured["b_simple"]
        return TargetOutcome(updates_to_target=stop.updates_to_target, best_validation=stop.best,
                             updates_trained=stop.updates, b_simple=b_simple,
                             examples_per_sec=throughput.examples_per_sec(),
                             finite=stop.finite)


@dataclasses.dataclass
class TargetOutcome:
    updates_to_target: int   # -1: not reached
    best_validation: float
    updates_trained: int
    b_simple: float
    examples_per_sec: float
    finite: bool


class StopAtTarget(keras.callbacks.Callback):
    """After each `fit` epoch (`eval_every` updates): the validation accuracy, and a stop once
    it first reaches the target (or the loss is no longer finite)."""

    def __init__(self, accuracy, target, eval_every):
        super().__init__()
        self.accuracy, self.target, self.eval_every = accuracy, target, eval_every
        self.updates_to_target, self.best, self.updates, self.finite = -1, 0.0, 0, True

    def on_epoch_end(self, epoch, logs=None):
        self.updates = (epoch + 1) * self.eval_every
        if not np.isfinite((logs or {}).get("loss", 0.0)):
            self.finite = False
            self.model.stop_training = True
            return
        accuracy = self.accuracy()
        self.best = max(self.best, accuracy)
        if accuracy >= self.target:
            self.updates_to_target = self.updates
            self.model.stop_training = True


class Bert:
    """The trainers' BERT pretraining on the built-in Wikipedia data (or `data_dir`'s shards);
    the metric is held-out masked-LM accuracy, which also chooses the rate (no separate test
    split exists for it)."""

    def __init__(self, work_dir, size="tiny", max_seq_length=128, data_dir=None,
                 max_predictions_per_seq=20, max_eval_steps=0):
        self.work_dir = work_dir
        self.max_eval_steps = max_eval_steps  # 0: the whole held-out set
        self.size = size
        self.max_seq_length = max_seq_length
        self.max_predictions_per_seq = max_predictions_per_seq
        self.data_dir = data_dir

    def experiment(self, optimizer, batch, peak_lr, updates, warmup_updates, seed, data_dir):
        from trainers import config as config_lib
        from trainers.bert.config import BertExperimentConfig
        vocab_size = sum(1 for _ in open(os.path.join(data_dir, "vocab.txt"), encoding="utf-8"))
        data = {"max_seq_length": self.max_seq_length,
                "max_predictions_per_seq": self.max_predictions_per_seq}
        per_loop = math.gcd(updates, 25)
        return config_lib.merge(BertExperimentConfig(), {
            "task": {
                "model": {"size": self.size, "vocab_size": vocab_size,
                          "max_position_embeddings": max(self.max_seq_length, 128)},
                "train_data": dict(data, input_path=os.path.join(data_dir, "train-*")),
                "eval_data": dict(data, input_path=os.path.join(data_dir, "eval-*")),
            },
            "trainer": {"train_batch_size": batch, "eval_batch_size": 64,
                        "max_eval_steps": self.max_eval_steps,
                        "num_train_steps": updates, "iterations_per_loop": per_loop,
                        # a killed study resumes its BERT run from here
                        "save_checkpoints_steps": max(per_loop, (updates // 4) // per_loop
                                                      * per_loop)},
            "optimizer": self._optimizer_section(optimizer, peak_lr, warmup_updates),
            "runtime": {"seed": seed},
        })

    @staticmethod
    def _optimizer_section(optimizer, peak_lr, warmup_updates):
        """The same decoupled decay (0.01) for all four; the study's Nesterov is momentum's."""
        name = "momentum" if optimizer == "nesterov" else optimizer
        settings = {"weight_decay": 0.01}
        if name == "momentum":
            settings["nesterov"] = optimizer == "nesterov"
        return {"name": name, "learning_rate": peak_lr, "num_warmup_steps": warmup_updates,
                name: settings}

    def _data_dir(self):
        from trainers.bert import builtin_data
        return self.data_dir or builtin_data.ensure(self.max_seq_length,
                                                    self.max_predictions_per_seq)

    def run(self, optimizer, batch, peak_lr, updates, warmup_updates, seed):
        from trainers import runner
        from trainers.bert.task import BertPretrainingTask
        data_dir = self._data_dir()
        experiment = self.experiment(optimizer, batch, peak_lr, updates, warmup_updates, seed,
                                     data_dir)
        model_dir = os.path.join(self.work_dir, f"{optimizer}_b{batch}_u{updates}_lr{peak_lr:.5g}_s{seed}")
        task = BertPretrainingTask(experiment.task)
        start = time.perf_counter()
        finite = True
        try:
            runner.run(task, experiment, model_dir, mode="train")
        except runner.NonFiniteLossError:
            finite = False
        seconds = time.perf_counter() - start
        if finite:
            results = runner.run(task, experiment, model_dir, mode="eval")
            accuracy = float(results["masked_lm_accuracy"])
        else:
            accuracy = 0.0  # diverged: scored as nothing learned
        shutil.rmtree(model_dir, ignore_errors=True)
        return Outcome(metric=accuracy, selection_metric=accuracy,
                       examples_per_sec=updates * batch / seconds, finite=finite)

    def run_to_target(self, optimizer, batch, peak_lr, cap_updates, warmup_updates, eval_every,
                      target, seed):
        """Trains at `peak_lr` (after a linear warmup, constant) until the held-out masked-LM
        accuracy, evaluated at a checkpoint every `eval_every` updates, first reaches `target`,
        or `cap_updates` pass. B_simple is the trainer's own estimate (each batch cut in two
        halves), smoothed over the run's last ~100 updates.

        A killed run resumes from its last checkpoint; the accuracies it saw before are kept
        in the model_dir beside it.
        """
        from trainers import checkpointing, config as config_lib, runner as runner_lib
        from trainers.bert.task import BertPretrainingTask
        data_dir = self._data_dir()
        experiment = self.experiment(optimizer, batch, peak_lr, cap_updates, warmup_updates,
                                     seed, data_dir)
        config_lib.merge(experiment, {
            "trainer": {"save_checkpoints_steps": eval_every, "keep_checkpoint_max": 1,
                        "iterations_per_loop": math.gcd(eval_every, 32),
                        "noise_scale": "split"},
            "optimizer": {"end_learning_rate": peak_lr}})
        model_dir = os.path.join(self.work_dir, f"to_target_{target:g}_{optimizer}_b{batch}_"
                                 f"u{cap_updates}_lr{peak_lr:.5g}_s{seed}")
        seen_path = os.path.join(model_dir, "target_evals.json")
        seen = json.load(open(seen_path)) if os.path.exists(seen_path) else []
        if seen and seen[-1] >= target:
            # Killed after the eval that reached the target, before the row was written: that
            # eval was of the newest checkpoint (one is kept). Its B_simple died with the run.
            updates = max(checkpointing.checkpoint_steps(model_dir))
            shutil.rmtree(model_dir, ignore_errors=True)
            return TargetOutcome(updates_to_target=updates, best_validation=max(seen),
                                 updates_trained=updates, b_simple=float("nan"),
                                 examples_per_sec=float("nan"), finite=True)

        def reached(results):
            seen.append(float(results["masked_lm_accuracy"]))
            with open(seen_path, "w") as f:
                json.dump(seen, f)
            return seen[-1] >= target

        runner = runner_lib.Runner(BertPretrainingTask(experiment.task), experiment, model_dir)
        start_step, start = runner.step, time.perf_counter()
        finite = True
        try:
            runner.train(eval_each_checkpoint=True, stop_when=reached)
        except runner_lib.NonFiniteLossError:
            finite = False
        seconds = time.perf_counter() - start
        updates = runner.step
        b_simple = runner.noise_scale.b_simple if runner.noise_scale.ready else float("nan")
        shutil.rmtree(model_dir, ignore_errors=True)
        reached_target = finite and bool(seen) and seen[-1] >= target
        return TargetOutcome(
            updates_to_target=updates if reached_target else -1,
            best_validation=max(seen, default=0.0), updates_trained=updates,
            b_simple=float(b_simple) if finite else float("nan"),
            examples_per_sec=(updates - start_step) * batch / seconds, finite=finite)
