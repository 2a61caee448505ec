"""The built-in image data: Fashion-MNIST from the Debian package, as cached ImageNet shards."""

import os

import tensorflow as tf
from absl import logging

from trainers.data import images_to_tfrecords as converter
from trainers.data.files import cache_root

BUILTIN = "builtin"
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
SPLITS = {"train": "train", "validation": "t10k"}


def ensure():
    """The directory holding train-* (60,000) and validation-* (10,000) shards, made once."""
    directory = os.path.join(cache_root(), "fashion_mnist")
    done = os.path.join(directory, converter.LABELS_FILE)
    if tf.io.gfile.exists(done):
        return directory
    for split, stem in SPLITS.items():
        images_path = os.path.join(FASHION_MNIST_DIR, f"{stem}-images-idx3-ubyte.gz")
        labels_path = os.path.join(FASHION_MNIST_DIR, f"{stem}-labels-idx1-ubyte.gz")
        if not tf.io.gfile.exists(images_path):
            raise FileNotFoundError(
                f"The built-in image data is not installed ({images_path} is missing). Install "
                "it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
                "task.train_data.input_path to your own ImageNet-schema shards.")
        logging.info("Converting Fashion-MNIST %s to %s (once)...", split, directory)
        images, classes = converter.images_from_idx(
            images_path, labels_path, converter.CLASS_NAME_SETS["fashion_mnist"])
        converter.write_shards(images, classes, os.path.join(directory, "staging"), split, 8)
    # labels.txt, written last, marks the conversion complete.
    for name in tf.io.gfile.listdir(os.path.join(directory, "staging")):
        tf.io.gfile.rename(os.path.join(directory, "staging", name),
                           os.path.join(directory, name), overwrite=True)
    tf.io.gfile.rmtree(os.path.join(directory, "staging"))
    return directory
