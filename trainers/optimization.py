"""The optimizer a config names, for the tf_keras models of Model Garden."""

import dataclasses

import tensorflow as tf
import tf_keras

from lamb_tf import exclusions, legacy

OPTIMIZERS = ("lamb", "lars", "adamw", "momentum")


def learning_rate_schedule(config, num_train_steps):
    if config.learning_rate < 0:
        raise ValueError(f"--learning_rate={config.learning_rate} (optimizer.learning_rate) must "
                         "be >= 0.")
    if config.num_warmup_steps >= num_train_steps:
        # Equal leaves no decay phase, which the schedule refuses too.
        relation = "longer than" if config.num_warmup_steps > num_train_steps else "as long as"
        raise ValueError(
            f"--num_warmup_steps={config.num_warmup_steps} (optimizer.num_warmup_steps) is "
            f"{relation} --num_train_steps={num_train_steps} (trainer.num_train_steps): lower the "
            "warmup or train for more steps.")
    return legacy.WarmupPolynomialDecay(
        peak_learning_rate=config.learning_rate, total_steps=num_train_steps,
        warmup_steps=config.num_warmup_steps, end_learning_rate=config.end_learning_rate,
        power=config.power)


def build_optimizer(config, num_train_steps, default_exclusions, layer_depths=None):
    """lamb / lars (lamb_tf.legacy), adamw or momentum (tf_keras baselines, decoupled decay),
    each from its own config section.

    `default_exclusions` are the task's regexes for variables without decay or adaptation (BERT:
    LayerNorm and bias); a section's `exclude_from_*` replace them when set. `layer_depths` is
    the task's `(depth_of, top)` (`Task.layer_depths`), which adamw's `layer_decay` needs.
    """
    if config.name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {config.name!r}; choose one of {list(OPTIMIZERS)}.")
    schedule = learning_rate_schedule(config, num_train_steps)
    settings = dataclasses.asdict(config.selected)
    if settings["exclude_from_weight_decay"] is None:
        settings["exclude_from_weight_decay"] = list(default_exclusions)
    if config.global_clipnorm:
        settings["global_clipnorm"] = config.global_clipnorm
    if config.name == "lamb":
        return legacy.Lamb(learning_rate=schedule, **settings)
    if config.name == "lars":
        return legacy.Lars(learning_rate=schedule, **settings)
    exclude_decay = settings.pop("exclude_from_weight_decay")
    if config.name == "adamw":
        layer_decay = settings.pop("layer_decay")
        if layer_decay == 1.0:
            optimizer = tf_keras.optimizers.AdamW(learning_rate=schedule, **settings)
        else:
            optimizer = LayerDecayAdamW(layer_decay, layer_depths, learning_rate=schedule,
                                        **settings)
    else:
        optimizer = tf_keras.optimizers.SGD(learning_rate=schedule, **settings)
    # tf_keras matches these as substrings of variable names.
    optimizer.exclude_from_weight_decay(var_names=exclude_decay)
    return optimizer


class LayerDecayAdamW(tf_keras.optimizers.AdamW):
    """tf_keras's AdamW with a rate of its own for each variable: `learning_rate *
    layer_decay ** (top - depth)`, the layer-wise rate decay ELECTRA fine-tunes with, for which
    tf_keras has no place.

    The step is tf_keras AdamW's (Kingma & Ba's Adam, epsilon added after the bias correction
    of the rate; then decoupled decay times the rate, Loshchilov & Hutter), each taken at the
    variable's rate. `layer_depths` is `(depth_of, top)`: `depth_of(path)` gives a variable's
    depth, 0 for the input side up to `top` for the head.
    """

    def __init__(self, layer_decay, layer_depths, **kwargs):
        if not 0.0 < layer_decay <= 1.0:
            raise ValueError(f"optimizer.adamw.layer_decay={layer_decay} must be in (0, 1]: "
                             "each layer down steps at that fraction of the one above's rate "
                             "(ELECTRA fine-tunes with 0.8).")
        if layer_depths is None:
            raise ValueError(f"optimizer.adamw.layer_decay={layer_decay}: this task does not "
                             "say which layer each variable is in; leave layer_decay at 1.")
        super().__init__(**kwargs)
        self.layer_decay = layer_decay
        self._depth_of, self._top = layer_depths

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_rate_factors", None) is not None:
            return
        depths = {self._var_key(v): self._depth_of(exclusions.variable_path(v))
                  for v in var_list}
        if self.layer_decay < 1 and var_list and all(d == self._top for d in depths.values()):
            # A renamed layer would otherwise leave every variable at the head's rate, silently.
            raise ValueError(
                f"optimizer.adamw.layer_decay={self.layer_decay}: the task places none of the "
                f"{len(var_list)} variables below the head (e.g. "
                f"{exclusions.variable_path(var_list[0])}), so no rate would decay.")
        self._rate_factors = {key: self.layer_decay ** (self._top - depth)
                              for key, depth in depths.items()}

    def rate_factor(self, variable):
        """The multiple of the schedule's rate `variable` steps at."""
        return self._rate_factors[self._var_key(variable)]

    def _apply_weight_decay(self, variables):
        """The decay is taken in `update_step`, at each variable's rate."""

    def update_step(self, gradient, variable):
        rate = tf.cast(self.learning_rate, variable.dtype) * self.rate_factor(variable)
        if self.weight_decay and self._use_weight_decay(variable):
            variable.assign_sub(variable * tf.cast(self.weight_decay, variable.dtype) * rate)
        # Adam's moments decay everywhere each step, so a sparse gradient is its dense form.
        gradient = tf.convert_to_tensor(gradient)
        step = tf.cast(self.iterations + 1, variable.dtype)
        index = self._index_dict[self._var_key(variable)]
        m, v = self._momentums[index], self._velocities[index]
        m.assign_add((gradient - m) * (1 - self.beta_1))
        v.assign_add((tf.square(gradient) - v) * (1 - self.beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[index]
            v_hat.assign(tf.maximum(v_hat, v))
            v = v_hat
        corrected_rate = rate * tf.sqrt(1 - tf.pow(tf.cast(self.beta_2, variable.dtype), step)) \
            / (1 - tf.pow(tf.cast(self.beta_1, variable.dtype), step))
        variable.assign_sub(m * corrected_rate / (tf.sqrt(v) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config["layer_decay"] = self.layer_decay
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        raise NotImplementedError(
            "LayerDecayAdamW takes its layer depths from the task, which a config does not "
            "hold: build it with trainers.optimization.build_optimizer.")
