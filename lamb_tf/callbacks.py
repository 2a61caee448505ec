"""Keras 3 callbacks for `model.fit` users of the lamb_tf optimizers."""

import re

import keras

# TensorBoard summaries are written with TensorFlow; `import lamb_tf` must not need it (JAX).
TENSORFLOW = keras.backend.backend() == "tensorflow"
if TENSORFLOW:
    import tensorflow as tf


class TrustRatioLogger(keras.callbacks.Callback):
    """Writes trust ratios and the learning rate to TensorBoard every `every_n_steps` updates.

    Logs, at each multiple of `every_n_steps` (counted in updates):
    `trust_ratio` (histogram over all variables), `trust_ratio/<variable path>` (one scalar per
    variable, when `per_variable_scalars`) and `learning_rate` (the schedule at the update
    counter, as Keras's TensorBoard callback logs it). Reads nothing from the device
    between those steps (updates are counted on the host), so it costs little at N = 100
    (`python -m benchmarks.callback_overhead`; README).

        model.fit(..., callbacks=[lamb_tf.callbacks.TrustRatioLogger("logs/run1")])
    """

    def __init__(self, log_dir, every_n_steps=100, per_variable_scalars=True):
        super().__init__()
        if not TENSORFLOW:
            raise RuntimeError(
                "TrustRatioLogger writes TensorBoard summaries with TensorFlow and needs "
                f"KERAS_BACKEND=tensorflow (this Keras runs on {keras.backend.backend()}); "
                "read optimizer.trust_ratios in a callback of your own instead.")
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps} must be >= 1.")
        self.log_dir = log_dir
        self.every_n_steps = int(every_n_steps)
        self.per_variable_scalars = per_variable_scalars
        self._writer = None
        self._write = None
        self._step = 0          # updates so far, counted on the host (no device read per batch)
        self._epoch_start = 0
        self._last_logged = 0

    def _optimizer(self):
        optimizer = self.model.optimizer
        return getattr(optimizer, "inner_optimizer", optimizer)  # under LossScaleOptimizer

    def on_train_begin(self, logs=None):
        if not hasattr(self._optimizer(), "trust_ratios"):
            raise ValueError(
                f"TrustRatioLogger needs a lamb_tf optimizer (Lamb or Lars); the model was "
                f"compiled with {type(self._optimizer()).__name__}.")
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        self._step = self._last_logged = int(self._optimizer().iterations.numpy())

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self._step

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index of the last update of this call (steps_per_execution may run
        # several): a multiple of every_n_steps passed since the last log means log now.
        self._step = step = self._epoch_start + batch + 1
        if step // self.every_n_steps == self._last_logged // self.every_n_steps:
            return
        self._last_logged = step
        if self._write is None:
            self._write = self._make_writer()
        self._write(tf.constant(step, tf.int64))

    def _make_writer(self):
        """One compiled call writes every summary: eager summary ops cost ~1 ms each, which a
        per-variable scalar for each of BERT's ~200 variables would multiply."""
        optimizer = self._optimizer()
        paths = list(optimizer.trust_ratios)
        tags = ["trust_ratio/" + re.sub(r"[^\w./-]", "_", path) for path in paths]

        @tf.function
        def write(step):
            ratios = list(optimizer.trust_ratios.values())
            with self._writer.as_default(step=step):
                tf.summary.histogram("trust_ratio", tf.stack(ratios))
                if self.per_variable_scalars:
                    for tag, ratio in zip(tags, ratios):
                        tf.summary.scalar(tag, ratio)
                tf.summary.scalar("learning_rate",
                                  tf.cast(optimizer.learning_rate, tf.float32))

        return write

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.flush()
