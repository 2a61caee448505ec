"""How the Keras 3 optimizers apply gradients under the TensorFlow backend (tf.distribute).

Mixed into `lamb_tf.optimizers.LayerwiseOptimizer` only when Keras runs on TensorFlow; on other
backends Keras's own backend optimizer applies gradients. Here the order of operations under
tf.distribute is ours:

1. gradients are all-reduced across replicas first, so global-norm clipping and every trust
   ratio see the global gradient (Keras 3's base class clips before reducing);
2. with `gradient_accumulation_steps=k`, each replica accumulates its own gradients in
   replica-local (ON_READ, summed) float32 variables, and the sum is all-reduced once per
   update, not once per micro-batch (the base class reduces k times); the choice between
   "accumulate" and "update" is a `tf.cond` taken in cross-replica context, because a
   `merge_call` inside a conditional in replica context fails under MirroredStrategy;
3. the step counter used for bias correction and the learning-rate schedule counts updates,
   not micro-batches (`LayerwiseOptimizer`).
"""

import keras
import tensorflow as tf

from lamb_tf import core, exclusions


class TensorFlowApply:
    """Build and apply hooks of `LayerwiseOptimizer` under the TensorFlow backend."""

    def _add_accumulator(self, variable):
        return self._add_float32_slot(variable, "gradient_accumulator", replica_local=True)

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
