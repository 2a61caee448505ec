"""Opt-in loss-spike recovery: roll back to the last checkpoint and skip the offending batches.

Model Garden's `RecoveryCondition`/`RecoveryAction` in our loop's terms: after a loop whose
loss or gradient was NaN or Inf, or whose mean loss exceeded `loss_upper_bound`, the model and
optimizer return to the newest checkpoint while the training data does not: the batches read
since that checkpoint, the spike's among them, are skipped. At most `recovery_max_trials` times
per run.
"""

import math

from absl import logging


class LossSpikeError(RuntimeError):
    """The loss spiked more often than recovery_max_trials allows."""


class LossSpikeRecovery:
    """Decides on spikes and counts roll-backs; the runner restores the checkpoint."""

    def __init__(self, trainer_config, loss_scaling):
        self.max_trials = trainer_config.recovery_max_trials
        self.loss_upper_bound = trainer_config.loss_upper_bound
        self.begin_steps = trainer_config.recovery_begin_steps
        # Under float16 the loss scale already skips non-finite steps: only the bound applies.
        self._non_finite_is_spike = not loss_scaling
        self.trials = 0

    @property
    def enabled(self):
        return self.max_trials > 0

    def spike(self, step, mean_loss, first_non_finite):
        """A description of the spike in the loop that ended at `step`, or None."""
        if not self.enabled or step <= self.begin_steps:
            return None
        if first_non_finite >= 0 and self._non_finite_is_spike:
            return f"the loss or its gradient became NaN or Inf at step {first_non_finite}"
        if math.isfinite(mean_loss) and mean_loss > self.loss_upper_bound:
            return (f"the mean loss {mean_loss:.4g} of the loop ending at step {step} exceeds "
                    f"loss_upper_bound={self.loss_upper_bound:g}")
        return None

    def count_roll_back(self, spike, checkpoint_path, skipped_batches):
        """Counts one roll-back; LossSpikeError once recovery_max_trials are used up."""
        if self.trials >= self.max_trials:
            raise LossSpikeError(
                f"{spike}, after {self.trials} roll-back(s) already (trainer.recovery_max_trials="
                f"{self.max_trials}). Nothing was saved after it; the last good checkpoint is "
                f"{checkpoint_path}. Lower the learning rate or the warmup's peak, or check the "
                "data.")
        self.trials += 1
        logging.warning("Loss spike: %s. Rolled back to %s and skipping the %d batch(es) read "
                        "since (recovery %d of %d).", spike, checkpoint_path, skipped_batches,
                        self.trials, self.max_trials)
