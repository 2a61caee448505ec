"""lamb_tf.Lamb on a KerasHub BERT built from scratch, with the README's exclusion patterns."""

import re
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import lamb_tf
from tests.reference import lamb_reference

keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is part of the dev extra")

# The README's patterns for Keras 3 / KerasHub paths (e.g. embeddings_layer_norm/gamma,
# transformer_layer_0/self_attention_layer/query/bias, mlm_head/output_bias).
KERAS3_EXCLUSIONS = ["layer_norm", "bias"]


def _masked_lm():
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=60, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
        max_sequence_length=12)
    return keras_hub.models.BertMaskedLM(backbone=backbone, preprocessor=None)


def _batch(rng):
    x = {"token_ids": rng.integers(1, 60, (8, 12)).astype("int32"),
         "padding_mask": np.ones((8, 12), "int32"),
         "segment_ids": np.zeros((8, 12), "int32"),
         "mask_positions": rng.integers(0, 12, (8, 3)).astype("int32")}
    return x, rng.integers(1, 60, (8, 3)).astype("int32")


def test_one_update_matches_the_numpy_reference_with_the_readme_patterns():
    model = _masked_lm()
    x, y = _batch(np.random.default_rng(1))
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=False))
    grads = tape.gradient(loss, variables)
    # The backbone's pooler is not on the masked-LM path: no gradient, no update.
    used = [(v, g) for v, g in zip(variables, grads) if g is not None]
    start = [v.numpy() for v, _ in used]
    optimizer = lamb_tf.Lamb(learning_rate=0.01, weight_decay=0.01,
                             exclude_from_weight_decay=KERAS3_EXCLUSIONS)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the patterns match: no "matches none" warning
        optimizer.apply([tf.convert_to_tensor(g) for _, g in used], [v for v, _ in used])
    excluded = [bool(re.search("layer_norm|bias", v.path)) for v, _ in used]
    assert sum(excluded) > 10 and not all(excluded)
    expected, ratios = lamb_reference(
        start, [[tf.convert_to_tensor(g).numpy() for _, g in used]], lr=0.01,
        weight_decay=0.01, decay_mask=[not e for e in excluded],
        adapt_mask=[not e for e in excluded])
    for (variable, _), want in zip(used, expected):
        np.testing.assert_allclose(variable.numpy(), want, rtol=2e-5, atol=1e-6,
                                   err_msg=variable.path)
    got = optimizer.trust_ratios
    for (variable, _), want, is_excluded in zip(used, ratios, excluded):
        assert float(got[variable.path]) == pytest.approx(want, rel=1e-4)
        assert (float(got[variable.path]) == 1.0) == is_excluded


def test_fit_learns_and_google_bert_style_names_warn():
    model = _masked_lm()
    with pytest.warns(UserWarning, match=r"'LayerNorm' in `exclude_from_weight_decay` matches "
                                         r"none"):
        model.compile(optimizer=lamb_tf.Lamb(
            learning_rate=0.02, weight_decay=0.01,
            exclude_from_weight_decay=["LayerNorm"] + KERAS3_EXCLUSIONS),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        x, y = _batch(np.random.default_rng(2))
        first = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
        model.fit(x, y, epochs=80, batch_size=8, verbose=0)
    assert model.evaluate(x, y, verbose=0, return_dict=True)["loss"] < 0.5 * first
