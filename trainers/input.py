"""A worker's training input: which pipeline it is, its batches for its local replicas, and
where it stands in its data (what a checkpoint saves of it).

tf.distribute's DistributedIterator cannot be checkpointed (tensorflow#56372), so each worker
iterates its own pipeline and hands each local replica its batch. Batches that carry their data
position (`trainers.data.positions`) are resumed from it: a checkpoint saves a few bytes. Any
other dataset's iterator is checkpointed whole. Either way a resumed run reads exactly the
batches an uninterrupted one would.
"""

import tensorflow as tf

from trainers.data import positions


class TrainInput:
    """The training input of this worker under `strategy`."""

    def __init__(self, task, strategy, global_batch_size, seed):
        self._task = task
        self._strategy = strategy
        self._global_batch_size = global_batch_size
        self._seed = seed
        self.local_replicas = len(strategy.extended.worker_devices)
        self.num_pipelines = strategy.num_replicas_in_sync // self.local_replicas
        self.pipeline_id = _pipeline_id(strategy, self.num_pipelines)
        # Not mirrored: each worker has its own position.
        with tf.device("/cpu:0"):
            self.position = tf.Variable(positions.NOTHING_READ, dtype=tf.int64,
                                        trainable=False, name="data_position")
        self._iterator = None

    def dataset(self, after=positions.NOTHING_READ):
        """This worker's batches (one per local replica per step), starting after `after`."""
        context = tf.distribute.InputContext(self.num_pipelines, self.pipeline_id,
                                             self._strategy.num_replicas_in_sync)
        return self._task.input_fn("train", self._global_batch_size, context, seed=self._seed,
                                   after=after)

    def checkpointed_state(self):
        """What a data-position checkpoint saves and restores: the position variable, or the
        whole iterator of a dataset that carries no position."""
        dataset = self.dataset()
        if isinstance(dataset.element_spec, dict) and positions.POSITION_KEY in dataset.element_spec:
            return self.position
        self._iterator = iter(dataset)
        return self._iterator

    def iterator(self):
        """The iterator to train from, after the checkpointed state was restored (or not)."""
        if self._iterator is None:
            self._iterator = iter(self.dataset(tuple(int(v) for v in self.position.numpy())))
        return self._iterator

    def read_batches(self, iterator):
        """One batch per local replica, already on its device where there is a copy; records
        the position of the last record read. Traced inside the training loop."""
        batches = [next(iterator) for _ in range(self.local_replicas)]
        if isinstance(batches[0], dict) and positions.POSITION_KEY in batches[0]:
            read = [batch.pop(positions.POSITION_KEY) for batch in batches]
            self.position.assign(read[-1][-1])
        devices = self.accelerator_devices()
        if devices:
            batches = [_copy_to(device, batch) for device, batch in zip(devices, batches)]
        return batches

    def accelerator_devices(self):
        """Local replica devices to copy each batch to ahead of its step: accelerators only.

        On CPU the copy would be a no-op; a TPU takes its input through the strategy.
        """
        devices = list(self._strategy.extended.worker_devices)
        if isinstance(self._strategy, tf.distribute.TPUStrategy) or not any(
                "GPU" in device.upper() for device in devices):
            return []
        return devices


def _pipeline_id(strategy, num_pipelines):
    """This worker's index among the input pipelines: the chief, if the cluster has one, is 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if num_pipelines == 1 or resolver is None:
        return 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_id + (1 if has_chief and resolver.task_type == "worker" else 0)


def _copy_to(device, batch):
    with tf.device(device):
        return tf.nest.map_structure(tf.identity, batch)
