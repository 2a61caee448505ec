"""Learning-rate schedules of the large-batch recipes.

`warmup_polynomial_decay` is the math; `WarmupPolynomialDecay` is its Keras 3 schedule, and
`lamb_tf.legacy.WarmupPolynomialDecay` its tf_keras twin. Both count optimizer updates.
"""

import keras
from keras import ops

from lamb_tf import hyperparameters


def check_schedule_arguments(
    peak_learning_rate, total_steps, warmup_steps, end_learning_rate, power, start_warmup_step
):
    hyperparameters.check_non_negative("peak_learning_rate", peak_learning_rate)
    hyperparameters.check_non_negative("end_learning_rate", end_learning_rate)
    hyperparameters.check_positive("power", power)
    for name, value in (("total_steps", total_steps), ("warmup_steps", warmup_steps),
                        ("start_warmup_step", start_warmup_step)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0; received {name}={value!r}.")
    if total_steps <= start_warmup_step + warmup_steps:
        raise ValueError(
            "`total_steps` must exceed `start_warmup_step + warmup_steps` so that there is a "
            f"decay phase; received total_steps={total_steps}, warmup_steps={warmup_steps}, "
            f"start_warmup_step={start_warmup_step}.")


def warmup_polynomial_decay(
    step, peak_learning_rate, total_steps, warmup_steps, end_learning_rate=0.0, power=1.0,
    start_warmup_step=0,
):
    """Linear warmup from 0 to the peak, then polynomial decay to the end rate at `total_steps`.

    With s = step - start_warmup_step: lr = peak * s / warmup_steps while s < warmup_steps
    (0 before start_warmup_step); afterwards
    lr = (peak - end) * (1 - p)^power + end with p = (s - warmup_steps) / (total_steps -
    start_warmup_step - warmup_steps) clipped to [0, 1]. `start_warmup_step` is MLPerf BERT's
    re-warmup point for a phase that starts from an earlier phase's step count.
    """
    step = ops.cast(step, "float32")
    since_start = ops.maximum(step - float(start_warmup_step), 0.0)
    peak = ops.convert_to_tensor(peak_learning_rate, "float32")
    end = ops.convert_to_tensor(end_learning_rate, "float32")
    decay_steps = float(total_steps - start_warmup_step - warmup_steps)
    progress = ops.clip((since_start - float(warmup_steps)) / decay_steps, 0.0, 1.0)
    decayed = (peak - end) * ops.power(1.0 - progress, float(power)) + end
    if warmup_steps == 0:
        return decayed
    warming = peak * since_start / float(warmup_steps)
    return ops.where(since_start < float(warmup_steps), warming, decayed)


class WarmupPolynomialDecayMixin:
    """Arguments, call and config of the schedule, for either Keras generation's base class."""

    def __init__(self, peak_learning_rate, total_steps, warmup_steps, end_learning_rate=0.0,
                 power=1.0, start_warmup_step=0):
        check_schedule_arguments(peak_learning_rate, total_steps, warmup_steps,
                                 end_learning_rate, power, start_warmup_step)
        self.peak_learning_rate = peak_learning_rate
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.start_warmup_step = start_warmup_step

    def __call__(self, step):
        return warmup_polynomial_decay(step, **self.get_config())

    def get_config(self):
        return {
            "peak_learning_rate": self.peak_learning_rate,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "start_warmup_step": self.start_warmup_step,
        }


@keras.saving.register_keras_serializable(package="lamb_tf")
class WarmupPolynomialDecay(WarmupPolynomialDecayMixin,
                            keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup then polynomial decay (Keras 3); see `warmup_polynomial_decay`.

    The paper's BERT recipe uses power 1; MLPerf's ResNet LARS recipe uses power 2.
    """
