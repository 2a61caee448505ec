"""lamb_tf: paper-faithful LAMB and LARS for Keras 3 and tf_keras.

`lamb_tf.Lamb`, `lamb_tf.Lars` and `lamb_tf.WarmupPolynomialDecay` are Keras 3 objects
(`tf.keras` in TF >= 2.16) on the TensorFlow and JAX backends. Their tf_keras twins, for Model
Garden models and `TF_USE_LEGACY_KERAS=1`, are in `lamb_tf.legacy` (TensorFlow only).
"""

try:
    import keras
except ModuleNotFoundError as error:
    if error.name not in ("tensorflow", "jax", "torch"):
        raise
    # Keras 3 imports its backend at import time; the default one is TensorFlow.
    raise ImportError(
        f"Keras is set to the {error.name} backend, which is not installed: from the clone, "
        'pip install -e ".[tensorflow]", or -e ".[jax]" with KERAS_BACKEND=jax.') from None

from lamb_tf import callbacks
from lamb_tf.optimizers import Lamb, Lars
from lamb_tf.schedules import WarmupPolynomialDecay

__version__ = "0.2.0"

__all__ = ["Lamb", "Lars", "WarmupPolynomialDecay", "callbacks", "__version__"]
