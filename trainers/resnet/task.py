"""ResNet image classification: Model Garden's ResNet backbone and classification head."""

import os

import tensorflow as tf
import tf_keras
from official.vision.modeling import classification_model
from official.vision.modeling.backbones import resnet

from trainers import task as task_lib
from trainers.resnet import builtin_data
from trainers.resnet.input_pipeline import ImageInput, synthetic_dataset

# Batch-norm scales/offsets and biases get neither weight decay nor layer adaptation (the LARS
# paper's and MLPerf's ResNet convention).
WEIGHT_DECAY_EXCLUSIONS = ["batch_normalization", "bias"]


class ResNetTask(task_lib.Task):

    def __init__(self, task_config):
        self.config = task_config
        self._inputs = {}

    def build_model(self):
        model_config = self.config.model
        size = model_config.image_size
        input_specs = tf_keras.layers.InputSpec(shape=[None, size, size, 3])
        if model_config.model_id not in resnet.RESNET_SPECS:
            raise ValueError(f"task.model.model_id={model_config.model_id} is not a Model Garden "
                             f"ResNet depth; choose one of {sorted(resnet.RESNET_SPECS)}.")
        backbone = resnet.ResNet(model_config.model_id, input_specs=input_specs,
                                 use_sync_bn=model_config.use_sync_bn,
                                 norm_momentum=model_config.norm_momentum)
        model = classification_model.ClassificationModel(
            backbone, model_config.num_classes, input_specs=input_specs,
            dropout_rate=model_config.dropout_rate, use_sync_bn=model_config.use_sync_bn,
            norm_momentum=model_config.norm_momentum)
        model(tf.zeros([1, size, size, 3]), training=True)  # creates dropout generators too
        return model

    def weight_decay_exclusions(self):
        return list(WEIGHT_DECAY_EXCLUSIONS)

    def inputs(self, mode):
        if mode not in self._inputs:
            data = self.config.train_data if mode == "train" else self.config.eval_data
            patterns = data.input_path
            if not patterns:
                raise ValueError(f"task.{mode}_data.input_path is empty: give ImageNet-schema "
                                 "TFRecord patterns, or `builtin` for Fashion-MNIST.")
            if patterns.strip() == builtin_data.BUILTIN:
                split = "train" if mode == "train" else "validation"
                patterns = os.path.join(builtin_data.ensure(), f"{split}-*.tfrecord")
            model = self.config.model
            self._inputs[mode] = ImageInput(
                patterns, model.num_classes, model.image_size, label_offset=data.label_offset,
                shuffle_buffer_size=data.shuffle_buffer_size, min_crop_area=data.min_crop_area)
        return self._inputs[mode]

    def validate_inputs(self, mode):
        if not (mode == "train" and self.config.use_synthetic_data):
            self.inputs(mode)

    def input_files(self, mode):
        if mode == "train" and self.config.use_synthetic_data:
            return []
        return super().input_files(mode)

    def input_fn(self, mode, global_batch_size, input_context, seed=None, after=None):
        if mode == "train" and self.config.use_synthetic_data:
            model = self.config.model
            return synthetic_dataset(global_batch_size, model.image_size, model.num_classes,
                                     input_context)
        return super().input_fn(mode, global_batch_size, input_context, seed, after)

    def model_inputs(self, features):
        return features["image"]

    def _cross_entropy(self, features, logits):
        labels = tf.one_hot(features["label"], self.config.model.num_classes)
        return tf_keras.losses.categorical_crossentropy(
            labels, tf.cast(logits, tf.float32), from_logits=True,
            label_smoothing=self.config.label_smoothing)

    def loss_normalizers(self, features):
        return {"classification": tf.cast(tf.shape(features["label"])[0], tf.float32)}

    def loss_sums(self, features, outputs):
        return {"classification": tf.reduce_sum(self._cross_entropy(features, outputs))}

    def build_metrics(self):
        return [
            tf_keras.metrics.SparseCategoricalAccuracy(name="top_1_accuracy"),
            tf_keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top_5_accuracy"),
            tf_keras.metrics.Mean(name="loss"),
        ]

    def update_metrics(self, metrics, features, outputs):
        top_1, top_5, loss = metrics
        real = features["is_real_example"]
        logits = tf.cast(outputs, tf.float32)
        top_1.update_state(features["label"], logits, sample_weight=real)
        top_5.update_state(features["label"], logits, sample_weight=real)
        loss.update_state(self._cross_entropy(features, logits), sample_weight=real)
