"""Every private TensorFlow/Keras member we rely on, checked to exist and to do what we use it
for. If an upgrade renames one, these fail loudly; without them some would fail silently (a
dropout state no longer saved, an override no longer called)."""

import inspect

import keras
import pytest
import tensorflow as tf
import tf_keras
from tensorflow.python.distribute.failure_handling import failure_handling_util
from tensorflow.python.eager import context
from tensorflow.python.ops import control_flow_util

import lamb_tf
from lamb_tf import legacy
from tests import compiled
from trainers import preemption, replica_step, train_loop


@pytest.mark.parametrize("hook", ["_backend_apply_gradients", "_get_current_learning_rate",
                                  "_all_reduce_sum_gradients", "_clip_gradients",
                                  "_get_variable_index"])
def test_keras3_optimizer_hooks_we_override_or_call_exist_in_its_tensorflow_backend(hook):
    # lamb_tf.Lamb overrides or calls these; renamed in Keras, an override is dead code.
    base = next(cls for cls in inspect.getmro(lamb_tf.Lamb)
                if cls.__module__.startswith("keras.") and hasattr(cls, "apply_gradients"))
    assert hasattr(base, hook), f"{base.__module__}.{base.__name__} has no {hook}"


def test_keras3_optimizer_state_we_read_exists():
    optimizer = lamb_tf.Lamb(weight_decay=0.01)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    assert isinstance(optimizer._distribution_strategy, tf.distribute.Strategy)
    assert list(optimizer._excluded_var_names) == ["bias"]
    accumulating = lamb_tf.Lamb(gradient_accumulation_steps=2)
    accumulating.build([keras.Variable(tf.ones([2]), name="bias")])
    assert len(accumulating._accumulated_gradients) == 1


def test_tf_keras_optimizer_built_flag_is_set_by_build():
    optimizer = legacy.Lamb()
    assert not getattr(optimizer, "_built", False)
    optimizer.build([tf.Variable(tf.ones([2]))])
    assert optimizer._built is True


def test_xla_context_detection_tells_compiled_from_graph():
    def inside():
        return tf.constant(control_flow_util.GraphOrParentsInXlaContext(
            tf.compat.v1.get_default_graph()))

    assert bool(tf.function(inside, jit_compile=True)())
    assert not bool(tf.function(inside)())


def test_tf_keras_dropout_generators_are_found_so_checkpoints_carry_them():
    tf_keras.backend.experimental.enable_tf_random_generator()
    model = tf_keras.Sequential([tf_keras.layers.Dense(4), tf_keras.layers.Dropout(0.5),
                                 tf_keras.layers.Dense(2), tf_keras.layers.Dropout(0.5)])
    model(tf.ones([1, 3]), training=True)
    generators = replica_step.dropout_generators(model)
    assert len(generators) == 2
    assert all(isinstance(g, tf.random.Generator) for g in generators)


def test_preemption_handler_internals_we_stop_and_query_exist():
    handler = tf.distribute.experimental.PreemptionCheckpointHandler
    for method in ("_stop_poll_termination_signal_thread",
                   "_stop_cluster_wise_termination_watcher_thread"):
        assert callable(getattr(handler, method, None)), method
    assert isinstance(failure_handling_util.detect_platform(),
                      failure_handling_util.PlatformDevice)
    assert all(isinstance(p, failure_handling_util.PlatformDevice)
               for p in preemption._UNSUPPORTED_PLATFORMS)


def test_function_call_options_we_set_reach_grappler_and_are_restored():
    # train_loop.without_addn_scheduling sets the eager context's (private) thread-local function
    # call options around the training loop's call: Grappler must honour them for that call.
    n = 3000  # a few live 36 MB tensors pass 80% of the CPU's nominal 256 MB
    weights = tf.Variable(tf.fill([n, n], 1e-4))

    @tf.function
    def loop(steps):
        def body(i, x):
            return i + 1, x + tf.add_n([tf.square(weights), tf.exp(weights), tf.sqrt(weights)])
        return tf.while_loop(lambda i, _: i < steps, body, (tf.constant(0), tf.zeros([n, n])))[1]

    def temporaries(function):
        with compiled.executed_graphs() as graphs:
            function(tf.constant(2))
        return compiled.nodes_of_op(graphs, "TemporaryVariable")

    caller_options = context.context().function_call_options
    assert temporaries(loop)  # TensorFlow's default: the rewrite the runner keeps out
    assert not temporaries(train_loop.without_addn_scheduling(loop))
    assert context.context().function_call_options is caller_options
