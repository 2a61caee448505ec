"""The linear probe of a frozen encoder (trainers/bert/probe.py): features that carry the label
against a random encoder, the pooling against numpy, and its place in a pretraining run's eval."""

import collections
import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests import bert_runs
from trainers.bert import probe
from trainers.bert.config import BertModelConfig
from trainers.bert.finetune import data as data_lib
from trainers.bert.task import build_encoder, initializer_of

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_WORDS = 1000


@pytest.fixture(scope="module")
def bbc_probe():
    """The probe on BBC News with a word-level vocab of the training articles' commonest words
    (independent of any WordPiece learner)."""
    counts = collections.Counter(w for t in data_lib.bbc_news("train").texts
                                 for w in re.findall(r"[a-z]+", t.lower()))
    vocab = SPECIAL + [w for w, _ in counts.most_common(VOCAB_WORDS)]
    return probe.LinearProbe(["bbc_news"], vocab, True, 128), vocab


class BagOfWords:
    """A stand-in encoder whose every token's output is the one-hot of its id: mean-pooled, the
    word frequencies of the text, which carry its topic."""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    def __call__(self, inputs, training=False):
        return {"sequence_output": tf.one_hot(inputs["input_word_ids"], self.vocab_size)}


def word_frequencies(arrays, vocab_size):
    """The reference features: token counts over the real tokens, divided by their number."""
    rows = []
    for ids, mask in zip(arrays["input_word_ids"], arrays["input_mask"]):
        real = ids[mask == 1]
        rows.append(np.bincount(real, minlength=vocab_size) / len(real))
    return np.array(rows)


def test_pooling_averages_the_real_tokens_only(bbc_probe):
    linear_probe, vocab = bbc_probe
    # Every article fills 128 tokens: cut some short, as padding leaves shorter texts.
    dev = {k: v.copy() for k, v in linear_probe.splits["bbc_news"]["dev"].items()}
    for row, length in enumerate(range(5, 125, 7)):
        dev["input_word_ids"][row, length:] = 0
        dev["input_mask"][row, length:] = 0
    pooled, cls = probe.pooled_features(BagOfWords(len(vocab)), dev, batch_size=16)
    np.testing.assert_allclose(pooled, word_frequencies(dev, len(vocab)), atol=1e-6)
    np.testing.assert_array_equal(cls.argmax(1), vocab.index("[CLS]"))


class KnowsTheTopic:
    """A stand-in encoder whose every token's output is the one-hot of its article's topic (it
    looks the article up) plus noise: features that carry the label."""

    def __init__(self, splits, num_labels, seed=0):
        self.topics = {row.tobytes(): label for arrays in splits.values()
                       for row, label in zip(arrays["input_word_ids"], arrays[data_lib.LABEL_KEY])}
        self.num_labels = num_labels
        self.rng = np.random.default_rng(seed)

    def __call__(self, inputs, training=False):
        ids = inputs["input_word_ids"].numpy()
        topics = np.array([self.topics[row.tobytes()] for row in ids])
        features = np.eye(self.num_labels)[topics][:, None, :] + self.rng.normal(
            0, 0.5, (len(ids), ids.shape[1], self.num_labels))
        return {"sequence_output": tf.constant(features, tf.float32)}


def test_the_probe_tells_features_that_carry_the_topic_from_a_random_encoder(bbc_probe):
    linear_probe, vocab = bbc_probe
    splits = linear_probe.splits["bbc_news"]
    labels = splits["dev"][data_lib.LABEL_KEY]
    num_labels = len(data_lib.bbc_news_labels())
    knowing = linear_probe.accuracies(KnowsTheTopic(splits, num_labels))
    assert knowing == {"probe_accuracy/bbc_news": 1.0}

    tf.random.set_seed(1)
    config = BertModelConfig(size="tiny", vocab_size=len(vocab))
    random_encoder = build_encoder(config, initializer_of(config))
    random_accuracy = linear_probe.accuracies(random_encoder)["probe_accuracy/bbc_news"]
    majority = np.bincount(labels).max() / len(labels)
    # Mean-pooled random embeddings are a random projection of the words, which carry some of
    # the topic (README: 67% with the built-in vocab): above the majority class, below 95%.
    assert majority + 0.1 < random_accuracy < 0.95


def test_an_unknown_probe_task_and_a_too_long_probe_sequence_are_named(tmp_path):
    from trainers.bert.task import BertPretrainingTask
    with pytest.raises(ValueError, match=r"task.probe_tasks=\['bbc'\]: give built-in task names"):
        probe.LinearProbe(["bbc"], SPECIAL, True, 128)
    data = bert_runs.make_data(str(tmp_path))
    experiment = bert_runs.experiment(data, task={"probe_tasks": ["bbc_news"]})
    with pytest.raises(ValueError, match=r"task.probe_max_seq_length=128 is more than .*=32"):
        BertPretrainingTask(experiment.task)
    # Refused when the task is built, not at the first evaluation after training.
    experiment = bert_runs.experiment(data, task={"probe_tasks": ["bbc_news", "reuter_r8"],
                                                  "probe_max_seq_length": 32})
    with pytest.raises(ValueError, match=r"task.probe_tasks=\['bbc_news', 'reuter_r8'\]"):
        BertPretrainingTask(experiment.task)


def test_a_pretraining_run_logs_and_writes_the_probe_at_each_evaluation(tmp_path):
    from trainers import runner
    from trainers.bert.task import BertPretrainingTask
    data_dir = bert_runs.make_data(str(tmp_path / "data"))
    experiment = bert_runs.experiment(data_dir, task={"probe_tasks": ["bbc_news"],
                                                      "probe_max_seq_length": bert_runs.SEQ})
    model_dir = str(tmp_path / "run")
    results = runner.run(BertPretrainingTask(experiment.task), experiment, model_dir,
                         "train_and_eval")
    # The synthetic corpus's vocab has none of the articles' words: every article is [UNK]s,
    # so the probe can only tell articles by their lengths; it is still a share of the dev set.
    accuracy = results["probe_accuracy/bbc_news"]
    assert 0.0 < accuracy < 1.0
    recorded = json.load(open(os.path.join(model_dir, "eval_results.json")))
    assert recorded["probe_accuracy/bbc_news"] == accuracy
    written = []
    for path in tf.io.gfile.glob(os.path.join(model_dir, "eval", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "probe_accuracy/bbc_news":
                    written.append((event.step, float(tf.make_ndarray(value.tensor))))
    assert [step for step, _ in written] == [2, 4]
    assert written[-1][1] == pytest.approx(accuracy)
