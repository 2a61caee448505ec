"""The BERT pretraining input_fn: reading, sharding, eval padding, and validation errors."""

import dataclasses
import logging
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests import synthetic_text
from trainers.bert.input_pipeline import PretrainingInput
from trainers.data import create_pretraining_data as creator
from trainers.data import files as files_lib

SEQ, PREDICTIONS = 32, 6


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("input")
    paths, vocab_path, _ = synthetic_text.write_corpus(str(root / "text"))
    creator.create(creator.CreationOptions(
        input_file=",".join(paths), output_dir=str(root / "data"), vocab_file=vocab_path,
        max_seq_length=SEQ, max_predictions_per_seq=PREDICTIONS, dupe_factor=2,
        num_output_files=4, holdout_fraction=0.2, num_workers=1))
    return root / "data"


def records(pattern):
    files = sorted(tf.io.gfile.glob(str(pattern)))
    return [r.numpy() for r in tf.data.TFRecordDataset(files)]


def input_ids_of(serialized):
    return tuple(tf.train.Example.FromString(serialized).features.feature["input_ids"]
                 .int64_list.value)


def context(num_pipelines, pipeline_id, replicas=None):
    return tf.distribute.InputContext(num_pipelines, pipeline_id, replicas or num_pipelines)


def test_train_batches_have_model_garden_names_static_shapes_and_file_values(data_dir):
    data = PretrainingInput(str(data_dir / "train-*"), SEQ, PREDICTIONS)
    dataset = data.train_dataset(8, seed=1)
    assert dataset.element_spec["input_word_ids"].shape == (8, SEQ)  # drop_remainder
    assert dataset.element_spec["masked_lm_weights"].shape == (8, PREDICTIONS)
    assert sorted(dataset.element_spec) == sorted([
        "input_word_ids", "input_mask", "input_type_ids", "masked_lm_positions",
        "masked_lm_ids", "masked_lm_weights", "next_sentence_labels",
        "data_position"])  # the runner's: it pops it before the model sees the batch
    assert dataset.element_spec["data_position"].shape == (8, 3)
    known = {input_ids_of(r) for r in records(data_dir / "train-*")}
    for batch in dataset.take(20):
        for row in batch["input_word_ids"].numpy():
            assert tuple(row) in known


def test_train_order_is_fixed_by_the_seed(data_dir):
    data = PretrainingInput(str(data_dir / "train-*"), SEQ, PREDICTIONS)
    first = [b["input_word_ids"].numpy() for b in data.train_dataset(8, seed=3).take(5)]
    again = [b["input_word_ids"].numpy() for b in data.train_dataset(8, seed=3).take(5)]
    other = [b["input_word_ids"].numpy() for b in data.train_dataset(8, seed=4).take(5)]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_each_pipeline_reads_its_own_files(data_dir):
    data = PretrainingInput(str(data_dir / "train-*"), SEQ, PREDICTIONS)
    by_file = {path: {input_ids_of(r) for r in records(path)} for path in data.files}
    seen = []
    for pipeline in range(2):
        rows = {tuple(row) for b in data.train_dataset(8, context(2, pipeline), seed=0).take(30)
                for row in b["input_word_ids"].numpy()}
        owned = set().union(*(by_file[p] for p in data.files[pipeline::2]))
        assert rows <= owned
        seen.append(rows)
    assert not seen[0] & seen[1]


def test_v2_feature_names_read_the_same(data_dir, tmp_path):
    renames = {"input_ids": "input_word_ids", "segment_ids": "input_type_ids"}
    v2_path = tmp_path / "v2.tfrecord"
    with tf.io.TFRecordWriter(str(v2_path)) as writer:
        for serialized in records(data_dir / "eval-*"):
            example = tf.train.Example.FromString(serialized)
            for old, new in renames.items():
                example.features.feature[new].CopyFrom(example.features.feature[old])
                del example.features.feature[old]
            writer.write(example.SerializeToString())
    v1 = PretrainingInput(str(data_dir / "eval-*"), SEQ, PREDICTIONS).eval_dataset(16)
    v2 = PretrainingInput(str(v2_path), SEQ, PREDICTIONS).eval_dataset(16)
    for a, b in zip(v1, v2):
        for name in a:
            np.testing.assert_array_equal(a[name].numpy(), b[name].numpy())


@pytest.mark.parametrize("num_pipelines, replicas, global_batch", [(1, 1, 7), (2, 2, 6), (2, 4, 8)])
def test_eval_counts_every_example_exactly_once(data_dir, num_pipelines, replicas, global_batch):
    data = PretrainingInput(str(data_dir / "eval-*"), SEQ, PREDICTIONS)
    expected = sorted(input_ids_of(r) for r in records(data_dir / "eval-*"))
    assert len(expected) % global_batch != 0  # the last batch must need padding
    steps = data.eval_steps(global_batch)
    seen = []
    for pipeline in range(num_pipelines):
        batches = list(data.eval_dataset(global_batch, context(num_pipelines, pipeline, replicas)))
        # every replica of this pipeline takes one batch per step
        assert len(batches) == steps * replicas // num_pipelines
        for batch in batches:
            assert batch["input_word_ids"].shape[0] == global_batch // replicas
            real = batch["is_real_example"].numpy() == 1
            seen.extend(tuple(r) for r in batch["input_word_ids"].numpy()[real])
            assert (batch["input_mask"].numpy()[~real] == 0).all()
    assert sorted(seen) == expected


def test_pattern_matching_nothing_names_the_pattern(data_dir):
    pattern = str(data_dir / "trian-*")
    with pytest.raises(FileNotFoundError, match=re.escape(f"{pattern!r} matches no file")):
        PretrainingInput(f"{data_dir}/train-*,{pattern}", SEQ, PREDICTIONS)


@pytest.mark.parametrize("seq, predictions, message", [
    (128, PREDICTIONS, f"max_seq_length={SEQ} but the config says max_seq_length=128"),
    (SEQ, 20, f"max_predictions_per_seq={PREDICTIONS} but the config says "
              "max_predictions_per_seq=20"),
])
def test_shape_mismatch_names_the_file_and_both_values(data_dir, seq, predictions, message):
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        PretrainingInput(str(data_dir / "train-*"), seq, predictions)
    assert "train-00000-of-00004.tfrecord was written with" in str(error.value)


def test_records_of_another_schema_are_named(tmp_path):
    path = tmp_path / "images.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(tf.train.Example().SerializeToString())
    with pytest.raises(ValueError, match="images.tfrecord: Records are not BERT pretraining"):
        PretrainingInput(str(path), SEQ, PREDICTIONS)


def test_fewer_files_than_pipelines_warns_and_shards_records(data_dir, caplog):
    data = PretrainingInput(str(data_dir / "eval-*"), SEQ, PREDICTIONS)
    assert len(data.files) == 1
    with caplog.at_level(logging.WARNING):
        rows = [{tuple(r) for b in data.train_dataset(4, context(2, p), seed=0).take(10)
                 for r in b["input_word_ids"].numpy()} for p in range(2)]
    assert "1 input files for 2 input pipelines" in caplog.text
    assert not rows[0] & rows[1]


def test_corrupt_record_names_the_file(data_dir, tmp_path):
    good = data_dir / "train-00001-of-00004.tfrecord"
    corrupt = tmp_path / "corrupt.tfrecord"
    content = bytearray(good.read_bytes())
    content[len(content) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(content))
    data = PretrainingInput(f"{good},{corrupt}", SEQ, PREDICTIONS)
    with pytest.raises(ValueError, match=r"Corrupt record in .*corrupt\.tfrecord after \d+ good"):
        with files_lib.naming_corrupt_file(data.files):
            for _ in data.eval_dataset(8):
                pass
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(good.read_bytes()[:20])  # a header and part of a record
    with pytest.raises(ValueError, match=r"truncated\.tfrecord is not a readable TFRecord"):
        PretrainingInput(str(truncated), SEQ, PREDICTIONS)


def test_inspect_prints_counts_and_shows_masks(data_dir):
    from trainers.data import inspect_pretraining_data
    lines = []
    totals = inspect_pretraining_data.inspect(str(data_dir / "eval-*"), num_examples=2,
                                              out=lines.append)
    assert totals["records"] == len(records(data_dir / "eval-*"))
    assert lines[0].endswith(f"max_seq_length={SEQ}, max_predictions_per_seq={PREDICTIONS}")
    assert len(lines) == 4 and lines[2].startswith("[") and "{[MASK] -> d" in lines[2] + lines[3]
