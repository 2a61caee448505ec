"""Median ms per jit-compiled optimizer step on BERT-shaped variables, as ratios to Keras AdamW.

    python -m benchmarks.optimizer_step              # BERT-base: ~110M float32 parameters
    python -m benchmarks.optimizer_step --size=mini  # a 4-layer, 256-wide stand-in (seconds)

Every optimizer runs in this one process on its own copy of the same variables and gradients;
each ratio is against Keras AdamW measured here, so machine speed cancels out. All contenders
are built first and then timed round-robin (one step each per round), because the speed of
this machine drifts by 20% over a minute and back-to-back blocks of steps would carry that
drift into the ratios.
"""

import argparse
import statistics
import time

import numpy as np
import tensorflow as tf

# (vocab, hidden, layers, intermediate, positions) after the BERT miniatures table.
SIZES = {
    "base": (30522, 768, 12, 3072, 512),
    "small": (30522, 512, 4, 2048, 512),
    "mini": (30522, 256, 4, 1024, 512),
}
BERT_EXCLUSIONS = ["layer_norm", "bias"]


def bert_shapes(size):
    """(path, shape) of every trainable variable of a BERT encoder with a pooler."""
    vocab, hidden, layers, intermediate, positions = SIZES[size]
    shapes = [
        ("embeddings/word_embeddings", (vocab, hidden)),
        ("embeddings/position_embeddings", (positions, hidden)),
        ("embeddings/type_embeddings", (2, hidden)),
        ("embeddings/layer_norm/gamma", (hidden,)),
        ("embeddings/layer_norm/beta", (hidden,)),
    ]
    for layer in range(layers):
        prefix = f"encoder/layer_{layer}"
        for name in ("query", "key", "value", "attention_output"):
            shapes += [(f"{prefix}/{name}/kernel", (hidden, hidden)),
                       (f"{prefix}/{name}/bias", (hidden,))]
        shapes += [
            (f"{prefix}/attention_layer_norm/gamma", (hidden,)),
            (f"{prefix}/attention_layer_norm/beta", (hidden,)),
            (f"{prefix}/intermediate/kernel", (hidden, intermediate)),
            (f"{prefix}/intermediate/bias", (intermediate,)),
            (f"{prefix}/output/kernel", (intermediate, hidden)),
            (f"{prefix}/output/bias", (hidden,)),
            (f"{prefix}/output_layer_norm/gamma", (hidden,)),
            (f"{prefix}/output_layer_norm/beta", (hidden,)),
        ]
    shapes += [("pooler/kernel", (hidden, hidden)), ("pooler/bias", (hidden,))]
    return shapes


def keras3_step(make_optimizer):
    """Builds a compiled step for a Keras 3 optimizer over fresh keras.Variables."""
    import keras

    def build(shapes, initial, grads):
        variables = [keras.Variable(value, name=path.replace("/", "_"))
                     for (path, _), value in zip(shapes, initial)]
        optimizer = make_optimizer()
        optimizer.build(variables)

        @tf.function(jit_compile=True)
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

        @tf.function(jit_compile=True)
        def step():
            optimizer.apply_gradients(zip(grads, variables))
            return optimizer.iterations

        return step

    return build


def contenders():
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
        ("keras AdamW (anchor)", keras3_step(lambda: with_bert_exclusions(
            keras.optimizers.AdamW(learning_rate=1e-3, weight_decay=0.01, epsilon=1e-6)))),
        ("lamb_tf.Lamb", keras3_step(lambda: lamb_tf.Lamb(
            1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS))),
        ("lamb_tf.Lars", keras3_step(lambda: lamb_tf.Lars(
            1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS))),
        ("keras Lamb, same decay", keras3_step(lambda: with_bert_exclusions(
            keras.optimizers.Lamb(1e-3, weight_decay=0.01)))),
        ("keras Lamb, no decay (less work)", keras3_step(lambda: keras.optimizers.Lamb(1e-3))),
        ("Model Garden LAMB (tf_keras)", tf_keras_step(lambda: model_garden_lamb.LAMB(
            1e-3, weight_decay_rate=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS),
            build_optimizer_v2)),
        ("lamb_tf.legacy.Lamb (tf_keras)", tf_keras_step(lambda: legacy.Lamb(
            1e-3, weight_decay=0.01, exclude_from_weight_decay=BERT_EXCLUSIONS),
            build_new_tf_keras)),
    ]


def time_round_robin(steps, warmup, rounds):
    """Median milliseconds per step of each compiled step, interleaved round by round."""
    for step in steps:
        for _ in range(warmup):
            step().numpy()
    times = [[] for _ in steps]
    for _ in range(rounds):
        for step, samples in zip(steps, times):
            start = time.perf_counter()
            step().numpy()  # .numpy() waits for the step to finish
            samples.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(samples) for samples in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--only", default="", help="comma list of name substrings to run "
                        "(the AdamW anchor always runs)")
    args = parser.parse_args()

    shapes = bert_shapes(args.size)
    parameters = sum(int(np.prod(shape)) for _, shape in shapes)
    rng = np.random.default_rng(0)
    initial = [rng.normal(scale=0.02, size=shape).astype(np.float32) for _, shape in shapes]
    grads = [tf.constant(rng.normal(scale=1e-3, size=shape).astype(np.float32))
             for _, shape in shapes]
    print(f"BERT-{args.size}-shaped set: {len(shapes)} variables, {parameters / 1e6:.1f}M "
          f"float32 parameters; median of {args.rounds} round-robin rounds of jit-compiled "
          f"steps after {args.warmup} warm-up steps")

    wanted = [w for w in args.only.split(",") if w]
    chosen = [(name, build) for index, (name, build) in enumerate(contenders())
              if index == 0 or not wanted or any(w in name for w in wanted)]
    steps = [build(shapes, initial, grads) for _, build in chosen]
    milliseconds = time_round_robin(steps, args.warmup, args.rounds)
    anchor = milliseconds[0]
    print(f"{'optimizer':34s} {'ms/step':>9s} {'x AdamW':>8s}")
    for (name, _), value in zip(chosen, milliseconds):
        print(f"{name:34s} {value:9.1f} {value / anchor:8.2f}")


if __name__ == "__main__":
    main()
