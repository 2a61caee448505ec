"""What a task gives the runner: the three parts a TPUEstimator user wrote, as one class."""

import abc


class Task(abc.ABC):
    """A model, its inputs, and its losses and metrics; no strategies, loops or checkpoints.

    Losses are split into sums and normalizers so that the runner can divide by the normalizer
    of the whole global batch (all replicas, all accumulated micro-batches): the gradient is then
    the same however the batch is cut.
    """

    @abc.abstractmethod
    def build_model(self):
        """A built tf_keras model (variables created)."""

    @abc.abstractmethod
    def weight_decay_exclusions(self):
        """Regexes of variable paths that get neither weight decay nor layer adaptation."""

    @abc.abstractmethod
    def validate_inputs(self, mode):
        """Checks the data of `mode` ('train' or 'eval') before anything is compiled."""

    @abc.abstractmethod
    def input_fn(self, mode, global_batch_size, input_context, seed=None):
        """Per-replica batches of `mode` ('train': endless, ordered by `seed`; 'eval': exactly
        eval_steps batches with `is_real_example` marking padding)."""

    @abc.abstractmethod
    def eval_steps(self, global_batch_size):
        """Steps that cover the eval set once."""

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
