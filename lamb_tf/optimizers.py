"""LAMB and LARS as Keras 3 optimizers (`tf.keras.optimizers.Optimizer` in TF >= 2.16).

The math lives in `lamb_tf.core`; these classes own variables, exclusions and the order of
operations under tf.distribute:

1. gradients are all-reduced across replicas first, so global-norm clipping and every trust
   ratio see the global gradient (Keras 3's base class clips before reducing);
2. with `gradient_accumulation_steps=k`, each replica accumulates its own gradients in
   replica-local (ON_READ, summed) float32 variables, and the sum is all-reduced once per
   update, not once per micro-batch (the base class reduces k times); the choice between
   "accumulate" and "update" is a `tf.cond` taken in cross-replica context, because a
   `merge_call` inside a conditional in replica context fails under MirroredStrategy;
3. the step counter used for bias correction and the learning-rate schedule counts updates,
   not micro-batches.

Weight decay never goes through the base class's decay path: it sits inside the trust ratio.
"""

import keras
import tensorflow as tf

from lamb_tf import core, exclusions, hyperparameters, layerwise, rules


class LayerwiseOptimizer(layerwise.LayerwiseSettings, keras.optimizers.Optimizer):
    """A layer-wise adaptive optimizer driven by a `lamb_tf.rules` rule.

    Owns what Lamb and Lars share: exclusions, float32 slots, trust ratios, distributed apply.
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

    def build(self, variables):
        if self.built:
            return
        accumulation_steps = self.gradient_accumulation_steps
        self.gradient_accumulation_steps = None  # the base class's accumulators are mirrored
        try:
            super().build(variables)
        finally:
            self.gradient_accumulation_steps = accumulation_steps
        if accumulation_steps:
            # Created where the base class creates its own, so checkpoints keep their order.
            self._accumulated_gradients = [
                self._add_float32_slot(v, "gradient_accumulator", replica_local=True)
                for v in variables]
        paths = self._decide_exclusions(variables)
        self._slots = {
            slot_name: [self._add_float32_slot(v, slot_name) for v in variables]
            for slot_name in self._rule.slot_names}
        self._trust_ratios = [
            self.add_variable(shape=(), dtype="float32", initializer="ones",
                              name=f"{path.replace('/', '_')}_trust_ratio")
            for path in paths]

    def _add_float32_slot(self, variable, name, replica_local=False):
        """Optimizer state is float32 whatever the variable's dtype (bf16 state overflows).

        `replica_local`: each replica writes its own copy and a cross-replica read (a
        checkpoint) sees their sum; restoring divides it evenly, on any number of replicas.
        """
        reference = variable.value if isinstance(variable, keras.Variable) else variable
        name = f"{exclusions.variable_path(variable).replace('/', '_')}_{name}"
        with self._distribution_strategy.extended.colocate_vars_with(reference):
            if not replica_local:
                return self.add_variable(
                    shape=variable.shape, dtype="float32", initializer="zeros", name=name)
            with keras.name_scope(self.name, caller=self):
                slot = keras.Variable(
                    initializer="zeros", shape=variable.shape, dtype="float32",
                    trainable=False, synchronization="on_read", aggregation="sum", name=name)
            self._track_variable(slot)
            return slot

    @property
    def trust_ratios(self):
        """Trust ratio applied to each variable at the last update, keyed by variable path.

        Values (scalar tensors) as of this call, not live variables: a dict kept across updates
        does not change. 1.0 for variables excluded from layer adaptation and before the first
        update.
        """
        if not self.built:
            return {}
        return {
            exclusions.variable_path(variable): tf.identity(ratio.value)
            for variable, ratio in zip(self._trainable_variables, self._trust_ratios)
        }

    def _get_current_learning_rate(self):
        # Schedules count updates: with accumulation, `iterations` is micro-batches // k.
        if isinstance(self._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            return self._learning_rate(self.iterations)
        return super()._get_current_learning_rate()

    def _update_step_number(self):
        """t of the paper: the number of this update, starting at 1."""
        return tf.cast(self.iterations + 1, tf.float32)

    def _backend_apply_gradients(self, grads, trainable_variables):
        tf_variables = [
            v.value if isinstance(v, keras.Variable) else v for v in trainable_variables]
        strategy = self._distribution_strategy
        merge_call = tf.__internal__.distribute.interim.maybe_merge_call
        if self.gradient_accumulation_steps:
            steps = self.gradient_accumulation_steps
            accumulators = [
                self._accumulated_gradients[self._get_variable_index(v)].value
                for v in trainable_variables]
            # This replica's gradients since the last update, not yet reduced: read here, in
            # replica context, where a replica-local variable reads as its own copy.
            local_sums = [
                tf.cast(core.dense_gradient(g), tf.float32) + acc
                for g, acc in zip(grads, accumulators)]
            merge_call(self._accumulate_or_update, strategy,
                       [s / steps for s in local_sums], local_sums, tf_variables, accumulators)
        else:
            reduced = self._all_reduce_sum_gradients(list(zip(grads, tf_variables)))
            grads = [core.dense_gradient(gradient) for gradient, _ in reduced]
            merge_call(self._distributed_tf_update_step, strategy,
                       list(zip(self._clip_gradients(grads), tf_variables)), self.learning_rate)
        if self.use_ema:
            self._update_model_variables_moving_average(self._trainable_variables)
            if self.ema_overwrite_frequency:
                overwrite = (self.iterations + 1) % self.ema_overwrite_frequency == 0
                tf.cond(
                    overwrite,
                    lambda: self._overwrite_model_variables_with_average_value(
                        self._trainable_variables),
                    lambda: None)

    def _accumulate_or_update(self, distribution, local_means, local_sums, variables,
                              accumulators):
        """On an update step, one all-reduce of every replica's mean gradient over the k
        micro-batches, then the update; otherwise each replica keeps its own sum.

        Runs in cross-replica context under strategies that need `merge_call` (Mirrored with
        ReductionToOneDevice or NCCL), in replica context under the others (one device,
        collectives, TPU).
        """
        is_update_step = (self._iterations + 1) % self.gradient_accumulation_steps == 0
        cross_replica = tf.distribute.in_cross_replica_context()

        def write(accumulator, value):
            if cross_replica:
                distribution.extended.update(
                    accumulator, lambda a, v: a.assign(v), args=(value,), group=False)
            else:
                accumulator.assign(value)

        def update():
            if cross_replica:
                averaged = distribution.extended.batch_reduce_to(
                    tf.distribute.ReduceOp.SUM, list(zip(local_means, variables)))
            else:
                averaged = [g for g, _ in self._all_reduce_sum_gradients(
                    list(zip(local_means, variables)))]
            self._distributed_tf_update_step(
                distribution, list(zip(self._clip_gradients(averaged), variables)),
                self.learning_rate)
            for accumulator, variable in zip(accumulators, variables):
                write(accumulator, tf.zeros(variable.shape, tf.float32))

        def accumulate():
            for accumulator, local_sum in zip(accumulators, local_sums):
                write(accumulator, local_sum)

        tf.cond(is_update_step, update, accumulate)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        slots = VariableSlots(self, [self._slots[name][index] for name in self._rule.slot_names])
        step = self._rule.step(
            core.as_float32(variable), core.as_float32(gradient), slots,
            self._update_step_number(), learning_rate, self._weight_decay_of(index),
            self._adapts[index])
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
        beta_1, beta_2: moment decay rates in [0, 1).
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
