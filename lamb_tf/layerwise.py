"""What the Keras 3 and tf_keras layer-wise optimizers hold in common, with no Keras import.

Weight decay, exclusion patterns, their per-variable decisions and the rule; both
`lamb_tf.optimizers.LayerwiseOptimizer` and `lamb_tf.legacy.LayerwiseOptimizer` mix this in,
so the two generations accept, decide and serialize the same things.
"""

from lamb_tf import exclusions, hyperparameters


class LayerwiseSettings:
    """Mixed into an optimizer class; `_set_layerwise` runs after the Keras base `__init__`."""

    def _set_layerwise(self, rule, weight_decay, exclude_from_weight_decay,
                       exclude_from_layer_adaptation):
        # None is Keras's own default for "no decay".
        self.weight_decay = hyperparameters.check_non_negative(
            "weight_decay", 0.0 if weight_decay is None else weight_decay)
        # Not `self.exclude_from_weight_decay`: that name is Keras's method, which keeps working.
        self._decay_exclusion_patterns = exclusions.normalize_patterns(
            "exclude_from_weight_decay", exclude_from_weight_decay)
        self._adaptation_exclusion_patterns = exclusions.normalize_patterns(
            "exclude_from_layer_adaptation", exclude_from_layer_adaptation)
        self._rule = rule

    def exclude_from_weight_decay(self, var_list=None, var_names=None):
        """Keras's method, kept; its `var_names` are remembered so unmatched ones are reported."""
        self._excluded_var_names = list(var_names or [])
        super().exclude_from_weight_decay(var_list=var_list, var_names=var_names)

    def _apply_weight_decay(self, variables):
        """Decay is part of the update direction; the Keras base must not apply it again."""

    def _decide_exclusions(self, variables):
        """Decides decay and adaptation for each variable once; returns the variable paths."""
        paths = [exclusions.variable_path(variable) for variable in variables]
        decisions = exclusions.resolve(
            paths,
            self._decay_exclusion_patterns,
            self._adaptation_exclusion_patterns,
            also_excluded_from_decay=[not self._use_weight_decay(v) for v in variables],
            optimizer_name=self.name,
        )
        self._decays, self._adapts = decisions.decay, decisions.adapt
        exclusions.warn_unmatched_names(getattr(self, "_excluded_var_names", []),
                                        [variable.name for variable in variables], self.name)
        return paths

    def _weight_decay_of(self, index):
        """The decay rate of variable `index`, or None (static) when it gets none."""
        return self.weight_decay if self._decays[index] and self.weight_decay > 0 else None

    def _layerwise_config(self):
        config = {
            "weight_decay": self.weight_decay,
            # Plain lists: tf.Module attribute tracking wraps the stored ones.
            "exclude_from_weight_decay": _plain_list(self._decay_exclusion_patterns),
            "exclude_from_layer_adaptation": _plain_list(self._adaptation_exclusion_patterns),
        }
        config.update(self._rule.config())
        return config


def _plain_list(patterns):
    return None if patterns is None else list(patterns)
