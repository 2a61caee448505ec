"""The optimizer a config names, for the tf_keras models of Model Garden."""

import dataclasses

import tf_keras

from lamb_tf import legacy

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


def build_optimizer(config, num_train_steps, default_exclusions):
    """lamb / lars (lamb_tf.legacy), adamw or momentum (tf_keras baselines, decoupled decay),
    each from its own config section.

    `default_exclusions` are the task's regexes for variables without decay or adaptation (BERT:
    LayerNorm and bias); a section's `exclude_from_*` replace them when set.
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
        optimizer = tf_keras.optimizers.AdamW(learning_rate=schedule, **settings)
    else:
        optimizer = tf_keras.optimizers.SGD(learning_rate=schedule, **settings)
    # tf_keras matches these as substrings of variable names.
    optimizer.exclude_from_weight_decay(var_names=exclude_decay)
    return optimizer
