"""Median ms per jit-compiled optimizer step on BERT-shaped variables, as ratios to Keras AdamW
and to the machine's memory floor.

    python -m benchmarks.optimizer_step              # BERT-base: ~110M float32 parameters
    python -m benchmarks.optimizer_step --size=mini  # a 4-layer, 256-wide stand-in (seconds)
    python -m benchmarks.optimizer_step --size=large # BERT-large: ~335M (accelerators)

An optimizer step is memory-bound: it streams every parameter and its state once or twice. The
floor is measured in the same run: an Adam-shaped fused XLA update that reads 4 and writes 3
floats per parameter (and a plain copy, 1 + 1). Each contender's GB/s counts the floats its
algorithm must move at least (AdamW 7; exact LAMB 10: a first pass reads x, g, m, v, writes m, v
and takes both norms, a second reads x, m, v and writes x; LARS 7), and "x floor" divides the
floor's GB/s by it: 1.00 means as fast as this machine can move those floats.

Every optimizer runs in this one process on its own copy of the same variables and gradients;
each ratio is against Keras AdamW measured here, so machine speed cancels out. All contenders
are built first and then timed round-robin (one step each per round), because the speed of
this machine drifts by 20% over a minute and back-to-back blocks of steps would carry that
drift into the ratios.
"""

import argparse

import numpy as np
import tensorflow as tf

from benchmarks import bert_shapes
from benchmarks.bert_shapes import SIZES
from benchmarks import result_file

# Floats each algorithm must read + write per parameter at least (see the module docstring).
FLOATS_MOVED = {"adamw": 7, "lamb": 10, "lars": 7, "floor": 7, "copy": 2}
BERT_EXCLUSIONS = ["layer_norm", "bias"]
JIT_COMPILE = True  # --no_jit_compile: TensorFlow's graph kernels, as non-XLA training steps run


def keras3_step(make_optimizer):
    """Builds a compiled step for a Keras 3 optimizer over fresh keras.Variables."""
    import keras

    def build(shapes, initial, grads):
        variables = [keras.Variable(value, name=path.replace("/", "_"))
                     for (path, _), value in zip(shapes, initial)]
        optimizer = make_optimizer()
        optimizer.build(variables)

        @tf.function(jit_compile=JIT_COMPILE)
        def step():
            optimizer.apply(grads, variables)
            return optimizer.iterations.value

        return step

    return build


def tf_keras_step(make_optimizer, build_eagerly):
    """Builds a compiled step for a tf_keras optimizer over fresh tf.Variables."""

    def build(shapes, initial, grads):
        variables = [tf.Variable(value, name=path) for (path, _), value in zip(shapes, initial)]
        optimizer = make_optimizer()
        build_eagerly(optimizer, variables)

        @tf.function(jit_compile=JIT_COMPILE)
        def step():
            optimizer.apply_gradients(zip(grads, variables))
            return optimizer.iterations

        return step

    return build


def floor_step(shapes, initial, grads):
    """The Adam-shaped fused update: reads x, g, m, v and writes x, m, v, nothing else."""
    variables = [tf.Variable(value) for value in initial]
    firsts = [tf.Variable(tf.zeros_like(value)) for value in initial]
    seconds = [tf.Variable(tf.zeros_like(value)) for value in initial]

    @tf.function(jit_compile=JIT_COMPILE)
    def step():
        for x, g, m, v in zip(variables, grads, firsts, seconds):
            m_new = 0.9 * m + 0.1 * g
            v_new = 0.999 * v + 0.001 * tf.square(g)
            m.assign(m_new)
            v.assign(v_new)
            x.assign_sub(1e-3 * m_new / (tf.sqrt(v_new) + 1e-6))
        return tf.constant(0)

    return step


def copy_step(shapes, initial, grads):
    """Reads each parameter once and writes it once."""
    sources = [tf.Variable(value) for value in initial]
    targets = [tf.Variable(tf.zeros_like(value)) for value in initial]

    @tf.function(jit_compile=JIT_COMPILE)
    def step():
        for source, target in zip(sources, targets):
            target.assign(source * 1.0000001)  # not a no-op XLA could elide
        return tf.constant(0)

    return step


def contenders():
    """(name, algorithm for FLOATS_MOVED, builder); the AdamW anchor first, then the floor."""
    import keras
    from official.modeling.optimization import lamb as model_garden_lamb

    import lamb_tf
    from lamb_tf import legacy

    def with_bert_exclusions(optimizer):
        optimizer.exclude_from_weight_decay(var_names=BERT_EXCLUSIONS)
        return optimizer

    def build_new_tf_keras(optimizer, variables):
        optimizer.build(variables)

    def build_optimizer_v2(optimizer, variables):
        optimizer._create_all_weights(variables)

    return [
        ("keras AdamW (anchor)", "adamw", keras3_step(lambda: with_bert_exclusions(
            keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01, epsilon=1e-6)))),
        ("floor: Adam-shaped fused update", "floor", floor_step),
        ("floor: copy", "copy", copy_step),
        ("lamb_tf.Lamb", "lamb", keras3_step(lambda: lamb_tf.Lamb(
            1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS))),
        ("lamb_tf.Lars", "lars", keras3_step(lambda: lamb_tf.Lars(
            1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS))),
        ("keras Lamb, same decay", "lamb", keras3_step(lambda: with_bert_exclusions(
            keras.optimizers.Lamb(1e-3, weight_decay=0.01)))),
        ("keras Lamb, no decay (less work)", "lamb", keras3_step(
            lambda: keras.optimizers.Lamb(1e-3))),
        ("Model Garden LAMB (tf_keras)", "lamb", tf_keras_step(lambda: model_garden_lamb.LAMB(
            1e-3, weight_decay_rate=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS),
            build_optimizer_v2)),
        ("lamb_tf.legacy.Lamb (tf_keras)", "lamb", tf_keras_step(lambda: legacy.Lamb(
            1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS),
            build_new_tf_keras)),
    ]


def time_round_robin(steps, warmup, rounds):
    """`bert_shapes.time_round_robin` for steps that return a tf.Tensor."""
    return bert_shapes.time_round_robin(steps, warmup, rounds,
                                        wait=lambda output: output.numpy())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", default="", help="comma list of name substrings to run "
                        "(the AdamW anchor always runs)")
    parser.add_argument("--no_jit_compile", dest="jit_compile", action="store_false",
                        help="run TensorFlow's graph kernels instead of one XLA computation")
    args = parser.parse_args(argv)
    global JIT_COMPILE
    JIT_COMPILE = args.jit_compile

    shapes = bert_shapes.bert_shapes(args.size)
    parameters = sum(int(np.prod(shape)) for _, shape in shapes)
    rng = np.random.default_rng(0)
    initial = [rng.normal(scale=0.02, size=shape).astype(np.float32) for _, shape in shapes]
    grads = [tf.constant(rng.normal(scale=1e-3, size=shape).astype(np.float32))
             for _, shape in shapes]
    print(f"BERT-{args.size}-shaped set: {len(shapes)} variables, {parameters / 1e6:.1f}M "
          f"float32 parameters; median of {args.rounds} round-robin rounds of "
          f"{'jit-compiled' if args.jit_compile else 'graph (not XLA)'} "
          f"steps after {args.warmup} warm-up steps")

    wanted = [w for w in args.only.split(",") if w]
    chosen = [(name, algorithm, build) for name, algorithm, build in contenders()
              if algorithm in ("adamw", "floor") or not wanted
              or any(w in name for w in wanted)]
    steps = [build(shapes, initial, grads) for _, _, build in chosen]
    milliseconds = time_round_robin(steps, args.warmup, args.rounds)
    anchor = milliseconds[0]
    floor_rate = None
    rows = []
    for (name, algorithm, _), value in zip(chosen, milliseconds):
        rate = FLOATS_MOVED[algorithm] * 4 * parameters / (value / 1e3) / 1e9  # GB/s
        if algorithm == "floor":
            floor_rate = rate
        rows.append((name, value, value / anchor, rate))
    rows = [row + (row[3] / floor_rate,) for row in rows]
    print(f"{'optimizer':34s} {'ms/step':>9s} {'x AdamW':>8s} {'GB/s':>7s} {'x floor':>8s}")
    for name, value, ratio, rate, of_floor in rows:
        print(f"{name:34s} {value:9.1f} {ratio:8.2f} {rate:7.1f} {of_floor:8.2f}")
    return rows  # (name, ms/step, x AdamW, GB/s, x floor)


if __name__ == "__main__":
    result_file.run(main)
