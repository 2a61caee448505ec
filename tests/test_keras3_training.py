"""Lamb and Lars inside `model.fit`: XLA, .keras save/load, tf.distribute, accumulation, AMP."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import lamb_tf
from tests.conftest import two_device_mirrored_strategy

FEATURES, CLASSES, EXAMPLES = 12, 5, 128


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=EXAMPLES)
    return x, y


def make_model(seed=0, dtype=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(16, activation="relu", name="hidden", dtype=dtype),
        keras.layers.LayerNormalization(name="layer_norm", dtype=dtype),
        keras.layers.Dense(CLASSES, name="logits", dtype=dtype),
    ])


def lamb(**overrides):
    kwargs = dict(learning_rate=0.01, weight_decay=0.01,
                  exclude_from_weight_decay=["bias", "layer_norm"])
    kwargs.update(overrides)
    return lamb_tf.Lamb(**kwargs)


def compile_model(model, optimizer, jit_compile=True):
    model.compile(optimizer=optimizer, jit_compile=jit_compile,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))


def train(model, batch_size, epochs=1):
    x, y = make_data()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0)
    return [w.numpy() for w in model.trainable_weights]


def assert_weights_close(got, want, rtol=1e-5, atol=1e-6):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


@pytest.mark.parametrize("optimizer_factory", [
    lambda: lamb(),
    lambda: lamb_tf.Lars(learning_rate=0.5, weight_decay=1e-4, nesterov=True,
                         exclude_from_weight_decay=["bias", "layer_norm"]),
], ids=["lamb", "lars"])
def test_save_load_and_continue_equals_not_saving(optimizer_factory, tmp_path):
    schedule_kwargs = dict(peak_learning_rate=0.02, total_steps=40, warmup_steps=4)
    uninterrupted = make_model()
    optimizer = optimizer_factory()
    optimizer.learning_rate = lamb_tf.WarmupPolynomialDecay(**schedule_kwargs)
    compile_model(uninterrupted, optimizer)
    want = train(uninterrupted, batch_size=16, epochs=2)

    first_half = make_model()
    optimizer = optimizer_factory()
    optimizer.learning_rate = lamb_tf.WarmupPolynomialDecay(**schedule_kwargs)
    compile_model(first_half, optimizer)
    train(first_half, batch_size=16, epochs=1)
    path = str(tmp_path / "model.keras")
    first_half.save(path)
    resumed = keras.models.load_model(path)
    assert type(resumed.optimizer) is type(optimizer)
    assert int(resumed.optimizer.iterations) == EXAMPLES // 16
    got = train(resumed, batch_size=16, epochs=1)
    assert_weights_close(got, want)


def test_mirrored_over_two_devices_equals_one_device_with_global_clipping():
    """global_clipnorm small enough to bind: clipping before the all-reduce would differ."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    assert len(devices) == 2

    def run(strategy):
        with strategy.scope():
            model = make_model()
            # One XLA cluster cannot span two devices (TF's known issue), so no jit here.
            compile_model(model, lamb(global_clipnorm=0.05), jit_compile=False)
        return train(model, batch_size=32)

    single = run(tf.distribute.OneDeviceStrategy(devices[0]))
    mirrored = run(two_device_mirrored_strategy())
    assert_weights_close(mirrored, single)


class CountingReduction(tf.distribute.ReductionToOneDevice):
    """Counts, as the step runs, the batch all-reduces of `width` values (a model's gradients;
    Keras's metric reads are single reductions)."""

    def __init__(self, width):
        super().__init__()
        self.width = width
        self.count = tf.Variable(0, dtype=tf.int64, trainable=False)

    def batch_reduce_implementation(self, reduce_op, value_destination_pairs, options):
        if len(value_destination_pairs) == self.width:
            self.count.assign_add(1)  # stateful: runs exactly when this branch of the step runs
        return super().batch_reduce_implementation(reduce_op, value_destination_pairs, options)


@pytest.mark.parametrize("distributed", [False, True], ids=["one_device", "mirrored"])
def test_accumulating_k_micro_batches_equals_one_k_times_larger_batch(distributed):
    """Schedule and bias correction must count updates, not micro-batches; under Mirrored the
    gradients are all-reduced once per update, not once per micro-batch."""
    steps = 4
    schedule = dict(peak_learning_rate=0.05, total_steps=8, warmup_steps=2)
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    width = len(make_model().trainable_variables)

    def run(batch_size, accumulation):
        reduction = CountingReduction(width)
        strategy = (tf.distribute.MirroredStrategy(devices, cross_device_ops=reduction)
                    if distributed else tf.distribute.get_strategy())
        with strategy.scope():
            model = make_model()
            compile_model(model, lamb(
                learning_rate=lamb_tf.WarmupPolynomialDecay(**schedule),
                gradient_accumulation_steps=accumulation, global_clipnorm=0.5),
                jit_compile=not distributed)
        weights = train(model, batch_size=batch_size)
        return weights, int(model.optimizer.iterations.numpy()), int(reduction.count.numpy())

    big, big_updates, big_reductions = run(batch_size=32, accumulation=None)
    accumulated, accumulated_updates, accumulated_reductions = run(batch_size=8,
                                                                   accumulation=steps)
    assert big_updates == accumulated_updates == EXAMPLES // 32
    assert_weights_close(accumulated, big, rtol=1e-4, atol=1e-5)
    if distributed:
        assert big_reductions == EXAMPLES // 32
        assert accumulated_reductions == EXAMPLES // 32, (
            f"{accumulated_reductions} gradient all-reduces for {EXAMPLES // 32} updates")


@pytest.mark.parametrize("distributed", [False, True], ids=["one_device", "mirrored"])
def test_saving_between_micro_batches_of_an_update_resumes_the_accumulation(
        distributed, tmp_path):
    """16 micro-batches per epoch, k=3: the save falls after the first of an update's three.
    The accumulator is saved as the sum over replicas and restored evenly across them."""
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]

    def strategy():
        return (tf.distribute.MirroredStrategy(
            devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
            if distributed else tf.distribute.get_strategy())

    def fresh():
        model = make_model()
        compile_model(model, lamb(gradient_accumulation_steps=3), jit_compile=not distributed)
        return model

    with strategy().scope():
        uninterrupted = fresh()
    want = train(uninterrupted, batch_size=8, epochs=2)
    with strategy().scope():
        first_half = fresh()
    train(first_half, batch_size=8, epochs=1)
    accumulator = first_half.optimizer._accumulated_gradients[0]
    assert np.any(accumulator.numpy() != 0.0)  # mid-accumulation: the case under test
    path = str(tmp_path / "model.keras")
    first_half.save(path)
    with strategy().scope():
        resumed = keras.models.load_model(path)
    got = train(resumed, batch_size=8, epochs=1)
    assert_weights_close(got, want)


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize("algorithm", ["Lamb", "Lars"])
def test_mixed_precision_trains_without_nan_and_keeps_float32_state(policy, algorithm):
    keras.mixed_precision.set_global_policy(policy)
    model = make_model()
    optimizer = (lamb_tf.Lamb(learning_rate=0.01, weight_decay=1e-3) if algorithm == "Lamb"
                 else lamb_tf.Lars(learning_rate=0.1, trust_coefficient=0.1, weight_decay=1e-3))
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    compile_model(model, optimizer)
    x, y = make_data()
    history = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    inner = optimizer.inner_optimizer if policy == "mixed_float16" else optimizer
    shaped = [v for v in inner.variables if v.shape.rank and v.shape.rank > 0]
    assert shaped and all(v.dtype == "float32" for v in shaped)
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)


def test_trust_ratios_are_readable_for_summaries():
    model = make_model()
    optimizer = lamb()
    compile_model(model, optimizer)
    train(model, batch_size=32)
    ratios = optimizer.trust_ratios
    assert set(ratios) == {w.path for w in model.trainable_weights}
    assert float(ratios[f"{model.name}/layer_norm/gamma"]) == 1.0  # excluded by pattern
    assert float(ratios[f"{model.name}/hidden/kernel"]) not in (0.0, 1.0)
    histogram_input = tf.stack([tf.convert_to_tensor(r) for r in ratios.values()])
    assert histogram_input.shape == (len(model.trainable_weights),)


def test_use_ema_tracks_averages_that_fit_writes_back():
    """Keras's EMA contract (the override re-implements its tail): after fit, the weights are
    the moving averages, which equal a numpy EMA of the per-step weights."""
    model = make_model()
    initial = [w.numpy() for w in model.trainable_weights]
    compile_model(model, lamb(use_ema=True, ema_momentum=0.5), jit_compile=False)
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            snapshots.append([w.numpy() for w in self.model.trainable_weights])

    x, y = make_data()
    model.fit(x, y, batch_size=32, epochs=1, shuffle=False, verbose=0, callbacks=[Snapshot()])
    # Keras: the first update copies the weights, later ones average with momentum.
    expected = snapshots[0]
    for weights in snapshots[1:]:
        expected = [0.5 * a + 0.5 * w for a, w in zip(expected, weights)]
    assert_weights_close([w.numpy() for w in model.trainable_weights], expected)
    assert not np.allclose(expected[0], initial[0])
