"""create_pretraining_data against the google-research/bert reader and recipe."""

import collections
import dataclasses
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests import synthetic_text
from trainers.data import corpus
from trainers.data import create_pretraining_data as creator

# google-research/bert run_pretraining.py's input_fn_builder feature spec, written out here.
MAX_SEQ_LENGTH = 32
MAX_PREDICTIONS = 6


def original_feature_spec(max_seq_length, max_predictions_per_seq):
    return {
        "input_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "input_mask": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([max_seq_length], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([max_predictions_per_seq], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([max_predictions_per_seq], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }


def read_original(pattern, max_seq_length=MAX_SEQ_LENGTH, max_predictions=MAX_PREDICTIONS):
    files = sorted(tf.io.gfile.glob(pattern))
    spec = original_feature_spec(max_seq_length, max_predictions)
    rows = []
    for batch in tf.data.TFRecordDataset(files).batch(512).map(
            lambda r: tf.io.parse_example(r, spec)):
        batch = {k: v.numpy() for k, v in batch.items()}
        rows.extend({k: v[i] for k, v in batch.items()} for i in range(len(batch["input_ids"])))
    return rows


def make(tmp_path, name="out", **overrides):
    text_dir = tmp_path / "text"
    paths, vocab_path, documents = synthetic_text.write_corpus(
        str(text_dir), split_words=overrides.pop("split_words", False))
    options = creator.CreationOptions(
        input_file=",".join(paths), output_dir=str(tmp_path / name), vocab_file=vocab_path,
        max_seq_length=MAX_SEQ_LENGTH, max_predictions_per_seq=MAX_PREDICTIONS,
        dupe_factor=8, num_output_files=3, num_workers=1)
    options = dataclasses.replace(options, **overrides)
    description = creator.create(options)
    vocab = open(vocab_path).read().split("\n")
    return options, description, vocab, documents


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make(tmp_path_factory.mktemp("made"), dupe_factor=16)


def test_records_parse_with_the_original_bert_feature_spec_and_are_consistent(made):
    options, description, vocab, _ = made
    rows = read_original(os.path.join(options.output_dir, "train-*"))
    assert len(rows) == description["splits"]["train"]["instances"] > 500
    cls, sep = vocab.index("[CLS]"), vocab.index("[SEP]")
    for row in rows:
        length = int(row["input_mask"].sum())
        assert (row["input_mask"][:length] == 1).all() and (row["input_mask"][length:] == 0).all()
        assert (row["input_ids"][length:] == 0).all() and (row["segment_ids"][length:] == 0).all()
        ids = row["input_ids"][:length]
        separators = np.flatnonzero(ids == sep)
        assert ids[0] == cls and len(separators) == 2 and separators[1] == length - 1
        # segment 0 covers [CLS] A [SEP], segment 1 covers B [SEP]
        np.testing.assert_array_equal(row["segment_ids"][:length],
                                      np.arange(length) > separators[0])
        num_targets = int(row["masked_lm_weights"].sum())
        assert set(row["masked_lm_weights"]) <= {0.0, 1.0}
        assert (row["masked_lm_weights"][:num_targets] == 1).all()
        assert (row["masked_lm_positions"][num_targets:] == 0).all()
        assert row["next_sentence_labels"][0] in (0, 1)


def test_masking_follows_the_15_percent_and_80_10_10_recipe(made):
    options, _, vocab, _ = made
    rows = read_original(os.path.join(options.output_dir, "train-*"))
    cls, sep, mask = (vocab.index(t) for t in ("[CLS]", "[SEP]", "[MASK]"))
    outcomes = collections.Counter()
    for row in rows:
        length = int(row["input_mask"].sum())
        num_targets = int(row["masked_lm_weights"].sum())
        # google-research/bert: round(15% of all tokens), at least 1, at most the maximum.
        assert num_targets == min(MAX_PREDICTIONS, max(1, int(round(length * 0.15))))
        positions = row["masked_lm_positions"][:num_targets]
        assert (np.diff(positions) > 0).all()
        for position, label in zip(positions, row["masked_lm_ids"][:num_targets]):
            assert label not in (cls, sep), "[CLS]/[SEP] must never be a target"
            seen = row["input_ids"][position]
            assert seen not in (cls, sep)
            if seen == mask:
                outcomes["mask"] += 1
            elif seen == label:
                outcomes["kept"] += 1
            else:
                assert not vocab[seen].startswith("["), "random tokens are never special"
                outcomes["random"] += 1
    total = sum(outcomes.values())
    assert total > 5000
    assert abs(outcomes["mask"] / total - 0.8) < 0.02
    # A random draw can hit the label itself (1 in ~2400 here), which counts as "kept".
    assert abs(outcomes["kept"] / total - 0.1) < 0.015
    assert abs(outcomes["random"] / total - 0.1) < 0.015


def unmask(row):
    ids = row["input_ids"].copy()
    num_targets = int(row["masked_lm_weights"].sum())
    ids[row["masked_lm_positions"][:num_targets]] = row["masked_lm_ids"][:num_targets]
    return ids[:int(row["input_mask"].sum())]


def word_origin(word):
    doc, position = re.fullmatch(r"d(\d+)w(\d+)", word).groups()
    return int(doc), int(position)


def test_next_sentence_pairs_come_from_the_documents_and_are_near_half_random(made):
    options, _, vocab, documents = made
    rows = read_original(os.path.join(options.output_dir, "train-*"))
    sep = vocab.index("[SEP]")
    for row in rows:
        ids = unmask(row)
        first_sep = int(np.flatnonzero(ids == sep)[0])
        a = [word_origin(vocab[i]) for i in ids[1:first_sep]]
        b = [word_origin(vocab[i]) for i in ids[first_sep + 1:-1]]
        assert a and b
        for segment in (a, b):  # each segment is a contiguous run of one document
            assert len({doc for doc, _ in segment}) == 1
            assert [p for _, p in segment] == list(range(segment[0][1], segment[-1][1] + 1))
        if row["next_sentence_labels"][0] == 0:
            # B continues A at a sentence boundary (front/back truncation may trim words).
            assert a[0][0] == b[0][0] and a[-1][1] < b[0][1]
            words_per_sentence = 8
            untrimmed_b = (b[0][1] % words_per_sentence) == 0
            untrimmed_a = (a[-1][1] + 1) % words_per_sentence == 0
            assert untrimmed_a or untrimmed_b or b[0][1] - a[-1][1] < words_per_sentence
        else:
            assert a[0][0] != b[0][0]
    random_share = np.mean([row["next_sentence_labels"][0] for row in rows])
    assert 0.45 < random_share < 0.55


def test_same_seed_gives_byte_identical_shards_whatever_the_worker_count(tmp_path):
    one, _, _, _ = make(tmp_path, "one", num_workers=1, dupe_factor=2)
    two, _, _, _ = make(tmp_path, "two", num_workers=2, dupe_factor=2)
    other_seed, _, _, _ = make(tmp_path, "seed", num_workers=1, dupe_factor=2, random_seed=7)
    names = sorted(n for n in os.listdir(one.output_dir) if n.endswith(".tfrecord"))
    assert len(names) == 3
    for name in names:
        first = open(os.path.join(one.output_dir, name), "rb").read()
        assert first == open(os.path.join(two.output_dir, name), "rb").read()
        assert first != open(os.path.join(other_seed.output_dir, name), "rb").read()


def test_whole_word_masking_masks_all_pieces_of_a_word(tmp_path):
    options, _, vocab, _ = make(tmp_path, split_words=True, do_whole_word_mask=True,
                                dupe_factor=2)
    rows = read_original(os.path.join(options.output_dir, "train-*"))
    pairs = 0
    for row in rows:
        ids = unmask(row)
        positions = set(row["masked_lm_positions"][:int(row["masked_lm_weights"].sum())])
        for p in positions:
            if vocab[ids[p]].startswith("##"):
                # a continuation is only masked with its word's first piece
                assert p - 1 in positions or not vocab[ids[p - 1]].startswith("d")
            elif p + 1 < len(ids) and vocab[ids[p + 1]].startswith("##"):
                assert p + 1 in positions
                pairs += 1
    assert pairs > 100


def test_fast_and_bert_tokenizers_make_the_same_shards(tmp_path):
    fast, _, _, _ = make(tmp_path, "fast", tokenizer="fast", dupe_factor=1, split_words=True)
    bert, _, _, _ = make(tmp_path, "bert", tokenizer="bert", dupe_factor=1, split_words=True)
    for name in ("train-00000-of-00003.tfrecord", "train-00002-of-00003.tfrecord"):
        assert (open(os.path.join(fast.output_dir, name), "rb").read()
                == open(os.path.join(bert.output_dir, name), "rb").read())


def test_learned_vocab_and_holdout_split(tmp_path):
    text = tmp_path / "prose.txt"
    sentences = [f"The {animal} {verb} the {thing} near the {place}."
                 for animal in ("cat", "dog", "horse", "bird")
                 for verb in ("sees", "likes", "finds")
                 for thing in ("ball", "stick", "apple")
                 for place in ("river", "house", "hill", "barn")]
    with open(text, "w") as f:
        for start in range(0, len(sentences), 6):
            f.write("\n".join(sentences[start:start + 6]) + "\n\n")
    options = creator.CreationOptions(
        input_file=str(text), output_dir=str(tmp_path / "out"), vocab_size=200,
        max_seq_length=MAX_SEQ_LENGTH, max_predictions_per_seq=MAX_PREDICTIONS, dupe_factor=1,
        num_output_files=2, holdout_fraction=0.25, num_workers=1)
    description = creator.create(options)
    vocab = open(tmp_path / "out" / "vocab.txt").read().split()
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert {"cat", "horse", "river", "."} <= set(vocab) and len(vocab) <= 200
    splits = description["splits"]
    assert splits["train"]["documents"] == 18 and splits["eval"]["documents"] == 6
    assert len(read_original(str(tmp_path / "out" / "eval-*"))) == splits["eval"]["instances"]
    unk = vocab.index("[UNK]")
    assert all(unk not in unmask(row) for row in read_original(str(tmp_path / "out" / "train-*")))


def test_sentence_splitting_keeps_initials_abbreviations_and_decimals():
    paragraph = ('J. R. R. Tolkien taught at Oxford, in the U.K. from 1925. He wrote "The Hobbit." '
                 'Dr. Smith measured 3.5 m. on St. Kilda! Was it 1950? Yes (mostly). The end')
    assert corpus.split_sentences(paragraph) == [
        "J. R. R. Tolkien taught at Oxford, in the U.K. from 1925.", 'He wrote "The Hobbit."',
        "Dr. Smith measured 3.5 m. on St. Kilda!", "Was it 1950?", "Yes (mostly).", "The end"]


def test_builtin_corpus_is_read_from_the_installed_package():
    documents = corpus.read_builtin_documents()
    assert len(documents) > 10000
    sentences = [s for d in documents for s in d]
    assert 3.0 < len(sentences) / len(documents) < 5.0
    assert sum(len(s) for s in sentences) > 4_500_000
    assert all(s[-1] in '.!?"\')' for s in sentences[:200] if len(s) > 40)


@pytest.mark.parametrize("overrides, message", [
    (dict(vocab_file=""), "exactly one of --vocab_file"),
    (dict(max_seq_length=4), "--max_seq_length=4"),
    (dict(masked_lm_prob=1.5), "--masked_lm_prob=1.5"),
    (dict(dupe_factor=0), "--dupe_factor=0"),
    (dict(input_file="/nonexistent/*.txt"), "'/nonexistent/*.txt' matches no file"),
    (dict(holdout_fraction=0.99), "leaves fewer than 2 documents"),
])
def test_bad_creation_options_name_the_problem(tmp_path, overrides, message):
    with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)):
        make(tmp_path, **overrides)


def test_vocab_without_special_tokens_is_refused(tmp_path):
    vocab = tmp_path / "bad_vocab.txt"
    vocab.write_text("hello\nworld\n")
    with pytest.raises(ValueError, match=r"lacks the special tokens \['\[UNK\]', '\[CLS\]'"):
        make(tmp_path, vocab_file=str(vocab))


def test_work_without_a_count_says_it_is_alive_and_when_it_ends():
    import io
    import time
    from trainers.data.progress import Heartbeat
    stream = io.StringIO()
    with Heartbeat("learning the vocab", every=0.05, stream=stream):
        time.sleep(0.2)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "learning the vocab: started"
    assert any(line.startswith("learning the vocab: still working after") for line in lines)
    assert lines[-1].startswith("learning the vocab: done after")
