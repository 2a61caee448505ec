"""Median ms per jitted optimizer step on BERT-shaped variables under Keras's JAX backend, as
ratios to Keras AdamW, Keras's own Lamb and optax.lamb: the JAX counterpart of
benchmarks/optimizer_step.py.

    KERAS_BACKEND=jax python -m benchmarks.jax_optimizer_step              # BERT-base
    KERAS_BACKEND=jax python -m benchmarks.jax_optimizer_step --size=mini  # 11M parameters

Each contender is one `jax.jit` step compiled ahead of time, as `fit(jit_compile=True)` runs an
optimizer: stateless, its state and variables donated so XLA updates their buffers in place.
All contenders are built first and timed round-robin in this one process (one step each per
round), so the machine's drift spreads over all of them alike.

`lamb_tf.Lamb` runs twice, once per form of a matrix's norm (`lamb_tf.core.KERAS_NORM_FORM`):
"plain" sum(square(x)), and "matvec" square(rows) @ ones, which pays under TensorFlow's XLA on
CPU; the faster one should be the default on JAX.
"""

import argparse
import os

if os.environ.get("KERAS_BACKEND") != "jax":
    raise SystemExit("usage: KERAS_BACKEND=jax python -m benchmarks.jax_optimizer_step")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.bert_shapes import SIZES, bert_shapes, time_round_robin  # noqa: E402
from benchmarks import result_file  # noqa: E402

BERT_EXCLUSIONS = ["layer_norm", "bias"]


def decays(path):
    return not any(pattern in path for pattern in BERT_EXCLUSIONS)


def keras_step(make_optimizer, norm_form=None):
    """A compiled stateless step of a Keras 3 optimizer, as the JAX trainer jits it."""

    def build(shapes, initial, grads):
        import keras

        from lamb_tf import core
        variables = [keras.Variable(value, name=path.replace("/", "_"))
                     for (path, _), value in zip(shapes, initial)]
        optimizer = make_optimizer()
        optimizer.build(variables)

        def step(state, values, grads):
            values, state = optimizer.stateless_apply(state, grads, values)
            return state, values

        chosen = core.KERAS_NORM_FORM
        core.KERAS_NORM_FORM = norm_form or chosen  # read while tracing, so only this one
        try:
            compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
                [v.value for v in optimizer.variables], [v.value for v in variables],
                grads).compile()
        finally:
            core.KERAS_NORM_FORM = chosen
        return Runner(compiled, [[v.value for v in optimizer.variables],
                                 [v.value for v in variables]], grads)

    return build


def optax_step(shapes, initial, grads):
    """optax.lamb with decay masked as ours (optax adapts every layer: no second mask)."""
    import optax
    params = {path: jnp.asarray(value) for (path, _), value in zip(shapes, initial)}
    mask = {path: decays(path) for path, _ in shapes}
    optimizer = optax.lamb(1e-3, eps=1e-6, weight_decay=0.01, mask=mask)
    gradients = {path: g for (path, _), g in zip(shapes, grads)}

    def step(state, params, gradients):
        updates, state = optimizer.update(gradients, state, params)
        return state, optax.apply_updates(params, updates)

    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(
        optimizer.init(params), params, gradients).compile()
    return Runner(compiled, [optimizer.init(params), params], gradients)


def floor_step(shapes, initial, grads):
    """The Adam-shaped fused update: reads x, g, m, v and writes x, m, v, nothing else."""
    params = [jnp.asarray(value) for value in initial]
    zeros = [jnp.zeros_like(value) for value in params]

    def step(state, params, grads):
        firsts, seconds = state
        firsts = [0.9 * m + 0.1 * g for m, g in zip(firsts, grads)]
        seconds = [0.999 * v + 0.001 * jnp.square(g) for v, g in zip(seconds, grads)]
        params = [x - 1e-3 * m / (jnp.sqrt(v) + 1e-6)
                  for x, m, v in zip(params, firsts, seconds)]
        return (firsts, seconds), params

    state = (zeros, [jnp.zeros_like(value) for value in params])
    compiled = jax.jit(step, donate_argnums=(0, 1)).lower(state, params, grads).compile()
    return Runner(compiled, [state, params], grads)


class Runner:
    """Calls a compiled step on its own state, waiting for the result."""

    def __init__(self, compiled, state, grads):
        self.compiled, self.state, self.grads = compiled, state, grads

    def __call__(self):
        state, values = self.compiled(*self.state, self.grads)
        jax.block_until_ready(values)
        self.state = [state, values]


def contenders():
    """(name, builder); the AdamW anchor first."""
    import keras

    import lamb_tf

    def with_bert_exclusions(optimizer):
        optimizer.exclude_from_weight_decay(var_names=BERT_EXCLUSIONS)
        return optimizer

    def ours():
        return lamb_tf.Lamb(1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS)

    return [
        ("keras AdamW (anchor)", keras_step(lambda: with_bert_exclusions(
            keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01, epsilon=1e-6)))),
        ("floor: Adam-shaped fused update", floor_step),
        ("lamb_tf.Lamb, plain norms", keras_step(ours, norm_form="plain")),
        ("lamb_tf.Lamb, matvec norms", keras_step(ours, norm_form="matvec")),
        ("lamb_tf.Lars", keras_step(lambda: lamb_tf.Lars(
            1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS))),
        ("keras Lamb, same decay", keras_step(lambda: with_bert_exclusions(
            keras.optimizers.Lamb(1e-3, weight_decay=0.01)))),
        ("keras Lamb, no decay (less work)", keras_step(lambda: keras.optimizers.Lamb(1e-3))),
        ("optax.lamb", optax_step),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", default="", help="comma list of name substrings to run "
                        "(the AdamW anchor always runs)")
    args = parser.parse_args(argv)

    shapes = bert_shapes(args.size)
    parameters = sum(int(np.prod(shape)) for _, shape in shapes)
    rng = np.random.default_rng(0)
    initial = [rng.normal(scale=0.02, size=shape).astype(np.float32) for _, shape in shapes]
    grads = [jnp.asarray(rng.normal(scale=1e-3, size=shape).astype(np.float32))
             for _, shape in shapes]
    print(f"BERT-{args.size}-shaped set: {len(shapes)} variables, {parameters / 1e6:.1f}M "
          f"float32 parameters; JAX {jax.__version__} on {jax.devices()[0].platform}; median of "
          f"{args.rounds} round-robin rounds of jitted steps after {args.warmup} warm-up steps")

    wanted = [w for w in args.only.split(",") if w]
    chosen = [(name, build) for index, (name, build) in enumerate(contenders())
              if index == 0 or not wanted or any(w in name for w in wanted)]
    steps = [build(shapes, initial, grads) for _, build in chosen]
    milliseconds = time_round_robin(steps, args.warmup, args.rounds)
    named = dict(zip([name for name, _ in chosen], milliseconds))
    anchors = [("x AdamW", milliseconds[0]),
               ("x keras Lamb", named.get("keras Lamb, same decay")),
               ("x optax", named.get("optax.lamb"))]
    anchors = [(label, value) for label, value in anchors if value]
    print(f"{'optimizer':34s} {'ms/step':>9s}" + "".join(f" {label:>13s}" for label, _ in anchors))
    rows = []
    for (name, _), value in zip(chosen, milliseconds):
        ratios = [value / anchor for _, anchor in anchors]
        rows.append((name, value, *ratios))
        print(f"{name:34s} {value:9.1f}" + "".join(f" {ratio:13.2f}" for ratio in ratios))
    return rows


if __name__ == "__main__":
    result_file.run(main)
