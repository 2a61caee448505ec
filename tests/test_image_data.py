"""images_to_tfrecords and the ResNet input_fn: labels survive, preprocessing, eval, errors."""

import gzip
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from trainers.data import images_to_tfrecords as converter
from trainers.resnet import builtin_data, preprocessing
from trainers.resnet.input_pipeline import ImageInput

COLORS = {"red": (250, 10, 10), "green": (10, 250, 10), "blue": (10, 10, 250)}


def unnormalize(image):
    return image * np.array(preprocessing.STDDEV_RGB) + np.array(preprocessing.MEAN_RGB)


def write_image(path, color, size=(20, 30), kind="png"):
    pixels = np.zeros(size + (3,), np.uint8) + np.array(color, np.uint8)
    encode = {"png": tf.io.encode_png, "jpeg": tf.io.encode_jpeg}[kind]
    path.write_bytes(encode(pixels).numpy())


@pytest.fixture
def class_folder(tmp_path):
    root = tmp_path / "images"
    for name, color in COLORS.items():
        (root / name).mkdir(parents=True)
        for i in range(4):
            kind = "jpeg" if i % 2 else "png"
            write_image(root / name / f"{i}.{'jpg' if kind == 'jpeg' else 'png'}", color,
                        kind=kind)
    return root


def test_class_folders_survive_conversion_and_reading_with_labels_intact(class_folder, tmp_path):
    images, classes = converter.images_from_folder(str(class_folder))
    assert classes == sorted(COLORS)
    converter.write_shards(images, classes, str(tmp_path / "out"), "train", num_shards=2)
    assert (tmp_path / "out" / "labels.txt").read_text().split() == sorted(COLORS)
    data = ImageInput(str(tmp_path / "out" / "train-*"), num_classes=3, image_size=8)
    seen = 0
    for batch in data.eval_dataset(5):
        for image, label, real in zip(batch["image"].numpy(), batch["label"].numpy(),
                                      batch["is_real_example"].numpy()):
            if not real:
                continue
            seen += 1
            color = unnormalize(image).mean(axis=(0, 1))
            expected = COLORS[classes[label]]
            np.testing.assert_allclose(color, expected, atol=6)  # JPEG is lossy
    assert seen == 12


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_files_convert_losslessly_with_labels_and_offset(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (7, 28, 28))
    labels = np.array([0, 1, 2, 3, 4, 5, 9])
    write_idx(tmp_path / "images.gz", pixels)
    write_idx(tmp_path / "labels.gz", labels)
    images, classes = converter.images_from_idx(str(tmp_path / "images.gz"),
                                                str(tmp_path / "labels.gz"),
                                                converter.CLASS_NAME_SETS["fashion_mnist"])
    paths = converter.write_shards(images, classes, str(tmp_path / "out"), "test", 3,
                                   label_offset=1)
    records = [tf.train.Example.FromString(r.numpy())
               for path in paths for r in tf.data.TFRecordDataset(path)]
    by_name = {e.features.feature["image/filename"].bytes_list.value[0].decode(): e
               for e in records}
    for i in range(7):
        example = by_name[f"images-{i:06d}.png"]
        feature = example.features.feature
        assert feature["image/class/label"].int64_list.value[0] == labels[i] + 1
        assert feature["image/class/text"].bytes_list.value[0].decode() == classes[labels[i]]
        decoded = tf.io.decode_png(feature["image/encoded"].bytes_list.value[0]).numpy()
        np.testing.assert_array_equal(decoded[..., 0], pixels[i])
    # Reading with the offset gives back labels from 0.
    data = ImageInput(str(tmp_path / "out" / "test-*"), 10, 28, label_offset=1)
    read = sorted(int(l) for b in data.eval_dataset(7) for l in b["label"].numpy())
    assert read == sorted(labels.tolist())


def test_train_preprocessing_shapes_ranges_and_seeded_randomness():
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[:, :30] = 255  # left half white: flips and crops show
    encoded = tf.io.encode_png(pixels)
    outputs = [preprocessing.train_image(encoded, 16, tf.constant([7, i])).numpy()
               for i in range(40)]
    for image in outputs:
        assert image.shape == (16, 16, 3) and image.dtype == np.float32
        raw = unnormalize(image)
        assert raw.min() > -1 and raw.max() < 256
    again = preprocessing.train_image(encoded, 16, tf.constant([7, 0])).numpy()
    np.testing.assert_array_equal(again, outputs[0])
    left_brighter = [unnormalize(o)[:, :8].mean() > unnormalize(o)[:, 8:].mean() for o in outputs]
    assert 0 < sum(left_brighter) < 40  # flipped sometimes, not always
    assert len({o.tobytes() for o in outputs}) > 30  # crops differ


def test_eval_preprocessing_takes_the_central_87_5_percent():
    pixels = np.zeros((64, 96, 3), np.uint8)
    # crop side = 0.875 * 64 = 56, centred: rows 4..59, columns 20..75
    pixels[4:60, 20:76] = 200
    image = unnormalize(preprocessing.eval_image(tf.io.encode_png(pixels), 56).numpy())
    assert image.shape == (56, 56, 3)
    np.testing.assert_allclose(image, 200, atol=1e-3)


@pytest.mark.parametrize("num_pipelines, replicas, global_batch", [(1, 1, 4), (2, 2, 4)])
def test_eval_counts_every_image_exactly_once(tmp_path, num_pipelines, replicas, global_batch):
    images = [converter.LabelledImage(
        tf.io.encode_png(np.full((8, 8, 3), 10 * i, np.uint8)).numpy(), "png", i % 3, 8, 8, 3,
        f"{i}.png") for i in range(11)]
    converter.write_shards(images, ["a", "b", "c"], str(tmp_path), "validation", 2)
    data = ImageInput(str(tmp_path / "validation-*"), 3, 8)
    seen = []
    for pipeline in range(num_pipelines):
        context = tf.distribute.InputContext(num_pipelines, pipeline, replicas)
        batches = list(data.eval_dataset(global_batch, context))
        assert len(batches) == data.eval_steps(global_batch) * replicas // num_pipelines
        for b in batches:
            real = b["is_real_example"].numpy() == 1
            seen += [int(round(v / 10)) for v in unnormalize(b["image"].numpy()[real])[:, 0, 0, 0]]
    assert sorted(seen) == list(range(11))


def test_empty_folder_and_empty_class_are_named(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match="has no class subfolders"):
        converter.images_from_folder(str(tmp_path / "nothing"))
    (tmp_path / "some" / "cats").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"Class folder .*cats holds no images"):
        converter.images_from_folder(str(tmp_path / "some"))


def test_unreadable_image_is_named(class_folder):
    (class_folder / "red" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ValueError, match=r"red/broken\.jpg is not a readable image"):
        converter.images_from_folder(str(class_folder))


def test_labels_out_of_range_are_named_at_conversion_and_at_reading(tmp_path):
    write_idx(tmp_path / "images.gz", np.zeros((3, 4, 4)))
    write_idx(tmp_path / "labels.gz", np.array([0, 1, 5]))
    with pytest.raises(ValueError, match=re.escape("Label 5 of image 2 in")):
        converter.images_from_idx(str(tmp_path / "images.gz"), str(tmp_path / "labels.gz"),
                                  ["a", "b", "c"])
    images, classes = converter.images_from_idx(
        str(tmp_path / "images.gz"), str(tmp_path / "labels.gz"), [str(i) for i in range(6)])
    converter.write_shards(images, classes, str(tmp_path / "out"), "train", 1)
    data = ImageInput(str(tmp_path / "out" / "train-*"), num_classes=3, image_size=4)
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"out of range for num_classes=3 after label_offset=0"):
        list(data.eval_dataset(3))


def test_builtin_fashion_mnist_is_converted_once_from_the_package_files(tmp_path, monkeypatch):
    package = tmp_path / "fashion-mnist"
    package.mkdir()
    rng = np.random.default_rng(1)
    for stem, count in (("train", 9), ("t10k", 4)):
        write_idx(package / f"{stem}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(package / f"{stem}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    monkeypatch.setattr(builtin_data, "FASHION_MNIST_DIR", str(package))
    monkeypatch.setenv("LAMB_TF_DATA_DIR", str(tmp_path / "cache"))

    directory = builtin_data.ensure()
    for split, count in (("train", 9), ("validation", 4)):
        labels = sorted(int(l) for b in ImageInput(os.path.join(directory, f"{split}-*"), 10,
                                                    28).eval_dataset(count)
                        for l in b["label"].numpy())
        assert labels == sorted((np.arange(count) % 10).tolist())
    # A second call reuses the cache, even with the package gone.
    for path in package.iterdir():
        path.unlink()
    assert builtin_data.ensure() == directory


def test_missing_fashion_mnist_package_names_the_install_line(tmp_path, monkeypatch):
    monkeypatch.setattr(builtin_data, "FASHION_MNIST_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("LAMB_TF_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=re.escape(
            "sudo apt-get install dataset-fashion-mnist")):
        builtin_data.ensure()
