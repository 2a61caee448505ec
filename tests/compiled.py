"""The runner's training step as XLA compiles it (TPUStrategy and --jit_compile do), as HLO."""

import re

import tensorflow as tf

from trainers.data import positions

# What a TPU cannot run inside a compiled step: calls back to the host Python, host transfers.
HOST_OPS = re.compile(r"custom_call_target=\"[^\"]*(callback|PyFunc|py_func)[^\"]*\"|"
                      r" (outfeed|infeed|send|recv)\(", re.IGNORECASE)


def train_step_hlo(runner):
    """(HLO text of one replica's whole update compiled with XLA, the batch it was traced on)."""
    features = next(iter(runner.train_input.dataset()))
    features.pop(positions.POSITION_KEY, None)  # the runner's, not the model's
    step = runner._train_step_fn()
    compiled = tf.function(lambda batch: runner.strategy.run(step, (batch,)), jit_compile=True)
    return compiled.experimental_get_compiler_ir(features)(stage="hlo"), features
