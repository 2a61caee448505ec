"""The ResNet input_fn: ImageNet-schema TFRecords to per-replica (image, label) batches.

Batches are dicts: `image` [batch, size, size, 3] float32, `label` int32 in [0, num_classes);
eval batches add `is_real_example`. `label_offset` is subtracted from the stored label (1 for
1001-class ImageNet shards whose label 0 is "background").
"""


import tensorflow as tf

from trainers.data import batching
from trainers.data import files as files_lib
from trainers.data import image_records
from trainers.data import positions
from trainers.resnet import preprocessing


class ImageInput(batching.RecordFiles):
    """The files behind `file_patterns`, checked once, and the datasets read from them."""

    def __init__(self, file_patterns, num_classes, image_size, label_offset=0,
                 shuffle_buffer_size=10000, cycle_length=8,
                 min_crop_area=preprocessing.AREA_RANGE[0]):
        super().__init__(file_patterns, what="image data")
        self.num_classes = num_classes
        self.image_size = image_size
        self.label_offset = label_offset
        self.shuffle_buffer_size = shuffle_buffer_size
        self.cycle_length = cycle_length
        self.min_crop_area = min_crop_area
        for path in self.files:
            example = tf.train.Example.FromString(files_lib.first_record(path))
            missing = sorted(set(image_records.READ_SPEC) - set(example.features.feature))
            if missing:
                raise ValueError(f"{path} lacks {missing}: not ImageNet-schema image records. "
                                 "Make them with `python -m trainers.data.images_to_tfrecords`.")

    def _parse(self, serialized):
        parsed = tf.io.parse_single_example(serialized, image_records.READ_SPEC)
        label = tf.cast(parsed["image/class/label"], tf.int32) - self.label_offset
        checks = [
            tf.debugging.assert_less(
                label, self.num_classes,
                message=f"{files_lib.DATA_CHECK}A label is out of range for num_classes="
                f"{self.num_classes} after label_offset={self.label_offset}; check both "
                "(1001-class ImageNet shards need label_offset=1)."),
            tf.debugging.assert_non_negative(
                label, message=f"{files_lib.DATA_CHECK}A label is negative after "
                f"label_offset={self.label_offset}; "
                "shards whose labels start at 0 need label_offset=0."),
        ]
        with tf.control_dependencies(checks):
            return parsed["image/encoded"], tf.identity(label)

    def train_dataset(self, global_batch_size, input_context=None, seed=None,
                      after=positions.NOTHING_READ):
        """Endless augmented batches, starting after data position `after`; each example's
        augmentation is seeded by its position, so a resumed run augments as an uninterrupted
        one does."""
        seed = positions.seed_or_draw(seed)  # augmentation and order must share it
        batch_size = batching.per_replica_batch_size(global_batch_size, input_context)
        records = positions.training_records(self.files, input_context, seed, self.cycle_length,
                                             self.shuffle_buffer_size, after)
        size = self.image_size

        def preprocess(record, where):
            encoded, label = self._parse(record)
            image = preprocessing.train_image(encoded, size, positions.example_seed(seed, where),
                                              self.min_crop_area)
            return {"image": image, "label": label, positions.POSITION_KEY: where}

        return (records.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

    def eval_dataset(self, global_batch_size, input_context=None):
        """Exactly eval_steps batches per replica, padding flagged is_real_example=0."""
        size = self.image_size

        def preprocess(record):
            encoded, label = self._parse(record)
            return {"image": preprocessing.eval_image(encoded, size), "label": label,
                    "is_real_example": tf.constant(1.0)}

        real = batching.pipeline_records(self.files, input_context).map(
            preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        padding = {"image": tf.zeros([size, size, 3]), "label": tf.constant(0),
                   "is_real_example": tf.constant(0.0)}
        return batching.padded_eval_batches(real, padding, self.num_examples, global_batch_size,
                                            input_context).prefetch(tf.data.AUTOTUNE)


def synthetic_dataset(global_batch_size, image_size, num_classes, input_context=None):
    """Endless batches of one fixed random batch: throughput runs without data."""
    batch_size = batching.per_replica_batch_size(global_batch_size, input_context)
    images = tf.random.stateless_normal([batch_size, image_size, image_size, 3], seed=[1, 2])
    labels = tf.random.stateless_uniform([batch_size], seed=[3, 4], maxval=num_classes,
                                         dtype=tf.int32)
    return tf.data.Dataset.from_tensors({"image": images, "label": labels}).repeat()

