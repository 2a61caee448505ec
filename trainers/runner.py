"""The TPUEstimator-style controller: compiled multi-step training, checkpoints, eval, summaries.

`run(task, experiment, model_dir, mode)` does everything a task does not: the strategy, the
global batch, mixed precision, gradient accumulation, `iterations_per_loop` updates per compiled
`tf.function`, auto-resume from `model_dir` (model, optimizer slots, step, loss scale and the
position in the training data), `init_checkpoint`, eval, TensorBoard summaries, preemption
(SIGTERM) and NaN handling.

As Orbit's `Controller`, it composes and does not hold the pieces: the replica step
(`trainers.replica_step`), the compiled loop (`trainers.train_loop`), the evaluator
(`trainers.evaluator`) and what runs after each loop (`trainers.train_actions`).
"""

import os
import time

import tensorflow as tf
from absl import logging

from lamb_tf import noise_scale
from trainers import checkpointing
from trainers import params_record
from trainers import distribution
from trainers import evaluator as evaluator_lib
from trainers import health
from trainers import input as input_lib
from trainers import model_dir_lock
from trainers import preemption as preemption_lib
from trainers import recovery as recovery_lib
from trainers import replica_step
from trainers import resume
from trainers import storage
from trainers import train_actions
from trainers import train_loop as train_loop_lib
from trainers import train_state
from trainers.data import files as files_lib

MODES = ("train", "eval", "train_and_eval", "continuous_eval")
NOISE_SCALE_DECAY = 0.99  # per update, for each of the two noise-scale estimates
NonFiniteLossError = train_actions.NonFiniteLossError


class Runner:
    """One experiment in one model_dir; `run` below is the usual entry point."""

    def __init__(self, task, experiment, model_dir, strategy=None):
        self.task, self.experiment, self.model_dir = task, experiment, model_dir
        trainer = self.trainer = experiment.trainer
        runtime = experiment.runtime
        storage.check_path("model_dir", model_dir)
        for name in ("num_accumulation_steps", "iterations_per_loop"):
            if getattr(trainer, name) < 1:
                raise ValueError(f"{name}={getattr(trainer, name)} must be >= 1.")
        self.strategy = strategy or distribution.make_strategy(runtime)
        self.num_replicas = self.strategy.num_replicas_in_sync
        self.is_chief = distribution.is_chief(self.strategy)
        self.micro_batch_size = distribution.check_batch(
            "train_batch_size", trainer.train_batch_size, self.num_replicas,
            trainer.num_accumulation_steps)
        self.noise_scale_layout = replica_step.noise_scale_layout(
            trainer, self.num_replicas, self.micro_batch_size)
        self.noise_scale = noise_scale.SmoothedEstimates(NOISE_SCALE_DECAY)
        distribution.check_batch("eval_batch_size", trainer.eval_batch_size, self.num_replicas)
        state = self.state = train_state.TrainState(task, experiment, self.strategy)
        self.train_input = input_lib.TrainInput(task, self.strategy, trainer.train_batch_size,
                                                runtime.seed)
        self.weight_norms = (health.WeightNorms(state.model.trainable_variables, model_dir)
                             if self.is_chief else None)
        self.evaluator = evaluator_lib.Evaluator(task, self.strategy, state.model, state.metrics,
                                                 trainer, model_dir, self.weight_norms)
        self._savable = train_actions.SavableCheck(state.model, state.optimizer)
        self._summaries = train_actions.TrainSummaries(
            trainer, state.optimizer, state.inner_optimizer, state.loss_scaling,
            self.noise_scale, self.weight_norms)
        self._writers = {}

    @property
    def step(self):
        return int(self.state.inner_optimizer.iterations.numpy())

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = (
                tf.summary.create_file_writer(os.path.join(self.model_dir, name))
                if self.is_chief else tf.summary.create_noop_writer())
        return self._writers[name]

    def _restore_or_initialize(self, latest):
        if latest:
            resume.restore(self.state.checkpoint, latest, self.model_dir)
            logging.info("Resumed from %s at step %d.", latest, self.step)
        elif self.trainer.init_checkpoint:
            self.load_init_checkpoint(self.trainer.init_checkpoint)

    def load_init_checkpoint(self, path):
        """What the task takes from `init_checkpoint` (by default, model weights only: not the
        optimizer state or step)."""
        storage.check_path("init_checkpoint", path)
        self.task.initialize(self.state.model, path)

    def make_replica_step(self):
        """The per-replica update the compiled loop runs (`trainers.replica_step`), for this
        run's model, optimizer, strategy and flags; tests compile it alone."""
        state = self.state
        return replica_step.make_replica_step(
            self.task, state.model, state.optimizer, self.trainer, self.noise_scale_layout,
            self.num_replicas, self.micro_batch_size, state.loss_scaling,
            jit_replica_pass=self._jit_scope() == "replica_pass")

    def _jit_scope(self):
        return replica_step.jit_scope(self.experiment.runtime.jit_compile, self.strategy)

    def _make_train_loop(self):
        return train_loop_lib.make_train_loop(
            self.make_replica_step(), self.strategy, self.train_input,
            self.state.inner_optimizer.iterations, jit_whole_step=self._jit_scope() == "step")

    def train(self, eval_each_checkpoint=False, stop_when=None):
        """Trains to num_train_steps; returns the last eval results when evaluating.

        `stop_when(results)`, with `eval_each_checkpoint`, ends training early after the first
        checkpoint whose eval results it accepts (e.g. a steps-to-target measurement). Eval
        metrics are reduced over the cluster, so every worker stops after the same loop.

        The chief holds the model_dir lock throughout, which also proves model_dir writable
        before any training time is spent.
        """
        if stop_when is not None and not eval_each_checkpoint:
            raise ValueError("stop_when judges eval results: it needs eval_each_checkpoint=True.")
        if not self.is_chief:
            return self._train(eval_each_checkpoint, stop_when, None)
        with model_dir_lock.ModelDirLock(self.model_dir) as lock:
            return self._train(eval_each_checkpoint, stop_when, lock)

    def _train(self, eval_each_checkpoint, stop_when, lock):
        """`lock`: the chief's ModelDirLock, checked before each write (None elsewhere)."""
        trainer, train_input = self.trainer, self.train_input
        params = params_record.ParamsRecord(self.model_dir)
        cluster = {"workers": distribution.worker_count(self.strategy),
                   "replicas": self.num_replicas}
        stream = resume.check(self.task, self.experiment, self.model_dir, params, cluster)
        if self.is_chief:
            checkpointing.remove_interrupted_writes(self.model_dir)
        self.task.validate_inputs("train")
        if eval_each_checkpoint:
            self.task.validate_inputs("eval")
        checkpoints = checkpointing.RunCheckpoints(
            self.model_dir, self.state.checkpoint, train_input.checkpointed_state(),
            self.state.inner_optimizer.iterations, trainer.keep_checkpoint_max,
            train_input.num_pipelines, train_input.pipeline_id,
            worker_id=None if self.is_chief else self.strategy.cluster_resolver.task_id)
        latest = checkpoints.resume_from
        resume.check_same_step_everywhere(self.strategy, cluster["workers"], latest)
        self._restore_or_initialize(latest)
        checkpoints.restore_data_position(self.step)
        iterator = train_input.iterator()
        if resume.already_trained(self.model_dir, self.step, trainer.num_train_steps):
            return None
        if self.is_chief:
            lock.check()
            resume.write_records(self.task, self.model_dir)
            params.write(self.experiment, self.step, cluster, stream)
            self.weight_norms.start(self.step)
        train_loop = self._make_train_loop()
        cadence = train_actions.CheckpointCadence(
            trainer, checkpoints, lambda: self.step, self._savable, lock,
            self.evaluate if eval_each_checkpoint else None, stop_when)
        recovery = recovery_lib.LossSpikeRecovery(trainer, self.state.loss_scaling)
        if recovery.enabled and not latest:
            cadence.save_first()
        train_files = self.task.input_files("train")
        throughput = train_actions.Throughput(trainer.train_batch_size, self.step)
        with preemption_lib.Preemption(self.strategy) as preemption:
            while self.step < trainer.num_train_steps:
                start_step = self.step
                num_steps = min(trainer.iterations_per_loop, trainer.num_train_steps - start_step)
                started = time.monotonic()
                with files_lib.naming_corrupt_file(train_files):
                    output = train_loop(iterator, num_steps)
                seconds = time.monotonic() - started
                spike = recovery.spike(self.step, output.loss, output.first_non_finite)
                if spike:
                    train_actions.roll_back(self.state.checkpoint, checkpoints.latest, spike,
                                            recovery, self.step, self._writer("train"))
                    cadence.last_save = self.step
                    continue
                train_actions.check_finite(output.first_non_finite, self.state.loss_scaling,
                                           checkpoints)
                train_actions.add_noise_scale(self.noise_scale, output.estimate_sums,
                                              self.noise_scale_layout.measured)
                self._summaries.write(self._writer("train"), self.step, output.loss,
                                      output.gradient_norm,
                                      throughput.of_loop(start_step, num_steps, seconds))
                if cadence():
                    logging.info("Stopping at step %d: stop_when accepted the eval results.",
                                 self.step)
                    break
                # Every worker, every loop: the cluster agrees on the loop to stop after.
                # No eval then: a preempted machine has seconds, not minutes.
                preemption.save_and_exit_if_requested(lambda: cadence.save(evaluate=False))
        throughput.print_total()
        return cadence.results

    def evaluate(self):
        """Metrics over the eval set (every example once) at the current weights."""
        return self.evaluator.evaluate(self.step, self._writer("eval"), self.is_chief)

    def evaluate_latest(self):
        latest = checkpointing.newest_whole_checkpoint(self.model_dir, 0, move_broken=False)
        if not latest:
            raise FileNotFoundError(f"No checkpoint in {self.model_dir} to evaluate; train "
                                    "first (--mode=train or train_and_eval).")
        self.state.checkpoint.read(latest).expect_partial()
        return self.evaluate()

    def continuous_eval(self, timeout_seconds=3600):
        """Evaluates each new checkpoint until one at num_train_steps has been evaluated."""
        results = None
        for path in tf.train.checkpoints_iterator(self.model_dir, timeout=timeout_seconds):
            self.state.checkpoint.read(path).expect_partial()
            results = self.evaluate()
            if self.step >= self.trainer.num_train_steps:
                break
        return results


def run(task, experiment, model_dir, mode="train", strategy=None):
    """Runs `mode` for `task` in `model_dir`; returns the last eval results, if any."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {list(MODES)}.")
    runner = Runner(task, experiment, model_dir, strategy=strategy)
    if mode == "train":
        runner.train()
        return None
    if mode == "train_and_eval":
        return runner.train(eval_each_checkpoint=True) or runner.evaluate()
    if mode == "eval":
        return runner.evaluate_latest()
    return runner.continuous_eval()
