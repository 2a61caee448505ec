"""lamb_tf: paper-faithful LAMB and LARS for TensorFlow.

`lamb_tf.Lamb`, `lamb_tf.Lars` and `lamb_tf.WarmupPolynomialDecay` are Keras 3 objects
(`tf.keras` in TF >= 2.16). Their tf_keras twins, for Model Garden models and
`TF_USE_LEGACY_KERAS=1`, are in `lamb_tf.legacy`.
"""

from lamb_tf import callbacks
from lamb_tf.optimizers import Lamb, Lars
from lamb_tf.schedules import WarmupPolynomialDecay

__version__ = "0.1.0"

__all__ = ["Lamb", "Lars", "WarmupPolynomialDecay", "callbacks", "__version__"]
