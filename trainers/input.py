"""A worker's training input: which pipelines it runs, the batches it gives its replicas, and
where it stands in its data (what a checkpoint saves of it).

Batches that carry their data position (`trainers.data.positions`) are distributed by
tf.distribute itself (`distribute_datasets_from_function`): one pipeline per input worker,
which is each host of a TPU pod slice and each worker of a multi-worker cluster, prefetched to
the replicas' devices. tf.distribute's iterator cannot be checkpointed (TF 2.20; pinned by
tests/test_data_positions.py), so the position travels with the batches instead: each replica
step hands back the position of its batch's last record, and the last replica of each pipeline
says where that pipeline stands. A checkpoint saves these few bytes and a resumed run starts
each pipeline after its own.

Any other dataset's iterator is checkpointed whole: the worker then iterates its one pipeline
itself and hands each local replica its batch.
"""

import tensorflow as tf
from absl import logging

from trainers import task as task_lib
from trainers.data import positions


class TrainInput:
    """The training input of this worker under `strategy`."""

    def __init__(self, task, strategy, global_batch_size, seed):
        self._task = task
        self._strategy = strategy
        self._global_batch_size = global_batch_size
        self._seed = seed
        self.local_replicas = len(strategy.extended.worker_devices)
        # Processes that save a data position: each worker of a cluster. A TPU pod slice is
        # one process whose input pipelines are its hosts.
        self.num_pipelines = strategy.num_replicas_in_sync // self.local_replicas
        self.pipeline_id = _pipeline_id(strategy, self.num_pipelines)
        self.local_pipelines = _input_hosts(strategy)
        shape = [3] if self.local_pipelines == 1 else [self.local_pipelines, 3]
        # Not mirrored: each worker has its own position.
        with tf.device("/cpu:0"):
            self.position = tf.Variable(tf.broadcast_to(
                tf.constant(positions.NOTHING_READ, tf.int64), shape), trainable=False,
                name="data_position")
        self._iterator = None
        self.carries_position = None

    @property
    def _takes_after(self):
        """Tasks written before data positions have an input_fn without `after`: they are
        called as then, and their iterator is checkpointed as then."""
        return task_lib.takes_argument(self._task.input_fn, "after")

    def _context(self):
        """This worker's first pipeline, as tf.distribute numbers them."""
        return tf.distribute.InputContext(self.num_pipelines * self.local_pipelines,
                                          self.pipeline_id * self.local_pipelines,
                                          self._strategy.num_replicas_in_sync)

    def dataset(self, after=positions.NOTHING_READ, context=None):
        """The batches of one pipeline (this worker's first, by default) after `after`."""
        context = context or self._context()
        if not self._takes_after:
            return self._task.input_fn("train", self._global_batch_size, context,
                                       seed=self._seed)
        return self._task.input_fn("train", self._global_batch_size, context, seed=self._seed,
                                   after=after)

    def checkpointed_state(self):
        """What a data-position checkpoint saves and restores: the position variable, or the
        whole iterator of a dataset that carries no position."""
        dataset = self.dataset()
        spec = dataset.element_spec
        has_positions = isinstance(spec, dict) and positions.POSITION_KEY in spec
        self.carries_position = has_positions and self._takes_after
        if has_positions and not self._takes_after:
            logging.warning(
                "%s.input_fn takes no `after`, so a resumed run cannot start its batches after "
                "their data position: the whole input iterator (shuffle buffer included) is "
                "checkpointed instead. Add `after=None` to input_fn and pass it on to save "
                "positions.", type(self._task).__name__)
        if self.carries_position:
            return self.position
        if self.local_pipelines > 1:
            raise ValueError("This task's training batches carry no data position "
                             "(trainers.data.positions.POSITION_KEY) that its input can resume "
                             "from, which a TPU pod slice needs to read on every host and "
                             "resume exactly: give them positions and its input_fn and "
                             "train_dataset an `after` parameter.")
        self._iterator = iter(dataset)
        return self._iterator

    def _saved(self, local_index):
        saved = self.position.numpy()
        return tuple(int(v) for v in (saved if saved.ndim == 1 else saved[local_index]))

    def iterator(self):
        """The iterator to train from, after the checkpointed state was restored (or not)."""
        if self.carries_position is None:
            self.checkpointed_state()
        if not self.carries_position:
            return self._iterator
        first_local = self.pipeline_id * self.local_pipelines

        def pipeline(context):
            local_index = context.input_pipeline_id - first_local
            if not 0 <= local_index < self.local_pipelines:
                raise ValueError(
                    f"tf.distribute gave input pipeline {context.input_pipeline_id} to the worker "
                    f"that saves pipelines {first_local}..."
                    f"{first_local + self.local_pipelines - 1}; their data positions would be "
                    "mixed up.")
            return self.dataset(self._saved(local_index), context)

        return iter(self._strategy.distribute_datasets_from_function(pipeline))

    def next_batch(self, iterator):
        """The next per-replica batch (traced inside the training loop)."""
        if self.carries_position:
            return next(iterator)
        batches = [next(iterator) for _ in range(self.local_replicas)]
        return self._strategy.experimental_distribute_values_from_function(
            lambda context: batches[context.replica_id_in_sync_group % self.local_replicas])

    @staticmethod
    def take_position(batch):
        """(the batch without its positions, the position of its last record); inside a replica.
        A batch without positions gives a placeholder."""
        if isinstance(batch, dict) and positions.POSITION_KEY in batch:
            batch = dict(batch)
            return batch, batch.pop(positions.POSITION_KEY)[-1]
        return batch, tf.constant(positions.NOTHING_READ, tf.int64)

    def record_position(self, last_positions):
        """Saves, per local pipeline, the position its last replica's batch ended at.

        Local replicas come in host order (tf.distribute lists a pod slice's cores host by
        host), each host's `local_replicas / local_pipelines` of them fed by its pipeline, one
        batch each in replica order."""
        if not self.carries_position:
            return
        local = self._strategy.experimental_local_results(last_positions)
        per_pipeline = self.local_replicas // self.local_pipelines
        ends = [local[(p + 1) * per_pipeline - 1] for p in range(self.local_pipelines)]
        self.position.assign(ends[0] if self.local_pipelines == 1 else tf.stack(ends))


def _pipeline_id(strategy, num_pipelines):
    """This worker's index among the input pipelines: the chief, if the cluster has one, is 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if num_pipelines == 1 or resolver is None:
        return 0
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_id + (1 if has_chief and resolver.task_type == "worker" else 0)


def _input_hosts(strategy):
    """Input pipelines this process runs: a TPU pod slice's hosts; one anywhere else."""
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return max(1, int(getattr(strategy.extended, "num_hosts", 1)))
    return 1
