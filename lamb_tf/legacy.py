"""LAMB, LARS and the warmup schedule for tf_keras (Model Garden models, TF_USE_LEGACY_KERAS=1).

Same constructor arguments, same math (`lamb_tf.rules`) and same exclusion semantics as the
Keras 3 classes in `lamb_tf.optimizers`. tf_keras's base class already all-reduces gradients
before clipping, so only the update itself is ours. Variable paths are tf_keras names without
the ':0' suffix, e.g. `transformer/layer_0/self_attention_layer_norm/gamma`.
"""

import keras

if keras.backend.backend() != "tensorflow":
    # The shared math (lamb_tf.core) runs in Keras 3's ops, which take tf tensors only there.
    raise ImportError("lamb_tf.legacy (tf_keras) needs KERAS_BACKEND=tensorflow; this Keras 3 "
                      f"runs on {keras.backend.backend()}: use lamb_tf.Lamb and lamb_tf.Lars.")

import tensorflow as tf  # noqa: E402

try:
    import tf_keras
except ImportError:
    raise ImportError('lamb_tf.legacy needs tf-keras: from the clone, pip install -e '
                      '".[legacy]" (or pip install "tf-keras>=2.20,<2.21").') from None

from lamb_tf import core, exclusions, hyperparameters, layerwise, rules, schedules


class LayerwiseOptimizer(layerwise.LayerwiseSettings, tf_keras.optimizers.Optimizer):
    """tf_keras counterpart of `lamb_tf.optimizers.LayerwiseOptimizer`."""

    def __init__(self, rule, learning_rate, weight_decay, exclude_from_weight_decay,
                 exclude_from_layer_adaptation, name, **kwargs):
        learning_rate = hyperparameters.check_learning_rate(learning_rate)
        # The base class would decay outside the trust ratio; it gets no decay at all.
        super().__init__(name=name, weight_decay=None, **kwargs)
        self._learning_rate = self._build_learning_rate(learning_rate)
        self._set_layerwise(rule, weight_decay, exclude_from_weight_decay,
                            exclude_from_layer_adaptation)

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_built", False):
            return
        self._built = True
        var_list = list(var_list)
        paths = self._decide_exclusions(var_list)
        self._optimized_variables = var_list
        self._slots = {
            slot_name: [self._add_float32_slot(v, slot_name) for v in var_list]
            for slot_name in self._rule.slot_names}
        self._trust_ratios = [
            self.add_variable(shape=[], dtype=tf.float32, initializer="ones",
                              name=f"trust_ratio/{path}")
            for path in paths]

    def _add_float32_slot(self, variable, name):
        """Optimizer state is float32 whatever the variable's dtype (bf16 state overflows).

        tf_keras's `add_variable_from_reference` forces the variable's dtype, hence our own.
        """
        with tf.distribute.get_strategy().extended.colocate_vars_with(variable):
            slot = tf.Variable(
                tf.zeros(variable.shape, tf.float32),
                name=f"{name}/{exclusions.variable_path(variable)}", trainable=False)
        self._variables.append(slot)
        return slot

    @property
    def trust_ratios(self):
        """Trust ratio applied to each variable at the last update, keyed by variable path
        (values as of this call, not live variables)."""
        if not getattr(self, "_built", False):
            return {}
        # An excluded variable's ratio is the constant 1: a value restored before its first
        # step may be another run's.
        return {
            exclusions.variable_path(variable):
                tf.identity(ratio) if adapts else tf.constant(1.0, tf.float32)
            for variable, ratio, adapts in zip(
                self._optimized_variables, self._trust_ratios, self._adapts)
        }

    def update_step(self, gradient, variable):
        index = self._index_dict[self._var_key(variable)]
        slots = VariableSlots([self._slots[name][index] for name in self._rule.slot_names])
        step = self._rule.step(
            core.as_float32(variable), core.as_float32(gradient), slots,
            tf.cast(self.iterations + 1, tf.float32), self.learning_rate,
            self._weight_decay_of(index), self._adapts[index])
        self._trust_ratios[index].assign(step.trust_ratio)
        variable.assign_sub(tf.cast(step.delta, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config["learning_rate"] = self._serialize_hyperparameter(self._learning_rate)
        config.update(self._layerwise_config())
        return config


class VariableSlots:
    """`lamb_tf.rules.Slots` over tf.Variables."""

    def __init__(self, variables):
        self._variables = variables

    def values(self):
        return [variable.read_value() for variable in self._variables]

    def add(self, increments):
        return [variable.assign_add(increment, read_value=True)
                for variable, increment in zip(self._variables, increments)]

    def assign(self, values):
        for variable, value in zip(self._variables, values):
            variable.assign(value)


@tf_keras.utils.register_keras_serializable(package="lamb_tf.legacy")
class Lamb(LayerwiseOptimizer):
    """tf_keras twin of `lamb_tf.Lamb`; see there for the arguments."""

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-6,
                 weight_decay=0.0, exclude_from_weight_decay=None,
                 exclude_from_layer_adaptation=None, bias_correction=True,
                 weight_norm_bounds=None, name="Lamb", **kwargs):
        rule = rules.LambRule(beta_1, beta_2, epsilon, bias_correction, weight_norm_bounds)
        super().__init__(rule, learning_rate, weight_decay, exclude_from_weight_decay,
                         exclude_from_layer_adaptation, name, **kwargs)


@tf_keras.utils.register_keras_serializable(package="lamb_tf.legacy")
class Lars(LayerwiseOptimizer):
    """tf_keras twin of `lamb_tf.Lars`; see there for the arguments."""

    def __init__(self, learning_rate=1e-3, momentum=0.9, trust_coefficient=0.001,
                 weight_decay=0.0, epsilon=0.0, nesterov=False, exclude_from_weight_decay=None,
                 exclude_from_layer_adaptation=None, name="Lars", **kwargs):
        rule = rules.LarsRule(momentum, trust_coefficient, epsilon, nesterov)
        super().__init__(rule, learning_rate, weight_decay, exclude_from_weight_decay,
                         exclude_from_layer_adaptation, name, **kwargs)


@tf_keras.utils.register_keras_serializable(package="lamb_tf.legacy")
class WarmupPolynomialDecay(schedules.WarmupPolynomialDecayMixin,
                            tf_keras.optimizers.schedules.LearningRateSchedule):
    """tf_keras twin of `lamb_tf.WarmupPolynomialDecay`."""
