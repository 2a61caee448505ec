"""The runner's training step as XLA compiles it (TPUStrategy and --jit_compile do), as HLO."""

import contextlib
import re

import tensorflow as tf
from tensorflow.python.eager import context

from trainers.data import positions

# What a TPU cannot run inside a compiled step: calls back to the host Python, host transfers.
HOST_OPS = re.compile(r"custom_call_target=\"[^\"]*(callback|PyFunc|py_func)[^\"]*\"|"
                      r" (outfeed|infeed|send|recv)\(", re.IGNORECASE)


def train_step_hlo(runner):
    """(HLO text of one replica's whole update compiled with XLA, the batch it was traced on)."""
    features = next(iter(runner.train_input.dataset()))
    features.pop(positions.POSITION_KEY, None)  # the runner's, not the model's
    step = runner.make_replica_step()
    compiled = tf.function(lambda batch: runner.strategy.run(step, (batch,)), jit_compile=True)
    return compiled.experimental_get_compiler_ir(features)(stage="hlo"), features


@contextlib.contextmanager
def executed_graphs():
    """Collects the graphs of the functions run inside the block as TensorFlow ran them, after
    Grappler's rewrites (eager run metadata): a list filled when the block ends."""
    ctx = context.context()
    ctx.enable_run_metadata()
    graphs = []
    try:
        yield graphs
    finally:
        graphs.extend(g.post_optimization_graph for g in ctx.export_run_metadata().function_graphs)
        ctx.disable_run_metadata()


def nodes_of_op(graphs, op):
    """Names of the nodes running `op` in `graphs`, their function libraries included."""
    return [node.name for graph in graphs
            for nodes in [graph.node] + [f.node_def for f in graph.library.function]
            for node in nodes if node.op == op]
