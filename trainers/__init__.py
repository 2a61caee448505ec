"""TPUEstimator-style trainers built on tf.distribute and the lamb_tf optimizers."""

import importlib.util


def _keras_backend():
    try:
        import keras
    except ModuleNotFoundError:  # Keras's tensorflow backend without TensorFlow: named below
        return "tensorflow"
    return keras.backend.backend()


# Checked first: under KERAS_BACKEND=jax without TensorFlow the packages below are missing too,
# and the backend is the cause to name.
if _keras_backend() != "tensorflow":
    raise ImportError("The trainers run on TensorFlow (tf_keras, tf.distribute) and need "
                      f"KERAS_BACKEND=tensorflow; this Keras 3 runs on {_keras_backend()}.")

# The trainers' extra; `import lamb_tf` alone needs none of these.
_NEEDED = {"official": "tf-models-official", "tensorflow_text": "tensorflow-text",
           "tf_keras": "tf-keras", "absl": "absl-py", "yaml": "pyyaml"}
_missing = [package for module, package in _NEEDED.items()
            if importlib.util.find_spec(module) is None]
if _missing:
    raise ImportError(f"The trainers need {', '.join(_missing)}: from the clone, pip "
                      'install -e ".[trainers]" (or -e ".[demo]" for the built-in data too).')
