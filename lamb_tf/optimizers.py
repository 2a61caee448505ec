"""LAMB and LARS as Keras 3 optimizers, on every Keras backend (`tf.keras.optimizers.Optimizer`
under TensorFlow >= 2.16).

The math lives in `lamb_tf.core`; these classes own variables, exclusions and the step counter:
bias correction and the learning-rate schedule count updates, not micro-batches. How gradients
are applied is the backend's part: under TensorFlow, `lamb_tf.tensorflow_apply` (all-reduce
before clipping, accumulation that reduces once per update, under tf.distribute); elsewhere
Keras's own backend optimizer (JAX's applies and accumulates without conditionals on state).

Weight decay never goes through the base class's decay path: it sits inside the trust ratio.
"""

import keras
from keras import ops

from lamb_tf import core, exclusions, hyperparameters, layerwise, rules

if core.TENSORFLOW:
    from lamb_tf.tensorflow_apply import TensorFlowApply as BackendApply
else:
    class BackendApply:
        """Keras's backend optimizer applies gradients: clipping, accumulation, EMA."""

        def _add_accumulator(self, variable):
            # Named as Keras names its own, so its accumulation logic and checkpoints find
            # them unchanged.
            return self._add_float32_slot(variable, "gradient_accumulator")

        def _backend_apply_gradients(self, grads, trainable_variables):
            if self.gradient_accumulation_steps:
                # Keras adds gradients to the float32 accumulators and picks between the sum
                # and the gradients in a jax.lax.cond, whose branches must share a dtype.
                grads = [ops.cast(g, "float32") for g in grads]
            super()._backend_apply_gradients(grads, trainable_variables)

        def _add_float32_slot(self, variable, name):
            """Optimizer state is float32 whatever the variable's dtype (bf16 state
            overflows)."""
            return self.add_variable(
                shape=variable.shape, dtype="float32", initializer="zeros",
                name=f"{exclusions.variable_path(variable).replace('/', '_')}_{name}",
                layout=getattr(variable, "_layout", None))  # sharded as the variable, as Keras's


class LayerwiseOptimizer(layerwise.LayerwiseSettings, BackendApply,
                         keras.optimizers.Optimizer):
    """A layer-wise adaptive optimizer driven by a `lamb_tf.rules` rule.

    Owns what Lamb and Lars share: exclusions, float32 slots, trust ratios, the update count;
    `BackendApply` adds how the backend applies gradients.
    """

    def __init__(self, rule, learning_rate, weight_decay, exclude_from_weight_decay,
                 exclude_from_layer_adaptation, name, **kwargs):
        learning_rate = hyperparameters.check_learning_rate(learning_rate)
        # The base class would decay outside the trust ratio; it gets no decay at all.
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self._set_layerwise(rule, weight_decay, exclude_from_weight_decay,
                            exclude_from_layer_adaptation)

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        if self.built:
            raise ValueError(
                f"{self.name}: exclude_from_weight_decay() must be called before the optimizer "
                "is built (before the first fit/apply), because exclusions are decided once at "
                "build time. Or pass `exclude_from_weight_decay=[patterns]` to the constructor.")
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def _build_base(self, variables):
        # The base class's accumulators take the variable's dtype (bf16 ones lose micro-batch
        # gradients to rounding) and, under tf.distribute, are mirrored: the backend's
        # `_add_accumulator` makes float32 ones instead, created where the base class creates
        # its own, so checkpoints keep their order.
        accumulation_steps = self.gradient_accumulation_steps
        self.gradient_accumulation_steps = None
        try:
            super().build(variables)
        finally:
            self.gradient_accumulation_steps = accumulation_steps
        if accumulation_steps:
            self._accumulated_gradients = [self._add_accumulator(v) for v in variables]

    def build(self, variables):
        if self.built:
            return
        self._build_base(variables)
        paths = self._decide_exclusions(variables)
        self._slots = {
            slot_name: [self._add_float32_slot(v, slot_name) for v in variables]
            for slot_name in self._rule.slot_names}
        self._trust_ratios = [
            self.add_variable(shape=(), dtype="float32", initializer="ones",
                              name=f"{path.replace('/', '_')}_trust_ratio")
            for path in paths]

    @property
    def trust_ratios(self):
        """Trust ratio applied to each variable at the last update, keyed by variable path.

        Values (scalar tensors) as of this call, not live variables: a dict kept across updates
        does not change. 1.0 for variables excluded from layer adaptation and before the first
        update.
        """
        if not self.built:
            return {}
        # An excluded variable's ratio is the constant 1, never written (a restored value may
        # be another run's).
        return {
            exclusions.variable_path(variable):
                ops.copy(ratio.value) if adapts else ops.ones((), "float32")
            for variable, ratio, adapts in zip(
                self._trainable_variables, self._trust_ratios, self._adapts)
        }

    def _get_current_learning_rate(self):
        # Schedules count updates: with accumulation, `iterations` is micro-batches // k.
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def _update_step_number(self):
        """t of the paper: the number of this update, starting at 1."""
        return ops.cast(self.iterations + 1, "float32")

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        slots = VariableSlots(self, [self._slots[name][index] for name in self._rule.slot_names])
        step = self._rule.step(
            core.as_float32(variable), core.as_float32(gradient), slots,
            self._update_step_number(), learning_rate, self._weight_decay_of(index),
            self._adapts[index])
        if self._adapts[index]:  # the others' ratio is the constant 1 they were built with
            self.assign(self._trust_ratios[index], step.trust_ratio)
        self.assign_sub(variable, step.delta)

    def get_config(self):
        config = super().get_config()
        config.update(self._layerwise_config())
        return config


class VariableSlots:
    """`lamb_tf.rules.Slots` over Keras 3 variables, written through the optimizer."""

    def __init__(self, optimizer, variables):
        self._optimizer = optimizer
        self._variables = variables

    def values(self):
        return [variable.value for variable in self._variables]

    def add(self, increments):
        for variable, increment in zip(self._variables, increments):
            self._optimizer.assign_add(variable, increment)
        return self.values()

    def assign(self, values):
        for variable, value in zip(self._variables, values):
            self._optimizer.assign(variable, value)


@keras.saving.register_keras_serializable(package="lamb_tf")
class Lamb(LayerwiseOptimizer):
    """LAMB (You et al., ICLR 2020, Algorithm 2) with decoupled weight decay inside the ratio.

    Args:
        learning_rate: float, `LearningRateSchedule` or callable.
        beta_1: decay rate of the first moment, in [0, 1).
        beta_2: decay rate of the second moment, in [0, 1).
        epsilon: added to sqrt(v_hat), >= 0.
        weight_decay: decoupled decay rate, >= 0, applied inside the trust ratio.
        exclude_from_weight_decay: regular expressions searched in variable paths
            (e.g. `["LayerNorm", "layer_norm", "bias"]`).
        exclude_from_layer_adaptation: likewise for the trust ratio; `None` means the
            variables excluded from weight decay.
        bias_correction: divide the moments by (1 - beta^t).
        weight_norm_bounds: `(lower, upper)` clip of ||x|| in the ratio (the paper's phi);
            `None` is the identity.
        name: `None` names it as Keras names its own: `lamb`, then `lamb_1`, ...
        **kwargs: Keras base arguments (`clipnorm`, `global_clipnorm`, `clipvalue`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`).
    """

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                 weight_decay=0.0, exclude_from_weight_decay=None,
                 exclude_from_layer_adaptation=None, bias_correction=True,
                 weight_norm_bounds=None, name=None, **kwargs):
        rule = rules.LambRule(beta_1, beta_2, epsilon, bias_correction, weight_norm_bounds)
        super().__init__(rule, learning_rate, weight_decay, exclude_from_weight_decay,
                         exclude_from_layer_adaptation, name, **kwargs)


@keras.saving.register_keras_serializable(package="lamb_tf")
class Lars(LayerwiseOptimizer):
    """LARS (You, Gitman and Ginsburg 2017) in the MLPerf ResNet reference's form.

    trust = trust_coefficient ||x|| / (||g|| + wd ||x|| + eps) (1 if either norm is 0);
    buf <- momentum buf + lr trust (g + wd x); x <- x - buf (Nesterov optional).
    Exclusion and Keras base arguments work as in `Lamb`.
    """

    def __init__(self, learning_rate=1e-3, momentum=0.9, trust_coefficient=0.001,
                 weight_decay=0.0, epsilon=0.0, nesterov=False, exclude_from_weight_decay=None,
                 exclude_from_layer_adaptation=None, name=None, **kwargs):
        rule = rules.LarsRule(momentum, trust_coefficient, epsilon, nesterov)
        super().__init__(rule, learning_rate, weight_decay, exclude_from_weight_decay,
                         exclude_from_layer_adaptation, name, **kwargs)
