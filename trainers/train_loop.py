"""`iterations_per_loop` updates in one compiled `tf.function`, as TPUEstimator's host loop.

Orbit's `StandardTrainer.train` loop in our terms: the replica step (`trainers.replica_step`)
run under `strategy.run` in a `tf.range` loop, with the data position of each batch recorded,
and what the controller needs to know of the loop summed inside it, so that one call returns
all of it in one transfer.
"""

import dataclasses

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context as eager_context


@dataclasses.dataclass
class LoopOutput:
    """What one call of the loop returns, as Python numbers."""
    loss: float  # mean over the loop's updates
    gradient_norm: float  # of the last update
    first_non_finite: int  # the first step whose loss or gradient was NaN or Inf; -1: none
    # Sums of the finite updates' noise-scale estimates (|G|^2, tr(Sigma)) and their count.
    estimate_sums: tuple


def without_addn_scheduling(function):
    """`function`, called with Grappler's memory optimizer kept from scheduling AddN ops.

    By default that optimizer rewrites an AddN of 3+ inputs with a static shape into a
    TemporaryVariable, AssignAdds and a DestroyTemporaryVariable whenever its static peak-memory
    estimate passes 80% of the device's memory (a GPU's, or 256 MB for a CPU). Inside a lowered
    while loop the temporary can be created in the loop's exit iteration, whose destroy never
    runs; it stays in the eager context's step container ("__per_step_0"), which outlives the
    call, so the next call of the loop creates the same name and fails with AlreadyExistsError.
    The micro-batch loop's static shapes (needed under XLA) made its AddNs eligible.
    Swapping heuristics, the rest of the default, stay on; only this call's options change.
    """
    def call(*args):
        ctx = eager_context.context()
        options = ctx.function_call_options
        config = config_pb2.ConfigProto()
        config.ParseFromString(options.config_proto_serialized)
        rewrite = config.graph_options.rewrite_options
        if rewrite.memory_optimization == rewriter_config_pb2.RewriterConfig.DEFAULT_MEM_OPT:
            rewrite.memory_optimization = rewriter_config_pb2.RewriterConfig.SWAPPING_HEURISTICS
        ctx.function_call_options = eager_context.FunctionCallOptions(
            executor_type=options.executor_type, config_proto=config)
        try:
            return function(*args)
        finally:
            ctx.function_call_options = options

    return call


def make_train_loop(replica_step, strategy, train_input, step_counter, jit_whole_step):
    """`train_loop(iterator, num_steps) -> LoopOutput`: `num_steps` updates in one call.

    `step_counter`: the optimizer's iterations; `jit_whole_step`: XLA compiles each update
    (not the loop: iterators cannot live inside XLA).
    """
    if jit_whole_step:
        replica_step = tf.function(replica_step, jit_compile=True)

    def first_replica(value):
        return strategy.experimental_local_results(value)[0]

    def replica_step_and_position(batch):
        batch, last_position = train_input.take_position(batch)
        return replica_step(batch) + (last_position,)

    @tf.function
    def train_loop(iterator, num_steps):
        loss_sum = tf.constant(0.0)
        gradient_norm = tf.constant(0.0)
        first_non_finite = tf.constant(-1, tf.int64)
        # Sums of the noise-scale estimates over the loop's finite updates, and their count.
        estimate_sums = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))
        for _ in tf.range(num_steps):
            # tf.distribute prefetches the next batches to the devices while this step
            # computes; each batch says where its pipeline stands after it.
            loss, gradient_norm, gradients_finite, estimates, last_positions = strategy.run(
                replica_step_and_position, args=(train_input.next_batch(iterator),))
            train_input.record_position(last_positions)
            loss, gradient_norm = first_replica(loss), first_replica(gradient_norm)
            gradients_finite = first_replica(gradients_finite)
            estimates = [first_replica(e) for e in estimates]
            # The loss is computed before the update: a finite loss can come with an Inf
            # gradient, whose update makes the weights NaN.
            finite = tf.math.is_finite(loss) & gradients_finite
            first_non_finite = tf.where((first_non_finite < 0) & ~finite, step_counter,
                                        first_non_finite)
            loss_sum += loss
            counted = finite & tf.reduce_all(tf.math.is_finite(tf.stack(estimates)))
            estimate_sums = tuple(
                total + tf.where(counted, value, 0.0)
                for total, value in zip(estimate_sums, estimates + [tf.constant(1.0)]))
        return (loss_sum / tf.cast(num_steps, tf.float32), gradient_norm, first_non_finite,
                estimate_sums)

    compiled = without_addn_scheduling(train_loop)

    def run(iterator, num_steps):
        loss, gradient_norm, first_non_finite, estimate_sums = compiled(
            iterator, tf.constant(num_steps))
        return LoopOutput(float(loss), float(gradient_norm), int(first_non_finite),
                          tuple(float(v) for v in estimate_sums))

    return run
