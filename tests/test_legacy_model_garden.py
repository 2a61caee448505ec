"""lamb_tf.legacy with a Model Garden BERT encoder (tf_keras), against Model Garden's LAMB."""

import numpy as np
import tensorflow as tf
import tf_keras
from official.modeling.optimization import lamb as model_garden_lamb
from official.nlp.modeling import networks

from lamb_tf import legacy
from tests.conftest import two_device_mirrored_strategy

EXCLUDED = ["layer_norm", "bias"]
VOCAB, SEQUENCE, BATCH = 64, 12, 4


def make_encoder():
    tf_keras.utils.set_random_seed(3)
    encoder = networks.BertEncoderV2(
        vocab_size=VOCAB, hidden_size=16, num_layers=2, num_attention_heads=2,
        max_sequence_length=SEQUENCE, inner_dim=32)
    inputs = example_batch()
    encoder(inputs)
    return encoder


def example_batch():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, VOCAB, size=(BATCH, SEQUENCE)).astype(np.int32)
    return dict(input_word_ids=tf.constant(ids), input_mask=tf.ones_like(ids),
                input_type_ids=tf.zeros_like(ids))


def loss_fn(encoder, inputs):
    outputs = encoder(inputs, training=False)
    return tf.reduce_mean(tf.square(outputs["sequence_output"] - 0.5)) + tf.reduce_mean(
        tf.square(outputs["pooled_output"]))


def train(optimizer, steps=4):
    encoder = make_encoder()
    inputs = example_batch()
    start = [v.numpy() for v in encoder.trainable_variables]
    losses = []
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = loss_fn(encoder, inputs)
        grads = tape.gradient(loss, encoder.trainable_variables)
        optimizer.apply_gradients(zip(grads, encoder.trainable_variables))
        losses.append(float(loss))
    return encoder, start, losses, grads


def test_bert_encoder_trains_with_legacy_lamb_and_matches_model_garden_lamb():
    kwargs = dict(learning_rate=0.01, exclude_from_weight_decay=EXCLUDED)
    ours, start, losses, grads = train(legacy.Lamb(weight_decay=0.01, **kwargs))
    theirs, _, their_losses, _ = train(model_garden_lamb.LAMB(weight_decay_rate=0.01, **kwargs))

    assert isinstance(grads[0], tf.IndexedSlices)  # word embeddings: the sparse path
    assert losses[-1] < losses[0]
    np.testing.assert_allclose(losses, their_losses, rtol=1e-5)
    for mine, reference in zip(ours.trainable_variables, theirs.trainable_variables):
        # Steps are ~1e-2; 1e-5 absorbs float32 rounding from a different operation order.
        np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=mine.name)
    for variable, initial in zip(ours.trainable_variables, start):
        assert not np.array_equal(variable.numpy(), initial), variable.name


def test_exclusions_follow_full_tf_keras_paths():
    optimizer = legacy.Lamb(learning_rate=0.01, weight_decay=0.01,
                            exclude_from_weight_decay=EXCLUDED)
    encoder, _, _, _ = train(optimizer, steps=1)
    ratios = optimizer.trust_ratios
    assert set(ratios) == {v.name[:-2] for v in encoder.trainable_variables}
    for path, ratio in ratios.items():
        excluded = any(pattern in path for pattern in EXCLUDED)
        assert (float(ratio) == 1.0) == excluded, path


def test_legacy_mirrored_over_two_devices_equals_one_device():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 10)).astype(np.float32)
    y = rng.integers(0, 3, size=64)

    def run(strategy):
        with strategy.scope():
            tf_keras.utils.set_random_seed(0)
            model = tf_keras.Sequential([
                tf_keras.layers.Dense(8, activation="relu", input_shape=(10,)),
                tf_keras.layers.LayerNormalization(),
                tf_keras.layers.Dense(3)])
            model.compile(
                optimizer=legacy.Lamb(0.01, weight_decay=0.01, global_clipnorm=0.05,
                                      exclude_from_weight_decay=EXCLUDED),
                loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
        return [w.numpy() for w in model.trainable_weights]

    single = run(tf.distribute.OneDeviceStrategy(devices[0]))
    mirrored = run(two_device_mirrored_strategy())
    for got, want in zip(mirrored, single):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
