"""Flags shared by the trainers, and the resolved experiment config they produce.

Config values come from dataclass defaults, then each --config_file in order, then
--params_override, then the flags below that are set explicitly on the command line
(google-research/bert's names where it had one).
"""

import os

from absl import flags

from trainers import config as config_lib
from trainers import distribution
from trainers import recipes
from trainers import runner

# flag name -> (config path, absl definer, help)
_CONFIG_FLAGS = {
    "distribution_strategy": ("runtime.distribution_strategy", flags.DEFINE_enum,
                              "How to spread the work: one of " +
                              ", ".join(distribution.STRATEGIES) + "."),
    "tpu": ("runtime.tpu", flags.DEFINE_string, "TPU name, grpc:// address, or `local`."),
    "num_gpus": ("runtime.num_gpus", flags.DEFINE_integer, "GPUs for mirrored (0: all)."),
    "num_cpu_devices": ("runtime.num_cpu_devices", flags.DEFINE_integer,
                        "Split the CPU into this many logical devices (to try distribution)."),
    "dtype": ("runtime.dtype", flags.DEFINE_enum, "float32, bfloat16 or float16 (mixed)."),
    "jit_compile": ("runtime.jit_compile", flags.DEFINE_bool, "XLA-compile the train loop."),
    "seed": ("runtime.seed", flags.DEFINE_integer, "Seed of initialization, dropout, data order."),
    "train_batch_size": ("trainer.train_batch_size", flags.DEFINE_integer,
                         "Global examples per update."),
    "eval_batch_size": ("trainer.eval_batch_size", flags.DEFINE_integer,
                        "Global examples per eval step."),
    "num_train_steps": ("trainer.num_train_steps", flags.DEFINE_integer, "Optimizer updates."),
    "iterations_per_loop": ("trainer.iterations_per_loop", flags.DEFINE_integer,
                            "Updates per compiled host loop."),
    "save_checkpoints_steps": ("trainer.save_checkpoints_steps", flags.DEFINE_integer,
                               "Updates between checkpoints."),
    "keep_checkpoint_max": ("trainer.keep_checkpoint_max", flags.DEFINE_integer,
                            "Checkpoints kept."),
    "num_accumulation_steps": ("trainer.num_accumulation_steps", flags.DEFINE_integer,
                               "Micro-batches per update (gradient accumulation)."),
    "init_checkpoint": ("trainer.init_checkpoint", flags.DEFINE_string,
                        "Checkpoint to take model weights from in a fresh run."),
    "learning_rate": ("optimizer.learning_rate", flags.DEFINE_float, "Peak learning rate."),
    "num_warmup_steps": ("optimizer.num_warmup_steps", flags.DEFINE_integer, "Warmup updates."),
}


def define_flags(flag_values=flags.FLAGS):
    flags.DEFINE_multi_string("config_file", [], "YAML config file(s), applied in order: a "
                              "path, or a packaged recipe's name (e.g. tiny_wiki_lamb).",
                              flag_values=flag_values)
    flags.DEFINE_string("params_override", "", "Overrides such as "
                        "`trainer.train_batch_size=64,optimizer.name=lars`.",
                        flag_values=flag_values)
    flags.DEFINE_string("model_dir", None, "Checkpoints, summaries and params.yaml go here "
                        "(local or gs://); default runs/<first config file's name>.",
                        flag_values=flag_values)
    flags.DEFINE_enum("mode", "train", list(runner.MODES), "What to run.",
                      flag_values=flag_values)
    for name, (_, definer, help_text) in _CONFIG_FLAGS.items():
        if definer is flags.DEFINE_enum:
            choices = (list(distribution.STRATEGIES) if name == "distribution_strategy"
                       else ["float32", "bfloat16", "float16"])
            definer(name, None, choices, help_text, flag_values=flag_values)
        else:
            definer(name, None, help_text, flag_values=flag_values)


def resolve(experiment, flag_values=None):
    """The experiment config after config files, overrides and explicit flags."""
    flag_values = flag_values or flags.FLAGS
    task = type(experiment).__module__.split(".")[1]  # trainers.<task>.config
    for path in flag_values.config_file:
        try:
            path = recipes.resolve(path, task)
            config_lib.merge(experiment, config_lib.load_yaml(path))
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    if flag_values.params_override:
        try:
            config_lib.merge(experiment, config_lib.parse_override(flag_values.params_override))
        except ValueError as e:
            raise ValueError(f"--params_override: {e}") from None
    for name, (path, _, _) in _CONFIG_FLAGS.items():
        value = flag_values[name].value
        if value is not None:
            section, key = path.split(".")
            config_lib.merge(experiment, {section: {key: value}})
    return experiment


def model_dir(flag_values=None):
    flag_values = flag_values or flags.FLAGS
    if flag_values.model_dir:
        return flag_values.model_dir
    name = (os.path.splitext(os.path.basename(flag_values.config_file[0]))[0]
            if flag_values.config_file else "default")
    return os.path.join("runs", name)
