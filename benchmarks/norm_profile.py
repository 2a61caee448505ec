"""Where a LAMB step's time goes under XLA on this CPU, and what `core.l2_norm`'s form saves.

    python -m benchmarks.norm_profile               # BERT-base shapes (about 2 minutes)
    python -m benchmarks.norm_profile --size=mini

Three measurements, each interleaved round-robin in this one process:
1. per distinct BERT matrix shape, the norm as `square(rows) @ ones` (what `core.l2_norm` takes
   under XLA on the CPU), as the plain `reduce_sum(square(x))` and as TensorFlow's fused
   `reduce_euclidean_norm` (what it takes without XLA), each compiled by XLA and each run by
   TensorFlow's graph kernels;
2. `core.lamb_step` over the whole BERT-shaped set with that norm, with the plain norm, and with
   no trust ratio at all (what the step costs without any norm);
3. the optimized HLO of one 768x3072 update with each norm: the full-size arrays it writes
   (a LAMB update must write m, v and x; everything else is traffic the norm form added).
"""

import argparse
import contextlib
import re

import numpy as np
import tensorflow as tf

from benchmarks.bert_shapes import bert_shapes
from benchmarks.optimizer_step import time_round_robin
from lamb_tf import core
from benchmarks import result_file

HYPERPARAMETERS = dict(beta_1=0.9, beta_2=0.999, epsilon=1e-6, bias_correction=True)


XLA_FORMS = ("matvec", "plain")  # XLA has no kernel for TensorFlow's fused EuclideanNorm
GRAPH_FORMS = ("matvec", "plain", "fused")


@contextlib.contextmanager
def norm_form(form):
    """Traces `core.l2_norm` in one form whatever the context; plain is how XLA sees every other
    LAMB's norms."""
    chosen = core.norm_form
    core.norm_form = lambda tensor: form
    try:
        yield
    finally:
        core.norm_form = chosen


def norm_steps(shape, copies, jit_compile, forms):
    """One step per form in `forms` over `copies` tensors of `shape`, traced."""
    tensors = [tf.random.normal(shape) for _ in range(copies)]

    def traced(form):
        step = tf.function(lambda: tf.stack([core.l2_norm(t) for t in tensors]),
                           jit_compile=jit_compile)
        with norm_form(form):
            step.get_concrete_function()
        return step

    return [traced(form) for form in forms]


def lamb_set_step(shapes, rng, adapt):
    """One compiled `core.lamb_step` over every variable; matrices decay and adapt if `adapt`."""
    variables = [tf.Variable(rng.normal(scale=0.02, size=s).astype(np.float32)) for s in shapes]
    firsts = [tf.Variable(tf.zeros(s)) for s in shapes]
    seconds = [tf.Variable(tf.zeros(s)) for s in shapes]
    grads = [tf.constant(rng.normal(scale=1e-3, size=s).astype(np.float32)) for s in shapes]

    @tf.function(jit_compile=True)
    def step():
        for x, g, m, v in zip(variables, grads, firsts, seconds):
            matrix = len(x.shape) >= 2
            result = core.lamb_step(
                x.read_value(), g, m.read_value(), v.read_value(), 3.0, 1e-3,
                weight_decay=0.01 if matrix else None, adapt_layer=adapt and matrix,
                **HYPERPARAMETERS)
            m.assign(result.first_moment)
            v.assign(result.second_moment)
            x.assign_sub(result.delta)
        return tf.constant(0)

    return step


def full_size_results(hlo, shape):
    """The lines of an optimized HLO's ENTRY computation that make a float32 array of `shape`
    (its parameters aside): each is one full-size array written to memory."""
    entry = hlo[hlo.index("ENTRY"):]
    full = "= f32[" + ",".join(str(d) for d in shape) + "]"
    return [line for line in entry.splitlines() if full in line and "parameter(" not in line]


def full_size_writes(shape):
    """The fusions of one compiled LAMB update of `shape` that write a full-size array."""
    step = lamb_set_step([shape], np.random.default_rng(0), adapt=True)
    hlo = step.experimental_get_compiler_ir()(stage="optimized_hlo")
    return [re.search(r"(?:to_apply|calls)=%([\w.-]+)", line).group(1)
            for line in full_size_results(hlo, shape)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["base", "mini"], default="base")
    parser.add_argument("--rounds", type=int, default=11)
    args = parser.parse_args(argv)
    shapes = [shape for _, shape in bert_shapes(args.size)]

    print("1. norms, ms for several copies of one shape (median, interleaved)")
    print(f"{'':21s} {'XLA':>17s} {'graph kernels':>26s}")
    print(f"{'shape':>14s} {'copies':>6s}"
          + "".join(f" {form:>8s}" for form in XLA_FORMS + GRAPH_FORMS))
    matrices = {s for s in shapes if len(s) == 2 and np.prod(s) >= 65536}  # not (2, hidden)
    for shape in sorted(matrices, key=lambda s: -np.prod(s)):
        copies = min(64, max(1, int(24e6 // np.prod(shape))))
        steps = (norm_steps(shape, copies, jit_compile=True, forms=XLA_FORMS)
                 + norm_steps(shape, copies, jit_compile=False, forms=GRAPH_FORMS))
        milliseconds = time_round_robin(steps, 2, args.rounds)
        print(f"{str(shape):>14s} {copies:6d}" + "".join(f" {m:8.2f}" for m in milliseconds))

    rng = np.random.default_rng(0)
    ours = lamb_set_step(shapes, rng, adapt=True)
    ours.get_concrete_function()
    plain = lamb_set_step(shapes, rng, adapt=True)
    with norm_form("plain"):
        plain.get_concrete_function()
    no_norms = lamb_set_step(shapes, rng, adapt=False)
    milliseconds = time_round_robin([ours, plain, no_norms], 2, args.rounds)
    print(f"\n2. core.lamb_step over the BERT-{args.size}-shaped set ({len(shapes)} variables), "
          "ms per compiled step")
    for name, value in zip(["our norms", "plain norms", "no trust ratio (no norms)"],
                           milliseconds):
        print(f"{name:>26s} {value:8.1f}")

    print("\n3. full-size arrays one 768x3072 update writes (besides m, v and x, each is "
          "traffic)")
    print("   our norms:  ", full_size_writes((768, 3072)))
    with norm_form("plain"):
        print("   plain norms:", full_size_writes((768, 3072)))
    return milliseconds


if __name__ == "__main__":
    result_file.run(main)
