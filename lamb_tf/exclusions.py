"""Which variables skip weight decay or layer adaptation, decided once when an optimizer is built.

Patterns are regular expressions matched with `re.search` against a variable's full path
(Keras 3 `variable.path`, tf_keras `variable.name` without ':0'), as tfa and Model Garden do.
The decisions are Python booleans, so excluded variables cost nothing at step time.
"""

import re
import warnings
from typing import List, NamedTuple, Optional, Sequence


def normalize_patterns(name, patterns) -> Optional[List[str]]:
    """Checks a pattern list argument and returns it as a list of strings (or None)."""
    if patterns is None:
        return None
    if isinstance(patterns, str):
        raise ValueError(
            f"`{name}` must be a list of regular expressions, not a single string; "
            f"write {name}=[{patterns!r}].")
    patterns = list(patterns)
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise ValueError(f"`{name}` must contain strings; received {pattern!r}.")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"`{name}` has an invalid regular expression {pattern!r}: {error}.")
    return patterns


def variable_path(variable) -> str:
    """The full path patterns are matched against, for either Keras generation."""
    path = getattr(variable, "path", None)
    if isinstance(path, str):
        return path
    name = variable.name
    return name[:-2] if name.endswith(":0") else name


class Exclusions(NamedTuple):
    decay: List[bool]  # True: the variable gets weight decay
    adapt: List[bool]  # True: the variable gets a layer-wise trust ratio


def _matches(patterns, path):
    return any(re.search(pattern, path) for pattern in patterns)


def _warn_unmatched(argument, patterns, paths, optimizer_name):
    for pattern in patterns:
        if not any(re.search(pattern, path) for path in paths):
            warnings.warn(
                f"{optimizer_name}: the pattern {pattern!r} in `{argument}` matches none of the "
                f"{len(paths)} variables being optimized (for example {paths[:3]}). Patterns are "
                "regular expressions searched in the full variable path; fix or drop it.",
                UserWarning, stacklevel=4)


def warn_unmatched_names(var_names, names, optimizer_name):
    """Keras's `exclude_from_weight_decay(var_names=...)` searches `variable.name`, which in Keras
    3 is the short name ('kernel', 'bias'): a full path there silently excludes nothing."""
    for var_name in var_names:
        if not any(re.search(var_name, name) for name in names):
            warnings.warn(
                f"{optimizer_name}: {var_name!r} in exclude_from_weight_decay(var_names=...) "
                f"matches none of the {len(names)} variable names (for example {names[:3]}); "
                "Keras searches it in `variable.name`, which in Keras 3 is the short name. To "
                "match full paths such as 'dense/bias', pass exclude_from_weight_decay=[regexes] "
                "to the constructor.", UserWarning, stacklevel=4)


def resolve(
    paths: Sequence[str],
    exclude_from_weight_decay: Optional[Sequence[str]],
    exclude_from_layer_adaptation: Optional[Sequence[str]],
    also_excluded_from_decay: Sequence[bool],
    optimizer_name: str,
) -> Exclusions:
    """Decides decay and adaptation per variable, warning once per pattern that matches nothing.

    `also_excluded_from_decay` carries the Keras method `exclude_from_weight_decay(...)`'s own
    decisions. `exclude_from_layer_adaptation=None` means: the variables excluded from decay
    (the tfa and Model Garden convention).
    """
    decay_patterns = exclude_from_weight_decay or []
    _warn_unmatched("exclude_from_weight_decay", decay_patterns, paths, optimizer_name)
    decay = [
        not (_matches(decay_patterns, path) or excluded)
        for path, excluded in zip(paths, also_excluded_from_decay)
    ]
    if exclude_from_layer_adaptation is None:
        adapt = list(decay)
    else:
        _warn_unmatched(
            "exclude_from_layer_adaptation", exclude_from_layer_adaptation, paths, optimizer_name)
        adapt = [not _matches(exclude_from_layer_adaptation, path) for path in paths]
    return Exclusions(decay, adapt)
