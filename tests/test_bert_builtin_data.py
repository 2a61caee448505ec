"""`bbc_news:train` as pretraining input: shards of the BBC News task's training articles only,
tokenized with the Wikipedia data's vocab; the dev and test articles are refused."""

import collections
import os
import re

import pytest
import tensorflow as tf

from trainers.bert import builtin_data
from trainers.bert.config import BertDataConfig, BertTaskConfig
from trainers.bert.finetune import data as task_data
from trainers.bert.task import BertPretrainingTask

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _words(texts):
    return collections.Counter(w for t in texts for w in re.findall(r"[a-z]+", t.lower()))


def test_bbc_news_train_shards_hold_only_the_training_articles_in_the_given_vocab(
        tmp_path, monkeypatch):
    train = _words(task_data.bbc_news("train").texts)
    held_out = _words(task_data.bbc_news("dev").texts + task_data.bbc_news("test").texts)
    # The stand-in for the Wikipedia vocab: words only the training articles have, and words
    # only the dev and test articles have. Ids of the second kind must never appear.
    train_only = [w for w, _ in train.most_common() if w not in held_out][:150]
    held_out_only = [w for w, _ in held_out.most_common() if w not in train][:150]
    vocab = SPECIAL + train_only + held_out_only
    wiki = tmp_path / "wiki"
    wiki.mkdir()
    (wiki / "vocab.txt").write_text("\n".join(vocab) + "\n")
    monkeypatch.setattr(builtin_data, "cache_root", lambda: str(tmp_path / "cache"))
    monkeypatch.setattr(builtin_data, "ensure", lambda *shape: str(wiki))
    monkeypatch.setattr(builtin_data, "DUPE_FACTOR", 1)

    directory = builtin_data.directory_of(" bbc_news:train", 64, 8)
    assert directory.startswith(str(tmp_path / "cache"))
    assert open(os.path.join(directory, "vocab.txt")).read().split() == vocab
    seen = collections.Counter()
    for path in tf.io.gfile.glob(os.path.join(directory, "*-*.tfrecord")):
        for record in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            ids = list(feature["input_ids"].int64_list.value)
            # The text's own tokens: masking put random vocab ids at some masked positions.
            for position, original, weight in zip(feature["masked_lm_positions"].int64_list.value,
                                                  feature["masked_lm_ids"].int64_list.value,
                                                  feature["masked_lm_weights"].float_list.value):
                if weight:
                    ids[position] = original
            seen.update(ids)
    first_held_out = len(SPECIAL) + len(train_only)
    assert sum(seen[i] for i in range(len(SPECIAL), first_held_out)) > 1_000
    assert sum(seen[i] for i in range(first_held_out, len(vocab))) == 0

    data = BertDataConfig(input_path="bbc_news:train", max_seq_length=64,
                          max_predictions_per_seq=8)
    task = BertPretrainingTask(BertTaskConfig(train_data=data, eval_data=data))
    assert sorted(task.inputs("train").files) == sorted(
        tf.io.gfile.glob(os.path.join(directory, "train-*.tfrecord")))
    assert builtin_data.directory_of("BBC_News: train", 64, 8) == directory  # cached
    (wiki / "vocab.txt").write_text("\n".join(vocab[:-1]) + "\n")
    assert builtin_data.directory_of("bbc_news:train", 64, 8) != directory  # another vocab


@pytest.mark.parametrize("split", ["dev", "test", " Test"])
def test_pretraining_on_the_articles_that_judge_fine_tuning_is_refused(split):
    with pytest.raises(ValueError, match="only bbc_news:train.*leak"):
        builtin_data.directory_of(f"bbc_news:{split}", 128, 20)


def test_an_unknown_bbc_news_split_is_named_as_such():
    with pytest.raises(ValueError, match="'bbc_news:training': unknown BBC News split"):
        builtin_data.directory_of("bbc_news:training", 128, 20)
