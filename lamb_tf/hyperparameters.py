"""Construction-time checks of optimizer hyperparameters, shared by both Keras generations.

Each check raises `ValueError` naming the argument, its value and the accepted range, so a typo
in a config file fails at construction instead of as NaN weights hours later.
"""

import numbers


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_unit_interval(name, value):
    """Decay rates (betas, momentum) must lie in [0, 1)."""
    if not _is_real(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1); received {name}={value!r}.")
    return float(value)


def check_non_negative(name, value):
    if not _is_real(value) or value < 0.0:
        raise ValueError(f"`{name}` must be a number >= 0; received {name}={value!r}.")
    return float(value)


def check_positive(name, value):
    if not _is_real(value) or value <= 0.0:
        raise ValueError(f"`{name}` must be a number > 0; received {name}={value!r}.")
    return float(value)


def check_learning_rate(value):
    """Numbers must be >= 0; schedules and callables are checked by Keras itself."""
    if _is_real(value):
        return check_non_negative("learning_rate", value)
    return value


def check_weight_norm_bounds(value):
    """The paper's phi bounds: `None` or `(lower, upper)` with 0 <= lower <= upper."""
    if value is None:
        return None
    try:
        lower, upper = value
    except (TypeError, ValueError):
        raise ValueError(
            "`weight_norm_bounds` must be None or a pair (lower, upper); "
            f"received weight_norm_bounds={value!r}.") from None
    if not (_is_real(lower) and _is_real(upper)) or not 0.0 <= lower <= upper:
        raise ValueError(
            "`weight_norm_bounds` must satisfy 0 <= lower <= upper; "
            f"received weight_norm_bounds={value!r}.")
    return (float(lower), float(upper))
