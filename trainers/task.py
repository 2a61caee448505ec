"""What a task gives the runner: the three parts a TPUEstimator user wrote, as one class."""

import abc
import inspect
from concurrent import futures

import tensorflow as tf
from absl import logging

from trainers import checkpointing
from trainers import storage
from trainers.data import files as files_lib
from trainers.data import positions

_STAT_THREADS = 16  # gs:// answers a stat in tens of ms: a thousand shards one by one is a minute


class Task(abc.ABC):
    """A model, its inputs, and its losses and metrics; no strategies, loops or checkpoints.

    Losses are split into sums and normalizers so that the runner can divide by the normalizer
    of the whole global batch (all replicas, all accumulated micro-batches): the gradient is then
    the same however the batch is cut.
    """

    @abc.abstractmethod
    def build_model(self):
        """A built tf_keras model (variables created)."""

    def initialize(self, model, init_checkpoint):
        """Loads what a fresh run takes from `init_checkpoint` (Model Garden's
        `Task.initialize`): here, all model weights from a checkpoint of the same task and model
        (a prefix, or a folder holding one), and not the optimizer state or step."""
        resolved = checkpointing.checkpoint_in(init_checkpoint)
        if not resolved:
            raise FileNotFoundError(f"init_checkpoint {init_checkpoint!r} is not a checkpoint "
                                    f"(no {init_checkpoint}.index, and it is not a directory "
                                    "holding one).")
        try:
            tf.train.Checkpoint(model=model).read(resolved).expect_partial() \
                .assert_existing_objects_matched()
        except (ValueError, AssertionError) as e:
            raise ValueError(f"init_checkpoint {resolved} does not fit this model: {e} Start "
                             "from a checkpoint of the same task and model size.") from None
        logging.info("Initialized model weights from %s.", resolved)

    @abc.abstractmethod
    def weight_decay_exclusions(self):
        """Regexes of variable paths that get neither weight decay nor layer adaptation."""

    def layer_depths(self):
        """`(depth_of, top)` for layer-wise rate decay (`optimizer.adamw.layer_decay`):
        `depth_of(path)` is a variable's depth, from 0 at the input to `top` at the head; None
        when the model has no stack of layers to decay through."""
        return None

    @abc.abstractmethod
    def inputs(self, mode):
        """The checked input of `mode` ('train' or 'eval'): an object with
        `train_dataset(global_batch_size, input_context, seed, after)`,
        `eval_dataset(global_batch_size, input_context)` and `eval_steps(global_batch_size)`.
        Making it validates the data, so it should be made once."""

    def validate_inputs(self, mode):
        """Checks the data of `mode` before anything is compiled."""
        self.inputs(mode)

    def input_fn(self, mode, global_batch_size, input_context, seed=None, after=None):
        """Per-replica batches of `mode` ('train': endless, ordered by `seed`, starting after
        the data position `after`; 'eval': exactly eval_steps batches with `is_real_example`
        marking padding).

        Training batches that carry `trainers.data.positions.POSITION_KEY` are resumed from
        their position (a few bytes per checkpoint); the runner checkpoints any other dataset's
        whole iterator, shuffle buffer included. An override without `after`, or a
        `train_dataset` without it (the interface before data positions), is called without
        it, and its iterator is checkpointed."""
        if mode == "train":
            after = positions.NOTHING_READ if after is None else after
            inputs = self.inputs(mode)
            if takes_argument(inputs.train_dataset, "after"):
                return inputs.train_dataset(global_batch_size, input_context, seed=seed,
                                            after=after)
            # Written before data positions: called as it was then, its iterator checkpointed.
            if tuple(after) != positions.NOTHING_READ:
                raise ValueError(
                    f"{type(inputs).__name__}.train_dataset takes no `after`, so it cannot start "
                    f"after the saved data position {tuple(after)}; add an `after` parameter "
                    "(trainers.data.positions) or give its batches no position.")
            dataset = inputs.train_dataset(global_batch_size, input_context, seed=seed)
            spec = dataset.element_spec
            if isinstance(spec, dict) and positions.POSITION_KEY in spec:
                # Saved, a position this dataset cannot start after would resume from its
                # start: without them the runner checkpoints the iterator, as for an old
                # input_fn (trainers.input.TrainInput).
                logging.warning(
                    "%s.train_dataset takes no `after`, so a resumed run cannot start its "
                    "batches after their data position: the positions are dropped and the "
                    "whole input iterator (shuffle buffer included) is checkpointed instead. "
                    "Add an `after` parameter (trainers.data.positions) to save positions.",
                    type(inputs).__name__)
                dataset = dataset.map(lambda batch: {
                    key: value for key, value in batch.items()
                    if key != positions.POSITION_KEY})
            return dataset
        return self.inputs(mode).eval_dataset(global_batch_size, input_context)

    def model_dir_records(self):
        """{file name: text} the runner writes into a training run's model_dir beside
        params.yaml: what a later user of the checkpoints needs and the config only points to
        (a vocab). A resumed run must record the same, since its checkpoints were trained
        with it."""
        return {}

    def input_files(self, mode):
        """The files `mode` reads, so that a corrupt record can be traced to its file."""
        return list(getattr(self.inputs(mode), "files", []))

    def train_stream(self):
        """What a saved training-data position means besides the seed: the files the patterns
        matched, in reading order, with their sizes, and how they are read (`cycle_length`,
        `shuffle_buffer_size`). A resume compares it with the one recorded in params.yaml.

        Files are named relative to the directory that holds them all: a reinstall into another
        prefix, or another LAMB_TF_DATA_DIR, moves the data but not its stream."""
        files = self.input_files("train")
        if not files:
            return {}

        def size(path):
            return storage.retrying(lambda: tf.io.gfile.stat(path).length, f"the size of {path}")

        with futures.ThreadPoolExecutor(min(_STAT_THREADS, len(files))) as pool:
            sizes = list(pool.map(size, files))
        stream = {"files": [[name, int(n)] for name, n in
                            zip(files_lib.relative_to_common_directory(files), sizes)]}
        inputs = self.inputs("train")
        for layout in ("cycle_length", "shuffle_buffer_size"):
            if hasattr(inputs, layout):
                stream[layout] = int(getattr(inputs, layout))
        return stream

    def eval_steps(self, global_batch_size):
        """Steps that cover the eval set once."""
        return self.inputs("eval").eval_steps(global_batch_size)

    def model_inputs(self, features):
        """What the model is called on; by default the whole feature dict."""
        return features

    @abc.abstractmethod
    def loss_normalizers(self, features):
        """{loss name: scalar}: what each loss sum is divided by, summed over this batch."""

    @abc.abstractmethod
    def loss_sums(self, features, outputs):
        """{loss name: scalar}: the unnormalized loss of each part over this batch."""

    @abc.abstractmethod
    def build_metrics(self):
        """Eval metrics (tf_keras.metrics objects, created inside the strategy scope)."""

    @abc.abstractmethod
    def update_metrics(self, metrics, features, outputs):
        """Updates eval metrics, weighting out padding examples."""

    def model_eval_results(self, model):
        """{name: value} measured on `model` at each evaluation beside the eval metrics, and
        logged and written with them (BERT: the linear probe, `trainers.bert.probe`); none by
        default."""
        del model
        return {}

    def health_warnings(self, results):
        """Lines to warn with when eval `results` show a run going wrong (see
        `trainers.health`); none by default."""
        del results
        return []


def takes_argument(function, name):
    """Whether `function` accepts the keyword argument `name` (named, or through **kwargs)."""
    parameters = inspect.signature(function).parameters.values()
    return any(p.name == name and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               or p.kind == p.VAR_KEYWORD for p in parameters)
