"""LAMB and LARS as update rules: hyperparameters, their checks, their slots and one step.

A rule knows nothing of Keras. Each Keras generation has one optimizer base class that owns the
variables and calls `rule.step`; `Lamb` and `Lars` there only choose the rule. So the two
generations cannot drift apart in what they compute or accept.

A rule writes its slots through `Slots`, which each generation implements over its variables:
LAMB adds its moment increments in place and reads the result back (an in-place add updates
the slot's buffer where an assign of a new tensor replaces it).
"""

from typing import List, NamedTuple, Protocol

from lamb_tf import core, hyperparameters
from lamb_tf.core import Tensor


class Slots(Protocol):
    """One variable's slots, in the rule's `slot_names` order."""

    def values(self) -> List[Tensor]:
        """Their current float32 values."""

    def add(self, increments: List[Tensor]) -> List[Tensor]:
        """Adds in place; returns the values after the add."""

    def assign(self, values: List[Tensor]) -> None:
        """Overwrites them."""


class RuleStep(NamedTuple):
    delta: Tensor  # the amount to subtract from the variable
    trust_ratio: Tensor


class LambRule:
    """Paper Algorithm 2; see `lamb_tf.core.lamb_step`."""

    slot_names = ("m", "v")

    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-6, bias_correction=True,
                 weight_norm_bounds=None):
        self.beta_1 = hyperparameters.check_unit_interval("beta_1", beta_1)
        self.beta_2 = hyperparameters.check_unit_interval("beta_2", beta_2)
        self.epsilon = hyperparameters.check_non_negative("epsilon", epsilon)
        self.bias_correction = bool(bias_correction)
        self.weight_norm_bounds = hyperparameters.check_weight_norm_bounds(weight_norm_bounds)

    def config(self):
        return {
            "beta_1": self.beta_1,
            "beta_2": self.beta_2,
            "epsilon": self.epsilon,
            "bias_correction": self.bias_correction,
            "weight_norm_bounds": self.weight_norm_bounds,
        }

    def step(self, variable, gradient, slots: Slots, step_number, learning_rate, weight_decay,
             adapt_layer) -> RuleStep:
        first_moment, second_moment = slots.values()
        increments = core.adam_moment_increments(
            gradient, first_moment, second_moment, self.beta_1, self.beta_2)
        first_moment, second_moment = slots.add(list(increments))
        update = core.lamb_update(
            variable, first_moment, second_moment, step_number, learning_rate,
            beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
            weight_decay=weight_decay, bias_correction=self.bias_correction,
            adapt_layer=adapt_layer, weight_norm_bounds=self.weight_norm_bounds)
        return RuleStep(update.delta, update.trust_ratio)


class LarsRule:
    """MLPerf ResNet reference LARS; see `lamb_tf.core.lars_step`."""

    slot_names = ("momentum",)

    def __init__(self, momentum=0.9, trust_coefficient=0.001, epsilon=0.0, nesterov=False):
        self.momentum = hyperparameters.check_unit_interval("momentum", momentum)
        self.trust_coefficient = hyperparameters.check_positive(
            "trust_coefficient", trust_coefficient)
        self.epsilon = hyperparameters.check_non_negative("epsilon", epsilon)
        self.nesterov = bool(nesterov)

    def config(self):
        return {
            "momentum": self.momentum,
            "trust_coefficient": self.trust_coefficient,
            "epsilon": self.epsilon,
            "nesterov": self.nesterov,
        }

    def step(self, variable, gradient, slots: Slots, step_number, learning_rate, weight_decay,
             adapt_layer) -> RuleStep:
        del step_number  # LARS has no bias correction
        (momentum_buffer,) = slots.values()
        result = core.lars_step(
            variable, gradient, momentum_buffer, learning_rate, momentum=self.momentum,
            trust_coefficient=self.trust_coefficient, weight_decay=weight_decay,
            epsilon=self.epsilon, nesterov=self.nesterov, adapt_layer=adapt_layer)
        slots.assign([result.momentum])
        return RuleStep(result.delta, result.trust_ratio)
