"""The gradient noise scale B_simple = tr(Sigma) / |G|^2 (McCandlish et al. 2018, "An Empirical
Model of Large-Batch Training"): near it, doubling the batch stops halving the updates needed.

Measured from gradients at two batch sizes: E|G_B|^2 = |G|^2 + tr(Sigma) / B for the mean
gradient G_B of a batch of B examples, so squared norms at a small batch b and a big batch B
give unbiased estimates of both terms (their Appendix A):

    |G|^2     ~ (B |G_B|^2 - b |G_b|^2) / (B - b)
    tr(Sigma) ~ (|G_b|^2 - |G_B|^2) / (1/b - 1/B)

Each estimate is noisy and may be negative; B_simple is the ratio of their averages, never the
average of per-step ratios (which is biased). `measure` does this for a Keras 3 model on a
dataset at its current weights; the trainers measure it during training (trainers.runner).
"""

import keras

try:
    import tensorflow as tf
except ImportError:
    raise ImportError("lamb_tf.noise_scale needs TensorFlow (it takes gradients with "
                      'tf.GradientTape): from the clone, pip install -e ".[tensorflow]".') from None


def unbiased_estimates(small_sq_norm, small_batch, big_sq_norm, big_batch):
    """(|G|^2, tr(Sigma)) estimated from the mean squared norm of gradients over batches of
    `small_batch` examples and the squared norm of one over `big_batch` examples."""
    small_batch = tf.cast(small_batch, tf.float32)
    big_batch = tf.cast(big_batch, tf.float32)
    gradient_sq_norm = ((big_batch * big_sq_norm - small_batch * small_sq_norm) /
                        (big_batch - small_batch))
    trace_sigma = (small_sq_norm - big_sq_norm) / (1.0 / small_batch - 1.0 / big_batch)
    return gradient_sq_norm, trace_sigma


def squared_norm(tensors):
    """Sum of squares of every element of `tensors` (IndexedSlices made dense), in float32."""
    total = tf.constant(0.0)
    for tensor in tensors:
        if isinstance(tensor, tf.IndexedSlices):
            tensor = tf.convert_to_tensor(tensor)
        total += tf.reduce_sum(tf.square(tf.cast(tensor, tf.float32)))
    return total


def b_simple(gradient_sq_norm, trace_sigma):
    return trace_sigma / gradient_sq_norm


def measure(model, dataset, num_batches=None, num_parts=2):
    """B_simple of a compiled Keras 3 model on `dataset` at its current weights.

    Each batch of `dataset` ((x, y) or (x, y, sample_weight), batch size divisible by
    `num_parts`) is cut into `num_parts` parts: the parts' gradients are the small batch, the
    whole batch's the big one, with the model's compiled loss (mean over examples, as `fit`
    uses it). Estimates are averaged over `num_batches` batches (all, if None), then divided.
    Returns {"b_simple", "gradient_sq_norm", "trace_sigma", "batches"} as Python floats.
    Nothing is updated: weights, optimizer and metrics stay as they are, and so does the state
    the training-mode passes change (batch norm's moving statistics, dropout's seed
    generators), which is put back afterwards.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "noise_scale.measure() takes gradients with tf.GradientTape and needs "
            f"KERAS_BACKEND=tensorflow (this Keras runs on {keras.backend.backend()}).")
    if num_parts < 2:
        raise ValueError(f"num_parts={num_parts} must be >= 2: the estimate needs gradients at "
                         "two batch sizes.")
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        raise ValueError("measure() needs a compiled model: call model.compile(optimizer=..., "
                         "loss=...) first, with the loss that training will use.")
    variables = model.trainable_variables

    def mean_loss_gradient(x, y, sample_weight):
        with tf.GradientTape() as tape:
            predictions = model(x, training=True)
            loss = model.compute_loss(x=x, y=y, y_pred=predictions, sample_weight=sample_weight,
                                      training=True)
        return tape.gradient(loss, variables)

    @tf.function
    def estimate(batch):
        x, y, sample_weight = (tuple(batch) + (None,))[:3] if isinstance(batch, tuple) \
            else (batch, None, None)
        size = tf.shape(tf.nest.flatten(x)[0])[0]
        part = size // num_parts
        tf.debugging.assert_equal(part * num_parts, size, message=(
            f"measure(): a batch does not divide into num_parts={num_parts} equal parts"))
        small = tf.constant(0.0)
        for i in range(num_parts):
            def cut(t):
                return None if t is None else t[i * part:(i + 1) * part]
            small += squared_norm(mean_loss_gradient(
                tf.nest.map_structure(cut, x), tf.nest.map_structure(cut, y),
                cut(sample_weight)))
        big = squared_norm(mean_loss_gradient(x, y, sample_weight))
        return unbiased_estimates(small / num_parts, part, big, size)

    # Put back at the end, not after each batch: every batch then draws dropout masks of its
    # own, and batch norm normalizes by batch statistics, never reading the moving ones.
    state = list(model.non_trainable_variables)
    saved = [tf.identity(tf.convert_to_tensor(v)) for v in state]
    gradient_sq_norms, trace_sigmas = [], []
    try:
        for batch in (dataset.take(num_batches) if num_batches else dataset):
            gradient_sq_norm, trace_sigma = estimate(batch)
            gradient_sq_norms.append(float(gradient_sq_norm))
            trace_sigmas.append(float(trace_sigma))
    finally:
        for variable, value in zip(state, saved):
            variable.assign(value)
    if not gradient_sq_norms:
        raise ValueError("measure(): the dataset gave no batch.")
    gradient_sq_norm = sum(gradient_sq_norms) / len(gradient_sq_norms)
    trace_sigma = sum(trace_sigmas) / len(trace_sigmas)
    return {"b_simple": trace_sigma / gradient_sq_norm, "gradient_sq_norm": gradient_sq_norm,
            "trace_sigma": trace_sigma, "batches": len(gradient_sq_norms)}


class SmoothedEstimates:
    """Exponential averages of |G|^2 and tr(Sigma), each on its own and bias-corrected (as
    Adam's moments are), fed per update or as the mean of several updates at once."""

    def __init__(self, decay=0.99):
        self.decay = decay
        self._gradient_sq_norm = self._trace_sigma = self._weight = 0.0

    def add(self, gradient_sq_norm, trace_sigma, updates=1):
        """Adds the mean estimates of `updates` consecutive updates."""
        if updates <= 0:
            return
        keep = self.decay ** updates
        self._gradient_sq_norm = keep * self._gradient_sq_norm + (1 - keep) * gradient_sq_norm
        self._trace_sigma = keep * self._trace_sigma + (1 - keep) * trace_sigma
        self._weight = keep * self._weight + (1 - keep)

    @property
    def ready(self):
        return self._weight > 0

    @property
    def gradient_sq_norm(self):
        return self._gradient_sq_norm / self._weight

    @property
    def trace_sigma(self):
        return self._trace_sigma / self._weight

    @property
    def b_simple(self):
        if self._gradient_sq_norm == 0:
            return float("nan")
        return self._trace_sigma / self._gradient_sq_norm
