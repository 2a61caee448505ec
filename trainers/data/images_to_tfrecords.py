r"""Images -> ImageNet-schema TFRecord shards, plus labels.txt (line i = the class of label i).

  # a folder with one subfolder per class (classes numbered in sorted name order):
  python -m trainers.data.images_to_tfrecords --image_dir=photos/train --output_dir=/tmp/photos
  # MNIST-format idx files (gzipped or not):
  python -m trainers.data.images_to_tfrecords --output_dir=/tmp/fmnist --split=train \
      --idx_images=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
      --idx_labels=/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz \
      --class_names=fashion_mnist

`--label_offset=1` writes labels 1..K, the 1001-class convention of some ImageNet shards where 0
is "background". Images are checked by decoding them; JPEG and PNG bytes are kept as they are,
other formats are re-encoded as PNG.
"""

import dataclasses
import gzip
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

from trainers import cli
from trainers.data import files as files_lib
from trainers.data import image_records

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
LABELS_FILE = "labels.txt"
# Zalando's Fashion-MNIST class names, in label order.
CLASS_NAME_SETS = {
    "fashion_mnist": ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                      "sneaker", "bag", "ankle boot"],
    "mnist": [str(digit) for digit in range(10)],
}


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    encoded: bytes
    image_format: str
    label: int
    height: int
    width: int
    channels: int
    filename: str


def images_from_folder(image_dir):
    """(images, class names) from image_dir/<class>/<image files>, classes in sorted order."""
    if not tf.io.gfile.isdir(image_dir):
        raise FileNotFoundError(f"--image_dir {image_dir} is not a folder.")
    classes = sorted(name for name in tf.io.gfile.listdir(image_dir)
                     if tf.io.gfile.isdir(os.path.join(image_dir, name)))
    classes = [name.rstrip("/") for name in classes]
    if not classes:
        raise ValueError(f"{image_dir} has no class subfolders; put each class's images in "
                         f"{image_dir}/<class name>/.")
    images = []
    for label, name in enumerate(classes):
        folder = os.path.join(image_dir, name)
        files = sorted(f for f in tf.io.gfile.listdir(folder)
                       if f.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            raise ValueError(f"Class folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})"
                             "; remove it or add images.")
        for file_name in files:
            path = os.path.join(folder, file_name)
            with tf.io.gfile.GFile(path, "rb") as f:
                images.append(_checked_image(f.read(), label, path))
    return images, classes


def _checked_image(data, label, path):
    try:
        pixels = tf.io.decode_image(data, expand_animations=False)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError) as e:
        raise ValueError(f"{path} is not a readable image ({e.message.splitlines()[0]}); fix or "
                         "remove it.") from None
    kind = "jpeg" if data[:3] == b"\xff\xd8\xff" else "png" if data[:4] == b"\x89PNG" else None
    if kind is None:
        data, kind = tf.io.encode_png(pixels).numpy(), "png"
    height, width, channels = pixels.shape
    return LabelledImage(data, kind, label, height, width, channels, os.path.basename(path))


def read_idx(path, expected_dims):
    opener = gzip.open if path.endswith(".gz") else open
    with tf.io.gfile.GFile(path, "rb") as raw, opener(raw) as f:
        content = f.read()
    if len(content) < 4 or content[:2] != b"\x00\x00" or content[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes (MNIST format).")
    dims = content[3]
    if dims != expected_dims:
        raise ValueError(f"{path} has {dims} dimensions; expected {expected_dims} "
                         f"({'images' if expected_dims == 3 else 'labels'}).")
    shape = [int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    data = np.frombuffer(content, np.uint8, offset=4 + 4 * dims)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: its header says {shape} but it holds "
                         f"{data.size} values.")
    return data.reshape(shape)


def images_from_idx(images_path, labels_path, class_names):
    """(images, class names) from MNIST-format idx files; labels must index class_names."""
    pixels = read_idx(images_path, 3)
    labels = read_idx(labels_path, 1)
    if len(pixels) != len(labels):
        raise ValueError(f"{images_path} holds {len(pixels)} images but {labels_path} "
                         f"{len(labels)} labels.")
    bad = np.flatnonzero(labels >= len(class_names))
    if bad.size:
        raise ValueError(f"Label {labels[bad[0]]} of image {bad[0]} in {labels_path} is out of "
                         f"range for {len(class_names)} classes; give --class_names with all "
                         "classes.")
    encoded = [data for batch in tf.data.Dataset.from_tensor_slices(pixels[..., None])
               .map(tf.io.encode_png, num_parallel_calls=tf.data.AUTOTUNE).batch(4096)
               for data in batch.numpy()]
    height, width = pixels.shape[1:]
    stem = os.path.basename(images_path).split(".")[0]
    images = [LabelledImage(data, "png", int(label), height, width, 1, f"{stem}-{i:06d}.png")
              for i, (data, label) in enumerate(zip(encoded, labels))]
    return images, list(class_names)


def write_shards(images, class_names, output_dir, split, num_shards, label_offset=0):
    """Writes split-XXXXX-of-YYYYY.tfrecord (round robin) and labels.txt; returns the paths."""
    if not images:
        raise ValueError("No images to write.")
    lowest = min(image.label for image in images)
    if lowest + label_offset < 0:
        raise ValueError(
            f"--label_offset={label_offset} makes label {lowest} (class "
            f"{class_names[lowest]!r}) negative; labels must be >= 0. Use 0, or 1 for "
            "1001-class shards whose label 0 is background.")
    num_shards = max(1, min(num_shards, len(images)))
    tf.io.gfile.makedirs(output_dir)
    paths = [os.path.join(output_dir, f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord")
             for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(path + ".incomplete") for path in paths]
    for i, image in enumerate(images):
        writers[i % num_shards].write(image_records.serialize_image(
            image.encoded, image.image_format, image.label + label_offset, image.height,
            image.width, image.channels, image.filename, class_names[image.label]))
    for writer, path in zip(writers, paths):
        writer.close()
        tf.io.gfile.rename(path + ".incomplete", path, overwrite=True)
    with tf.io.gfile.GFile(os.path.join(output_dir, LABELS_FILE), "w") as f:
        f.write("".join(name + "\n" for name in class_names))
    return paths


def _class_names(value, labels_path):
    if value in CLASS_NAME_SETS:
        return CLASS_NAME_SETS[value]
    if value:
        return [name.strip() for name in value.split(",")]
    labels = read_idx(labels_path, 1)
    return [str(label) for label in range(int(labels.max()) + 1)]


def main(argv):
    cli.no_arguments(argv)
    options = flags.FLAGS
    if bool(options.image_dir) == bool(options.idx_images):
        cli.usage_error("Give --image_dir (class subfolders) or --idx_images with "
                        "--idx_labels (MNIST format).")
    if options.idx_images and not options.idx_labels:
        cli.usage_error("--idx_images needs --idx_labels.")
    try:
        if options.image_dir:
            images, classes = images_from_folder(options.image_dir)
        else:
            images, classes = images_from_idx(
                options.idx_images, options.idx_labels,
                _class_names(options.class_names, options.idx_labels))
        files_lib.prepare_shard_dir(options.output_dir, (options.split,), options.overwrite)
        paths = write_shards(images, classes, options.output_dir, options.split,
                             options.num_shards, options.label_offset)
    except (ValueError, FileNotFoundError) as e:
        cli.user_error(e)
    logging.info("Wrote %d images of %d classes to %d shards in %s.", len(images), len(classes),
                 len(paths), options.output_dir)
    print(f"{len(images)} images, {len(classes)} classes -> {len(paths)} shards in "
          f"{options.output_dir} (labels in {LABELS_FILE})")


if __name__ == "__main__":
    flags.DEFINE_string("image_dir", "", "Folder with one subfolder of images per class.")
    flags.DEFINE_string("idx_images", "", "MNIST-format idx3 image file (.gz allowed).")
    flags.DEFINE_string("idx_labels", "", "MNIST-format idx1 label file (.gz allowed).")
    flags.DEFINE_string("class_names", "", "Comma-separated class names for idx input, or "
                        f"one of {sorted(CLASS_NAME_SETS)}; default the label numbers.")
    flags.DEFINE_string("output_dir", None, "Where the shards and labels.txt go.")
    flags.DEFINE_string("split", "train", "Shard name prefix (train, validation, ...).")
    flags.DEFINE_integer("num_shards", 8, "Output shards.")
    flags.DEFINE_bool("overwrite", False, "Replace this split's shards already in --output_dir "
                      "(without it, an output_dir holding them is refused).")
    flags.DEFINE_integer("label_offset", 0, "Added to every label (1 for 1001-class "
                         "ImageNet-style shards with 0 = background).")
    flags.mark_flag_as_required("output_dir")
    cli.run(main)
