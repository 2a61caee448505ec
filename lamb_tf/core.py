"""Update math of LAMB and LARS in `keras.ops`, shared by both Keras generations and every
Keras 3 backend.

Every function here takes and returns float32 tensors and knows no Keras class: the optimizer
classes cast model variables and gradients in, call these, and write the results back. There is
no Python branching on tensor values, so the whole update traces into one XLA computation
(TensorFlow's or JAX's). Under the TensorFlow backend the norms take TensorFlow's own fastest
forms (`norm_form`) and sparse gradients are `tf.IndexedSlices`; TensorFlow is imported only
there, so that JAX users need not install it.

Notation follows You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
minutes" (ICLR 2020), Algorithm 2 (LAMB), and the MLPerf ResNet reference for LARS.
"""

from typing import Any, NamedTuple, Optional, Tuple

import keras
from keras import ops

FLOAT32_MAX = 3.4028234663852886e38

TENSORFLOW = keras.backend.backend() == "tensorflow"
if TENSORFLOW:
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util  # tf_keras asks it too: "under XLA?"

Tensor = Any  # a float32 tensor of the backend (tf.Tensor, jax.Array, ...)
WeightNormBounds = Optional[Tuple[float, float]]


def dense_gradient(gradient):
    """The dense equivalent of a gradient; duplicate `IndexedSlices` indices are summed.

    LAMB's moments decay every row, not only the rows an embedding lookup touched, so a sparse
    gradient must give exactly the result of its dense equivalent.
    """
    if TENSORFLOW and isinstance(gradient, tf.IndexedSlices):
        return tf.convert_to_tensor(gradient)
    return gradient


def as_float32(tensor):
    return ops.cast(dense_gradient(tensor), "float32")


def l2_norm(tensor):
    """||tensor||_2, the same value by whichever form is fastest where it runs (`norm_form`)."""
    if not TENSORFLOW:
        return KERAS_NORM_FORMS[KERAS_NORM_FORM if _is_matrix(tensor) else "plain"](tensor)
    return NORM_FORMS[norm_form(tensor)](tensor)


def norm_form(tensor):
    """Which form of the norm is fastest for `tensor` in the graph being built.

    - "fused" without XLA: TensorFlow's graph kernels have a Euclidean-norm reduction that reads
      the tensor once, where `reduce_sum(square(x))` writes the squares out in full and reads
      them back (benchmarks/norm_profile.py: about 2.7x faster on BERT-base's embedding).
    - "matvec" for a matrix (rank >= 2) under XLA on a CPU-only host: XLA there rewrites a
      whole-tensor `reduce_sum(square(x))` into an elementwise square written out in full and a
      tree of reduce-windows reading it back, but it fuses the square into a matrix-vector
      product, so a matrix's squares are summed as `square(rows) @ ones` (each norm about 3x
      faster on BERT-base's shapes, the whole LAMB step 1.4x).
    - "plain" elsewhere: GPU and TPU compilers fuse the plain reduction themselves.
    """
    if not control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()):
        return "fused"
    if not _is_matrix(tensor):
        return "plain"
    if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
        return "plain"
    return "matvec"


def _is_matrix(tensor):
    """Rank >= 2 with a static last dimension: the shapes the matrix-vector form applies to."""
    shape = tensor.shape
    if getattr(shape, "rank", 0) is None:  # a tf.TensorShape of unknown rank
        return False
    return len(shape) >= 2 and shape[-1] is not None


def _matvec_norm(tensor):
    rows = tf.reshape(tensor, [-1, tensor.shape[-1]])
    ones = tf.ones([tensor.shape[-1]], tensor.dtype)
    return tf.sqrt(tf.reduce_sum(tf.linalg.matvec(tf.square(rows), ones)))


def _plain_norm(tensor):
    return tf.sqrt(tf.reduce_sum(tf.square(tensor)))


if TENSORFLOW:
    NORM_FORMS = {
        "fused": tf.math.reduce_euclidean_norm,
        "matvec": _matvec_norm,
        "plain": _plain_norm,
    }


def _keras_matvec_norm(tensor):
    rows = ops.reshape(tensor, (-1, tensor.shape[-1]))
    ones = ops.ones((tensor.shape[-1],), "float32")
    return ops.sqrt(ops.sum(ops.matmul(ops.square(rows), ones)))


def _keras_plain_norm(tensor):
    return ops.sqrt(ops.sum(ops.square(tensor)))


# Other backends (JAX): the form of a matrix's norm. "plain" until the matrix-vector form is
# measured to pay there (benchmarks/jax_optimizer_step.py times both); JAX's XLA CPU compiler
# is TensorFlow's, so it may.
KERAS_NORM_FORMS = {"matvec": _keras_matvec_norm, "plain": _keras_plain_norm}
KERAS_NORM_FORM = "plain"


def trust_ratio(weight_norm, update_norm, weight_norm_bounds: WeightNormBounds = None):
    """phi(||x||) / ||update|| when both norms are positive, else 1 (paper, Algorithm 2).

    `weight_norm_bounds=(lower, upper)` is the paper's phi(z) = min(max(z, lower), upper); the
    positivity test is on the unclipped norm, so a zero-initialised variable still gets ratio 1.
    """
    scaled_norm = weight_norm
    if weight_norm_bounds is not None:
        lower, upper = weight_norm_bounds
        scaled_norm = ops.clip(weight_norm, lower, upper)
    both_positive = ops.logical_and(weight_norm > 0.0, update_norm > 0.0)
    return ops.where(both_positive, ops.divide_no_nan(scaled_norm, update_norm), 1.0)


def lars_trust_ratio(weight_norm, gradient_norm, trust_coefficient, weight_decay, epsilon):
    """MLPerf ResNet reference: eta ||x|| / (||g|| + wd ||x|| + eps) if both norms > 0, else 1."""
    denominator = gradient_norm + weight_decay * weight_norm + epsilon
    both_positive = ops.logical_and(weight_norm > 0.0, gradient_norm > 0.0)
    return ops.where(
        both_positive,
        ops.divide_no_nan(trust_coefficient * weight_norm, denominator),
        1.0,
    )


def adam_moment_increments(gradient, first_moment, second_moment, beta_1, beta_2):
    """What Adam adds to its moments: (1 - b1)(g - m) and (1 - b2)(g^2 - v).

    m + (1 - b1)(g - m) is b1 m + (1 - b1) g, the paper's moment. The optimizers add these
    increments in place (`assign_add`), so TensorFlow's graph kernels update the slot's buffer
    instead of assigning a new tensor (measured within noise of the old form on this CPU; the
    graph-mode gain came from `norm_form`'s fused norm). XLA compiles both forms alike.

    A second moment that overflowed to Inf (a finite gradient element above ~1.8e19 squares to
    Inf in float32) stays Inf, as b2 v + (1 - b2) g^2 keeps it, so LAMB's update for that
    element stays 0; the plain increment would be Inf - Inf = NaN there.
    """
    first_increment = (1.0 - beta_1) * (gradient - first_moment)
    # min(v, float32 max) is v itself wherever v is finite, and keeps the increment finite
    # where v is Inf, so Inf + increment stays Inf: one elementwise op in the same pass (XLA
    # fuses it; TensorFlow's graph kernels read v once more), no branch.
    bounded = ops.minimum(second_moment, FLOAT32_MAX)
    second_increment = (1.0 - beta_2) * (ops.square(gradient) - bounded)
    return first_increment, second_increment


def bias_correction_scales(step, beta_1, beta_2):
    """1 / (1 - b1^t) and 1 / sqrt(1 - b2^t): folded into scalars so the per-element work stays
    one multiply each."""
    step = ops.cast(step, "float32")
    first_scale = 1.0 / (1.0 - ops.power(ops.cast(beta_1, "float32"), step))
    second_scale = ops.rsqrt(1.0 - ops.power(ops.cast(beta_2, "float32"), step))
    return first_scale, second_scale


def lamb_direction(
    variable, first_moment, second_moment, step, beta_1, beta_2, epsilon, weight_decay,
    bias_correction,
):
    """r = m_hat / (sqrt(v_hat) + eps) + wd x: the Adam step with decoupled decay inside it.

    `weight_decay` is applied to the direction before the trust ratio is taken, so decay is
    scaled by the layer's ratio exactly as in the paper (Keras 3's own Lamb decays outside).
    """
    if bias_correction:
        first_scale, second_scale = bias_correction_scales(step, beta_1, beta_2)
        # m s1 / (sqrt(v) s2 + eps), divided through by the scalar s1: one tensor multiply less.
        direction = first_moment / (
            ops.sqrt(second_moment) * (second_scale / first_scale) + epsilon / first_scale)
    else:
        direction = first_moment / (ops.sqrt(second_moment) + epsilon)
    if weight_decay is not None:
        direction = direction + weight_decay * variable
    return direction


class LambUpdate(NamedTuple):
    delta: Tensor  # the amount to subtract from the variable
    trust_ratio: Tensor


def lamb_update(
    variable, first_moment, second_moment, step, learning_rate, *, beta_1, beta_2, epsilon,
    weight_decay, bias_correction, adapt_layer, weight_norm_bounds=None,
) -> LambUpdate:
    """The variable's part of a LAMB update, from moments already advanced to step `step`.

    `weight_decay=None` and `adapt_layer=False` are static: they drop the corresponding work
    from the graph for variables excluded by pattern.
    """
    direction = lamb_direction(
        variable, first_moment, second_moment, step, beta_1, beta_2, epsilon, weight_decay,
        bias_correction)
    if adapt_layer:
        ratio = trust_ratio(l2_norm(variable), l2_norm(direction), weight_norm_bounds)
    else:
        ratio = ops.convert_to_tensor(1.0, "float32")
    delta = (ops.cast(learning_rate, "float32") * ratio) * direction
    return LambUpdate(delta, ratio)


class LambStep(NamedTuple):
    first_moment: Tensor
    second_moment: Tensor
    delta: Tensor  # the amount to subtract from the variable
    trust_ratio: Tensor


def lamb_step(
    variable, gradient, first_moment, second_moment, step, learning_rate, *, beta_1, beta_2,
    epsilon, weight_decay, bias_correction, adapt_layer, weight_norm_bounds=None,
) -> LambStep:
    """One whole LAMB update of one variable (all float32): moments, then `lamb_update`.

    The optimizers run the same two halves with the moments added in place between them.
    """
    first_increment, second_increment = adam_moment_increments(
        gradient, first_moment, second_moment, beta_1, beta_2)
    first_moment, second_moment = first_moment + first_increment, second_moment + second_increment
    update = lamb_update(
        variable, first_moment, second_moment, step, learning_rate, beta_1=beta_1,
        beta_2=beta_2, epsilon=epsilon, weight_decay=weight_decay,
        bias_correction=bias_correction, adapt_layer=adapt_layer,
        weight_norm_bounds=weight_norm_bounds)
    return LambStep(first_moment, second_moment, update.delta, update.trust_ratio)


class LarsStep(NamedTuple):
    momentum: Tensor
    delta: Tensor  # the amount to subtract from the variable
    trust_ratio: Tensor


def lars_step(
    variable, gradient, momentum_buffer, learning_rate, *, momentum, trust_coefficient,
    weight_decay, epsilon, nesterov, adapt_layer,
) -> LarsStep:
    """One LARS update of one variable, in the MLPerf ResNet reference's form:

    buf <- momentum buf + lr trust (g + wd x);  x <- x - buf
    (Nesterov: x <- x - (momentum buf + lr trust (g + wd x))).
    `weight_decay=None` marks a variable excluded from decay.
    """
    decay = 0.0 if weight_decay is None else weight_decay
    if adapt_layer:
        ratio = lars_trust_ratio(
            l2_norm(variable), l2_norm(gradient), trust_coefficient, decay, epsilon)
    else:
        ratio = ops.convert_to_tensor(1.0, "float32")
    direction = gradient if weight_decay is None else gradient + weight_decay * variable
    scaled = (ops.cast(learning_rate, "float32") * ratio) * direction
    new_buffer = momentum * momentum_buffer + scaled
    delta = momentum * new_buffer + scaled if nesterov else new_buffer
    return LarsStep(new_buffer, delta, ratio)
