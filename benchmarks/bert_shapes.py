"""BERT-shaped variable sets for the optimizer-step benchmarks of both backends (no TensorFlow
import, so the JAX benchmark runs without it)."""

# (vocab, hidden, layers, intermediate, positions) after the BERT miniatures table.
SIZES = {
    "base": (30522, 768, 12, 3072, 512),
    "small": (30522, 512, 4, 2048, 512),
    "mini": (30522, 256, 4, 1024, 512),
    "large": (30522, 1024, 24, 4096, 512),
    "tiny": (1000, 64, 2, 128, 64),  # a smoke test of the harness, not a measurement
}


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
