"""What the controller does after each compiled loop, as Orbit's train actions: refuse
non-finite state, add to the noise-scale estimates, write the loop's summaries, save on the
checkpoint cadence (evaluating each save when asked), roll back a loss spike.

Each is called by `trainers.runner` with the loop's `trainers.train_loop.LoopOutput`; none runs
the loop itself.
"""

import math

import tensorflow as tf
from absl import logging

from trainers import checkpointing
from trainers import health


class NonFiniteLossError(RuntimeError):
    pass


def _last_good(checkpoints):
    return checkpoints.latest or "none (no checkpoint was saved yet)"


def check_finite(first_non_finite, loss_scaling, checkpoints):
    """Stops the run after a loop with a NaN or Inf loss or gradient (not under fp16, whose
    loss scale skips such steps and shrinks itself)."""
    if first_non_finite < 0 or loss_scaling:
        return
    raise NonFiniteLossError(
        f"The training loss or its gradient became NaN or Inf at step {first_non_finite}. "
        f"Nothing was saved after it; the last good checkpoint is {_last_good(checkpoints)}. "
        "Lower the learning rate or the warmup's peak, check the data, or use "
        "--dtype=float16 for loss scaling.")


def add_noise_scale(smoothed, estimate_sums, measured):
    """Adds the loop's mean noise-scale estimates to `smoothed` (a SmoothedEstimates)."""
    gradient_sq_norm, trace_sigma, updates = estimate_sums
    if updates and measured:
        smoothed.add(gradient_sq_norm / updates, trace_sigma / updates, int(updates))


class SavableCheck:
    """Refuses to save NaN or Inf weights, or NaN optimizer state: a checkpoint is what a
    rollback, a resume and the error messages call good.

    An Inf in the optimizer state is not poison: a finite gradient element above 1.8e19
    (bf16 training meets such) squares to Inf in a second moment, and that element's update
    is then 0, as it was when the step ran.
    """

    def __init__(self, model, optimizer):
        self._model, self._optimizer = model, optimizer
        self._all_savable = None

    def __call__(self, step, checkpoints):
        if self._all_savable is None:
            optimizer_variables = self._optimizer.variables
            if callable(optimizer_variables):
                optimizer_variables = optimizer_variables()
            weights = [v for v in self._model.variables if v.dtype.is_floating]
            state = [v for v in optimizer_variables if v.dtype.is_floating]
            self._all_savable = tf.function(lambda: tf.reduce_all(
                [tf.reduce_all(tf.math.is_finite(v)) for v in weights] +
                [~tf.reduce_any(tf.math.is_nan(v)) for v in state]))
        if not bool(self._all_savable()):
            raise NonFiniteLossError(
                f"At step {step} the weights hold NaN or Inf, or the optimizer state NaN; "
                f"nothing was saved. The last good checkpoint is {_last_good(checkpoints)}. "
                "Lower the learning rate or the warmup's peak, or check the data.")


class CheckpointCadence:
    """Saves every `save_checkpoints_steps` (rounded up to whole loops) and at the end; with
    `evaluate`, evaluates each save and asks `stop_when(results)` whether to stop early.

    `lock`: the chief's ModelDirLock, checked before each save (None on other workers).
    """

    def __init__(self, trainer, checkpoints, current_step, savable, lock, evaluate=None,
                 stop_when=None):
        self._checkpoints = checkpoints
        self._current_step = current_step
        self._savable = savable
        self._lock = lock
        self._evaluate = evaluate
        self._stop_when = stop_when
        self._num_train_steps = trainer.num_train_steps
        loops = max(1, math.ceil(trainer.save_checkpoints_steps / trainer.iterations_per_loop))
        self.save_every = loops * trainer.iterations_per_loop
        # Counted from the last save, not as step % save_every: a run resumed with another
        # iterations_per_loop would otherwise never hit a multiple and save only at the end.
        self.last_save = current_step()
        self.results = None  # of the last evaluation
        self.stop_requested = False

    def save(self, evaluate=True):
        """Saves now unless this step is saved already; returns the step."""
        step = self._current_step()
        if self.last_save != step:
            self._savable(step, self._checkpoints)
            # A run that may have lost model_dir must not write to it: checked before each
            # write and deletion of the save.
            self._checkpoints.save(check_lease=self._lock.check if self._lock else None)
            self.last_save = step
            if evaluate and self._evaluate is not None:
                self.results = self._evaluate()
                self.stop_requested = (self._stop_when is not None and
                                       bool(self._stop_when(self.results)))
        return step

    def save_first(self):
        """A checkpoint at the start of a fresh run, to have one to roll back to."""
        self.last_save = None
        self.save()

    def __call__(self):
        """Saves if one is due; True when stop_when accepted that save's eval results.

        Only a save due here can stop training: save_first's eval at step 0 is judged, but
        training goes on to the next save, which is judged again.
        """
        step = self._current_step()
        if step >= self._num_train_steps or step - self.last_save >= self.save_every:
            self.save()
            return self.stop_requested
        return False


class TrainSummaries:
    """The loop's line in the log and its TensorBoard scalars (model_dir/train): loss, learning
    rate, gradient norm, throughput, noise scale, loss scale, trust ratios, weight norms."""

    def __init__(self, trainer, optimizer, inner_optimizer, loss_scaling, noise_scale,
                 weight_norms):
        self._trainer = trainer
        self._optimizer = optimizer
        self._inner_optimizer = inner_optimizer
        self._loss_scaling = loss_scaling
        self._noise_scale = noise_scale
        self._weight_norms = weight_norms

    def write(self, writer, step, loss, gradient_norm, examples_per_second):
        learning_rate = float(tf.convert_to_tensor(self._inner_optimizer.learning_rate))
        throughput = ("(first loop: tracing included)" if examples_per_second is None
                      else f"{examples_per_second:.1f} examples/s")
        noise_scale = self._noise_scale
        noise = f"  B_simple {noise_scale.b_simple:.3g}" if noise_scale.ready else ""
        logging.info("step %d/%d  loss %.4f  lr %.3g  grad_norm %.3g%s  %s",
                     step, self._trainer.num_train_steps, loss, learning_rate, gradient_norm,
                     noise, throughput)
        with writer.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("gradient_norm", gradient_norm)
            if examples_per_second is not None:
                tf.summary.scalar("examples_per_second", examples_per_second)
            if noise_scale.ready:
                tf.summary.scalar("noise_scale/b_simple", noise_scale.b_simple)
                tf.summary.scalar("noise_scale/gradient_sq_norm", noise_scale.gradient_sq_norm)
                tf.summary.scalar("noise_scale/trace_sigma", noise_scale.trace_sigma)
            if self._loss_scaling:
                tf.summary.scalar("loss_scale",
                                  float(tf.convert_to_tensor(self._optimizer.loss_scale)))
            ratios = getattr(self._inner_optimizer, "trust_ratios", None)
            if ratios:
                tf.summary.histogram("trust_ratio",
                                     tf.stack([tf.convert_to_tensor(r) for r in ratios.values()]))
            if self._weight_norms:
                norms, warnings = self._weight_norms.check(step)
                self._weight_norms.write_summaries(norms, self._weight_norms.start(step))
                health.log_warnings(warnings)


class Throughput:
    """Examples per second of each loop but the first after a start, which includes tracing
    and compiling; and over the whole run, printed at its end."""

    def __init__(self, global_batch_size, first_step):
        self._batch, self._first_step = global_batch_size, first_step
        self._steps, self._seconds = 0, 0.0

    def of_loop(self, start_step, num_steps, seconds):
        """The loop's examples per second; None for the first."""
        if start_step == self._first_step:
            return None
        self._steps, self._seconds = self._steps + num_steps, self._seconds + seconds
        return num_steps * self._batch / seconds

    def print_total(self):
        if self._steps:
            print(f"throughput: {self._steps * self._batch / self._seconds:.1f} examples/s "
                  f"over the last {self._steps} steps (the first loop, which traces and "
                  "compiles, is left out)")


def roll_back(checkpoint, path, spike, recovery, step, writer):
    """Model and optimizer back to checkpoint `path` after a loss spike at `step`; the data
    stays where it is."""
    restored_step = checkpointing.step_of(path)
    recovery.count_roll_back(spike, path, step - restored_step)
    with writer.as_default(step=step):
        tf.summary.scalar("loss_spike_recoveries", recovery.trials)
    checkpoint.restore(path).assert_existing_objects_matched()
