"""tf.distribute strategies from the runtime config, and global-batch arithmetic."""

import json
import os

import tensorflow as tf

from trainers import peers

STRATEGIES = ("one_device", "mirrored", "multi_worker_mirrored", "tpu")


def split_cpu(num_devices):
    """Splits the host CPU into logical devices; must run before TensorFlow touches a device."""
    if num_devices <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    existing = tf.config.get_logical_device_configuration(cpu)
    if existing and len(existing) == num_devices:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as e:
        raise RuntimeError(f"num_cpu_devices={num_devices} must be set before TensorFlow "
                           f"initializes its devices ({e}).") from None


def make_strategy(runtime):
    """The strategy named by `runtime.distribution_strategy`, with a clear error if unusable."""
    name = runtime.distribution_strategy
    if name not in STRATEGIES:
        raise ValueError(f"Unknown distribution_strategy {name!r}; choose one of "
                         f"{list(STRATEGIES)}.")
    if name == "tpu":
        return _tpu_strategy(runtime.tpu or "local")
    if name == "multi_worker_mirrored":
        # Before anything lists devices: collectives must be configured at startup.
        return _multi_worker_strategy(runtime.peer_timeout_seconds)
    split_cpu(runtime.num_cpu_devices)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy((gpus or cpus)[0])
    if name == "mirrored":
        if runtime.num_gpus > len(gpus):
            raise ValueError(f"num_gpus={runtime.num_gpus} but {len(gpus)} GPU(s) are visible.")
        devices = gpus[:runtime.num_gpus] if runtime.num_gpus else (gpus or cpus)
        # Without GPUs, NCCL is not an option; reduce on one device.
        cross_device_ops = None if gpus else tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices, cross_device_ops=cross_device_ops)


def _multi_worker_strategy(peer_timeout_seconds):
    if not os.environ.get("TF_CONFIG"):
        raise ValueError("distribution_strategy=multi_worker_mirrored needs the TF_CONFIG "
                         "environment variable describing the cluster and this worker's task, "
                         'e.g. {"cluster": {"worker": ["host1:port", "host2:port"]}, '
                         '"task": {"type": "worker", "index": 0}}.')
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"])
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}.") from None
    peers.wait(tf_config, peer_timeout_seconds)
    return tf.distribute.MultiWorkerMirroredStrategy(
        communication_options=tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING))


class DeviceUnavailableError(RuntimeError):
    """The strategy's devices cannot be reached: a user's setting, not a bug."""


def _tpu_strategy(tpu):
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as e:  # the resolver raises many types: URLError, NotFoundError, ...
        first_line = str(e).strip().split("\n")[0][:200]
        raise DeviceUnavailableError(
            f"distribution_strategy=tpu with tpu={tpu!r}: no TPU is reachable "
            f"({type(e).__name__}: {first_line}). On a TPU VM pass --tpu=local; for a TPU node "
            "its name or grpc:// address; without a TPU use --distribution_strategy=one_device "
            "or mirrored.") from None
    return tf.distribute.TPUStrategy(resolver)


def worker_count(strategy):
    """Processes taking part in each step: 1 unless MultiWorkerMirrored over a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    jobs = resolver.cluster_spec().as_dict()
    return sum(len(jobs.get(job, ())) for job in ("chief", "worker"))


def is_chief(strategy):
    """True on the worker that writes checkpoints' canonical copy, params.yaml and summaries.

    TensorFlow's answer: with a `chief` job in TF_CONFIG (Vertex AI, Kubeflow's TFJob) that is
    the chief, not worker 0; without one, worker 0.
    """
    return strategy.extended.should_checkpoint


class WorkersDisagreeError(RuntimeError):
    """Workers of one cluster see different things where they must see the same."""


def check_same_on_every_worker(strategy, what, local_value):
    """Raises WorkersDisagreeError unless `local_value(replica_context)` (an integer) is the
    same on every replica of the cluster. A collective: every worker must call it."""
    values = strategy.experimental_distribute_values_from_function(
        lambda context: tf.constant([local_value(context)], tf.int64))
    everywhere = strategy.gather(values, axis=0).numpy()
    low, high = int(everywhere.min()), int(everywhere.max())
    if low != high:
        raise WorkersDisagreeError(
            f"The workers disagree on {what} (from {low} to {high}): they read the model_dir "
            "differently, so training would diverge. Check that every worker sees the same "
            "model_dir, then rerun.")


def check_batch(name, global_batch_size, num_replicas, num_accumulation_steps=1):
    """Per-replica micro-batch size; a clear error with the nearest valid sizes otherwise."""
    parts = num_replicas * num_accumulation_steps
    if global_batch_size <= 0:
        raise ValueError(f"{name}={global_batch_size} must be a positive number of examples "
                         f"(a multiple of {parts} here, e.g. {parts * 32}).")
    if global_batch_size % parts:
        lower = max(parts, global_batch_size // parts * parts)
        upper = (global_batch_size // parts + 1) * parts
        accumulation = (f" x {num_accumulation_steps} accumulation steps"
                        if num_accumulation_steps > 1 else "")
        raise ValueError(
            f"{name}={global_batch_size} does not divide across {num_replicas} replica(s)"
            f"{accumulation}: it must be a multiple of {parts}. Nearest valid sizes: {lower} "
            f"or {upper}.")
    return global_batch_size // parts
