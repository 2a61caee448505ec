"""Milliseconds per update of `model.fit` with `lamb_tf.Lamb(gradient_accumulation_steps=k)`
under MirroredStrategy over logical CPU devices, and how many gradient all-reduces it ran.

    python -m benchmarks.accumulation_mirrored                  # k=8, 2 logical CPUs
    python -m benchmarks.accumulation_mirrored --accumulation_steps=16

The model is a stack of wide dense layers (7.6M parameters), so that an all-reduce of
its gradients costs something next to a micro-batch's compute, as it does for BERT on GPUs.
The strategy uses TensorFlow's default cross-device ops for these devices, wrapped to count
the batch all-reduces of the model's gradients as the steps run. Run it on two checkouts to
compare code versions; figures from one run on one machine only.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from benchmarks import result_file  # noqa: E402

WIDTH, DEPTH, FEATURES, CLASSES = 1024, 8, 256, 10


def counting(cross_device_ops, width):
    """Wraps `cross_device_ops` so that each executed batch all-reduce of `width` values adds 1
    to the returned counter."""
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    reduce = cross_device_ops.batch_reduce_implementation

    def batch_reduce_implementation(reduce_op, value_destination_pairs, options):
        if len(value_destination_pairs) == width:
            counter.assign_add(1)
        return reduce(reduce_op, value_destination_pairs, options)

    cross_device_ops.batch_reduce_implementation = batch_reduce_implementation
    return counter


def make_model():
    import keras

    keras.utils.set_random_seed(0)
    layers = [keras.Input((FEATURES,))]
    layers += [keras.layers.Dense(WIDTH, activation="relu") for _ in range(DEPTH)]
    layers.append(keras.layers.Dense(CLASSES))
    return keras.Sequential(layers)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_cpu_devices", type=int, default=2)
    parser.add_argument("--accumulation_steps", type=int, default=8)
    parser.add_argument("--micro_batch", type=int, default=16, help="global, per micro-step")
    parser.add_argument("--updates", type=int, default=10, help="per timed epoch")
    parser.add_argument("--epochs", type=int, default=6, help="the first is not timed")
    args = parser.parse_args(argv)

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * args.num_cpu_devices)
    import keras

    import lamb_tf

    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    strategy = tf.distribute.MirroredStrategy(devices)
    width = 2 * (DEPTH + 1)  # a kernel and a bias per layer
    reductions = counting(strategy.extended._cross_device_ops, width)
    with strategy.scope():
        model = make_model()
        model.compile(
            optimizer=lamb_tf.Lamb(1e-3, weight_decay=0.01,
                                   gradient_accumulation_steps=args.accumulation_steps),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    micro_steps = args.updates * args.accumulation_steps
    rng = np.random.default_rng(0)
    x = rng.normal(size=(micro_steps * args.micro_batch, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, size=len(x))

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.start)

    timer = EpochTimer()
    model.fit(x, y, batch_size=args.micro_batch, epochs=args.epochs, shuffle=False, verbose=0,
              callbacks=[timer])
    updates = int(model.optimizer.iterations.numpy())
    per_update = statistics.median(timer.seconds[1:]) / args.updates * 1e3
    print(f"{model.count_params() / 1e6:.1f}M parameters, {len(devices)} devices, "
          f"k={args.accumulation_steps}, micro-batch {args.micro_batch}: "
          f"{per_update:.1f} ms per update (median of {args.epochs - 1} epochs of "
          f"{args.updates} updates); {int(reductions.numpy())} gradient all-reduces for "
          f"{updates} updates")
    return per_update


if __name__ == "__main__":
    result_file.run(main)
