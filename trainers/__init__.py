"""TPUEstimator-style trainers built on tf.distribute and the lamb_tf optimizers."""

import importlib.util

# The trainers' extra; `import lamb_tf` alone needs none of these.
_NEEDED = {"official": "tf-models-official", "tensorflow_text": "tensorflow-text",
           "tf_keras": "tf-keras", "absl": "absl-py", "yaml": "pyyaml"}
_missing = [package for module, package in _NEEDED.items()
            if importlib.util.find_spec(module) is None]
if _missing:
    raise ImportError(f"The trainers need {', '.join(_missing)}: pip install "
                      '"lamb_tf[trainers]" (or "lamb_tf[demo]" for the built-in data too).')
