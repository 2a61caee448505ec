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
    jit_compile: bool = False   # XLA: the whole step (one device), each replica's pass (mirrored)
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
    # The gradient noise scale B_simple (McCandlish et al. 2018; noise_scale/* in TensorBoard,
    # B_simple in the log): "auto" measures it wherever an update has gradients at two batch
    # sizes (several replicas or micro-batches); "split" also with one of each, by cutting each
    # batch in two micro-batches (the same examples and update, in two passes); "disabled"
    # never.
    noise_scale: str = "auto"


# One section per optimizer: each holds every argument of that optimizer and nothing else, so
# a setting never leaks from one optimizer to another. Exclusions are regexes on variable paths
# (tf_keras AdamW and SGD match them as substrings of names); null means the task's defaults
# (BERT: LayerNorm and bias).
@dataclasses.dataclass
class LambConfig:
    """`lamb_tf.legacy.Lamb` (paper, Algorithm 2)."""
    weight_decay: float = 0.01          # decoupled, inside the trust ratio
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    bias_correction: bool = True        # divide the moments by (1 - beta^t)
    # [lower, upper] clip of ||x|| in the trust ratio (the paper's phi); null: no clipping
    weight_norm_bounds: typing.Optional[typing.List[float]] = None
    exclude_from_weight_decay: typing.Optional[typing.List[str]] = None
    exclude_from_layer_adaptation: typing.Optional[typing.List[str]] = None


@dataclasses.dataclass
class LarsConfig:
    """`lamb_tf.legacy.Lars` (You et al. 2017; MLPerf's ResNet-50)."""
    momentum: float = 0.9
    nesterov: bool = False              # Nesterov's form of the momentum step
    trust_coefficient: float = 0.001    # eta of the trust ratio
    epsilon: float = 0.0                # added to the trust ratio's denominator
    weight_decay: float = 0.01
    exclude_from_weight_decay: typing.Optional[typing.List[str]] = None
    exclude_from_layer_adaptation: typing.Optional[typing.List[str]] = None


@dataclasses.dataclass
class AdamWConfig:
    """`tf_keras.optimizers.AdamW`, the baseline (decoupled decay, Loshchilov & Hutter)."""
    weight_decay: float = 0.01
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-6
    amsgrad: bool = False
    exclude_from_weight_decay: typing.Optional[typing.List[str]] = None
    # Layer-wise rate decay for fine-tuning (ELECTRA, Clark et al. 2020, its fine-tuning
    # hyperparameters: 0.8 for Small and Base, 0.9 for Large): the head steps at the rate, the
    # top layer at rate * decay, each layer below at one more power of decay, the embeddings at
    # decay^(layers + 1). 1: one rate for all.
    layer_decay: float = 1.0


@dataclasses.dataclass
class MomentumConfig:
    """`tf_keras.optimizers.SGD` with momentum, the other baseline (Nado et al. 2021)."""
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.01          # decoupled, as tf_keras applies it
    exclude_from_weight_decay: typing.Optional[typing.List[str]] = None


@dataclasses.dataclass
class OptimizerConfig:
    name: str = "lamb"                  # lamb | lars | adamw | momentum: which section applies
    learning_rate: float = 1e-3         # peak of the warmup + polynomial decay schedule
    num_warmup_steps: int = 0
    end_learning_rate: float = 0.0
    power: float = 1.0                  # 1: the paper's BERT recipe; 2: MLPerf's LARS ResNet
    global_clipnorm: float = 0.0        # 0: no clipping
    lamb: LambConfig = dataclasses.field(default_factory=LambConfig)
    lars: LarsConfig = dataclasses.field(default_factory=LarsConfig)
    adamw: AdamWConfig = dataclasses.field(default_factory=AdamWConfig)
    momentum: MomentumConfig = dataclasses.field(default_factory=MomentumConfig)

    @property
    def selected(self):
        """The section of the optimizer `name` picks."""
        return getattr(self, self.name)


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


def _sections_holding(config, key):
    """Names of the sub-sections of `config` that declare `key` (optimizer.weight_decay ->
    lamb, lars, adamw, momentum)."""
    return [field.name for field in dataclasses.fields(config)
            if _is_config(getattr(config, field.name))
            and key in {f.name for f in dataclasses.fields(getattr(config, field.name))}]


def _unknown_key_error(config, path, key, known):
    below = [f"{section}.{key}" for section in _sections_holding(config, key)]
    close = below or difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    where = f"in section {path!r}" if path else "at the top level"
    return ValueError(f"Unknown config key {key!r} {where}.{hint} Known keys there: "
                      f"{sorted(known)}.")


def _section_given_a_value(config, path, key, value):
    dotted = f"{path}.{key}" if path else key
    elsewhere = [f"{path + '.' if path else ''}{section}.{key}"
                 for section in _sections_holding(config, key)]
    hint = f" Did you mean {' or '.join(repr(e) for e in elsewhere)}?" if elsewhere else ""
    return ValueError(f"Config key {dotted!r} is a section of settings, not a value (got "
                      f"{value!r}).{hint}")


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
            raise _unknown_key_error(config, path, key, known)
        dotted = f"{path}.{key}" if path else key
        current = getattr(config, key)
        if _is_config(current):
            if value is not None and not isinstance(value, dict):
                raise _section_given_a_value(config, path, key, value)
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
            raise ValueError(f"item {item!r} is not of the form key.path=value.")
        key, value = item.split("=", 1)
        node = overrides
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        try:
            node[parts[-1]] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ValueError(f"the value of {key.strip()!r} is not valid YAML "
                             f"({yaml_problem(e)}): {value!r}.") from None
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
            raise ValueError(f"not valid YAML: {yaml_problem(e)}") from None


def yaml_problem(error):
    """The line and column of a YAML error, in one line."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).split("\n")[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"{problem}{where}"


def dump_yaml(config):
    return yaml.safe_dump(to_dict(config), sort_keys=False)
