"""Experiment configs: nested dataclasses filled from yaml files, overrides and flags.

Every field is declared, with its default and meaning, in the dataclass that owns it. Values
arrive in layers: dataclass defaults, then each `--config_file` in order, then
`--params_override` (`a.b=c,d=e`), then explicitly set flags. A key that no dataclass declares is
an error that names it and suggests the closest declared key.
"""

import dataclasses
import difflib
import typing

import yaml


@dataclasses.dataclass
class RuntimeConfig:
    # one_device | mirrored | multi_worker_mirrored (cluster from TF_CONFIG) | tpu
    distribution_strategy: str = "one_device"
    tpu: str = ""               # TPU name, grpc://address, or "local" on a TPU VM
    num_gpus: int = 0           # mirrored: GPUs to use (0: all visible devices)
    num_cpu_devices: int = 1    # split the host CPU into this many logical devices (testing)
    dtype: str = "float32"      # float32 | bfloat16 | float16 (mixed policies; fp16 loss scaling)
    jit_compile: bool = False   # XLA-compile the train step (single device / TPU)
    seed: int = 42              # model initialization, dropout and data order
    # multi_worker_mirrored: how long to wait for every TF_CONFIG task before giving up
    peer_timeout_seconds: int = 900


@dataclasses.dataclass
class TrainerConfig:
    train_batch_size: int = 32          # global examples per update (all replicas, all micro-batches)
    eval_batch_size: int = 32           # global examples per eval step
    num_train_steps: int = 1000         # optimizer updates
    iterations_per_loop: int = 100      # updates per compiled host loop, like TPUEstimator
    save_checkpoints_steps: int = 1000  # rounded up to a multiple of iterations_per_loop
    keep_checkpoint_max: int = 5
    num_accumulation_steps: int = 1     # micro-batches averaged into one update
    max_eval_steps: int = 0             # 0: the whole eval set, every example once
    init_checkpoint: str = ""           # weights only, for a fresh run (e.g. phase 2 from phase 1)
    # Loss-spike recovery (Model Garden's names), off while recovery_max_trials is 0: a loop whose
    # loss turns NaN/Inf or whose mean exceeds loss_upper_bound rolls back to the last checkpoint
    # and trains on from the batches after the spike, at most recovery_max_trials times.
    recovery_max_trials: int = 0
    loss_upper_bound: float = 1e6
    recovery_begin_steps: int = 0       # no recovery before this step


@dataclasses.dataclass
class OptimizerConfig:
    name: str = "lamb"                  # lamb | lars | adamw | momentum
    learning_rate: float = 1e-3         # peak of the warmup + polynomial decay schedule
    num_warmup_steps: int = 0
    end_learning_rate: float = 0.0
    power: float = 1.0                  # 1: the paper's BERT recipe; 2: MLPerf's LARS ResNet
    weight_decay: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    bias_correction: bool = True        # lamb: divide the moments by (1 - beta^t) (paper, Alg. 2)
    momentum: float = 0.9               # lars and momentum
    nesterov: bool = False              # lars and momentum: Nesterov's form of the momentum step
    trust_coefficient: float = 0.001    # lars
    global_clipnorm: float = 0.0        # 0: no clipping
    # Regexes on variable paths; null means the task's defaults (BERT: LayerNorm and bias).
    exclude_from_weight_decay: typing.Optional[typing.List[str]] = None
    exclude_from_layer_adaptation: typing.Optional[typing.List[str]] = None


@dataclasses.dataclass
class ExperimentConfig:
    """What every experiment has besides its task; tasks subclass it and add `task`."""
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    runtime: RuntimeConfig = dataclasses.field(default_factory=RuntimeConfig)


def _is_config(value):
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def to_dict(config):
    return dataclasses.asdict(config)


def _unknown_key_error(path, key, known):
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    where = f"in section {path!r}" if path else "at the top level"
    return ValueError(f"Unknown config key {key!r} {where}.{hint} Known keys there: "
                      f"{sorted(known)}.")


def _coerce(value, current, dotted):
    """Checks a new value against the type of the field's current value."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 (PyYAML) reads 1e-3 as a string: it needs a dot (1.0e-3) to be a float.
            try:
                return float(value)
            except ValueError:
                pass
    elif isinstance(current, str):
        if isinstance(value, str):
            return value
    elif isinstance(current, list):
        if isinstance(value, list):
            return value
    expected = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                list: "a list"}[type(current)]
    raise ValueError(f"Config key {dotted!r} expects {expected}, got {value!r}.")


def merge(config, overrides, path=""):
    """Applies a nested dict of overrides to a config in place; unknown keys raise."""
    if not isinstance(overrides, dict):
        raise ValueError(f"Config section {path or 'top level'!r} must be a mapping, got "
                         f"{overrides!r}.")
    known = {field.name for field in dataclasses.fields(config)}
    for key, value in overrides.items():
        if key not in known:
            raise _unknown_key_error(path, key, known)
        dotted = f"{path}.{key}" if path else key
        current = getattr(config, key)
        if _is_config(current):
            merge(current, value or {}, dotted)
        else:
            setattr(config, key, _coerce(value, current, dotted))
    return config


def parse_override(text):
    """`a.b=c,d.e=[x, y]` -> nested dict; values are read as yaml scalars or lists."""
    overrides = {}
    for item in _split_top_level(text):
        if not item.strip():
            continue
        if "=" not in item:
            raise ValueError(f"--params_override item {item!r} is not of the form key.path=value.")
        key, value = item.split("=", 1)
        node = overrides
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"the value of {key.strip()!r} is not valid YAML "
                             f"({_yaml_problem(e)}): {value!r}.") from None
    return overrides


def _split_top_level(text):
    """Splits on commas outside brackets, so list values may contain commas."""
    items, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return items


def load_yaml(path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"Config file {path} does not exist.")
    with tf.io.gfile.GFile(path, "r") as f:
        try:
            return yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"not valid YAML: {_yaml_problem(e)}") from None


def _yaml_problem(error):
    """The line and column of a YAML error, in one line."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).split("\n")[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"


def dump_yaml(config):
    return yaml.safe_dump(to_dict(config), sort_keys=False)
