"""What a training run trains and saves: the task's model under the run's precision, its
optimizer (loss-scaled under float16), its metrics, and the checkpoint that holds them."""

import tensorflow as tf
import tf_keras

from trainers import optimization
from trainers import replica_step

PRECISION_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16",
                      "float16": "mixed_float16"}


def set_precision(dtype):
    if dtype not in PRECISION_POLICIES:
        raise ValueError(f"Unknown dtype {dtype!r}; choose one of {list(PRECISION_POLICIES)}.")
    tf_keras.mixed_precision.set_global_policy(PRECISION_POLICIES[dtype])


class TrainState:
    """Model, optimizer and metrics built in `strategy`'s scope, and their checkpoint."""

    def __init__(self, task, experiment, strategy):
        runtime = experiment.runtime
        set_precision(runtime.dtype)
        self.loss_scaling = runtime.dtype == "float16"
        tf_keras.utils.set_random_seed(runtime.seed)
        # Dropout draws from tf.random.Generator variables, which checkpoints carry: a resumed
        # run then draws the same masks as an uninterrupted one.
        tf_keras.backend.experimental.enable_tf_random_generator()
        with strategy.scope():
            self.model = task.build_model()
            optimizer = optimization.build_optimizer(
                experiment.optimizer, experiment.trainer.num_train_steps,
                task.weight_decay_exclusions(), task.layer_depths())
            if self.loss_scaling:
                optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
            self.optimizer = optimizer
            self.optimizer.build(self.model.trainable_variables)
            self.metrics = task.build_metrics()
        self.checkpoint = tf.train.Checkpoint(
            model=self.model, optimizer=self.optimizer,
            dropout_generators=replica_step.dropout_generators(self.model))

    @property
    def inner_optimizer(self):
        """The optimizer that steps (inside the loss scaling, if any)."""
        return self.optimizer.inner_optimizer if self.loss_scaling else self.optimizer
