"""ImageNet-style image preprocessing, with stateless randomness so input iterators checkpoint.

Training: a random crop covering 8%-100% of the image with aspect ratio 3/4-4/3 (Szegedy et al.
2015; the ResNet reference's Inception-style crop), resize, random horizontal flip. Eval: the
central 87.5% square, resize. Both normalize with the ImageNet channel mean and deviation.
"""

import tensorflow as tf

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
AREA_RANGE = (0.08, 1.0)
ASPECT_RATIO_RANGE = (3.0 / 4.0, 4.0 / 3.0)
EVAL_CROP_FRACTION = 0.875


def normalize(image):
    return (tf.cast(image, tf.float32) - MEAN_RGB) / STDDEV_RGB


def _resize(image, image_size):
    return tf.image.resize(image, [image_size, image_size], method="bilinear")


def train_image(encoded, image_size, seed, min_crop_area=AREA_RANGE[0]):
    """Random-size crop, resize and flip of encoded JPEG/PNG bytes; `seed` is a [2] int tensor.

    Crops cover [min_crop_area, 1] of the image (0.08 for ImageNet; larger for tiny images).
    """
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]), seed=crop_seed,
        min_object_covered=0.1, aspect_ratio_range=ASPECT_RATIO_RANGE, area_range=(min_crop_area, 1.0),
        max_attempts=10, use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, size)
    image = _resize(image, image_size)
    image = tf.image.stateless_random_flip_left_right(image, flip_seed)
    return normalize(image)


def eval_image(encoded, image_size):
    """The central EVAL_CROP_FRACTION square of the image, resized."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    crop = tf.cast(EVAL_CROP_FRACTION * tf.cast(tf.minimum(height, width), tf.float32), tf.int32)
    top, left = (height - crop + 1) // 2, (width - crop + 1) // 2
    image = tf.image.crop_to_bounding_box(image, top, left, crop, crop)
    return normalize(_resize(image, image_size))
