"""The built-in pretraining data as cached TFRecords: the Wikipedia vital-article summaries
(`builtin`), and the BBC News task's training articles (`bbc_news:train`) for task-adaptive
pretraining, tokenized with the Wikipedia data's vocab so that one encoder reads both."""

import hashlib
import os

import tensorflow as tf
from absl import logging

from trainers.data import create_pretraining_data as creator
from trainers.data.files import cache_root

BUILTIN = "builtin"
BBC_NEWS_TRAIN = "bbc_news:train"
VOCAB_SIZE = 8000
DUPE_FACTOR = 5
HOLDOUT_FRACTION = 0.05


def ensure(max_seq_length, max_predictions_per_seq):
    """The directory of the built-in shards for these shapes, made on first use.

    The description file is written last, so its presence means the shards are complete.
    """
    directory = os.path.join(
        cache_root(), f"bert_wiki_seq{max_seq_length}_pred{max_predictions_per_seq}_"
        f"vocab{VOCAB_SIZE}_dupe{DUPE_FACTOR}")
    if not _complete(directory):
        logging.info("Making the built-in pretraining data in %s (once; about a minute)...",
                     directory)
        creator.create(creator.CreationOptions(
            input_file=BUILTIN, output_dir=directory, vocab_size=VOCAB_SIZE,
            max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
            dupe_factor=DUPE_FACTOR, holdout_fraction=HOLDOUT_FRACTION,
            overwrite=True))  # our own cache: a killed first make leaves partial shards
    return directory


def ensure_bbc_news_train(max_seq_length, max_predictions_per_seq):
    """The directory of shards made from the text (not the topics) of the BBC News task's
    training articles, with the built-in Wikipedia data's vocab; made on first use. Its held-out
    shard is 5% of those training articles: the dev and test articles stay unseen."""
    from trainers.bert.finetune import data as task_data  # pylint: disable=g-import-not-at-top
    from trainers.data import corpus  # pylint: disable=g-import-not-at-top
    vocab = os.path.join(ensure(max_seq_length, max_predictions_per_seq), "vocab.txt")
    articles = task_data.bbc_news("train").texts
    # The name holds a digest of the articles and the vocab: were the split ever to change, a
    # cache made from the old training articles (some now dev or test) is not reused.
    digest = hashlib.sha256()
    for text in [*articles, tf.io.gfile.GFile(vocab).read()]:
        digest.update(hashlib.sha256(text.encode("utf-8")).digest())
    directory = os.path.join(
        cache_root(), f"bert_bbc_news_train_seq{max_seq_length}_pred"
        f"{max_predictions_per_seq}_dupe{DUPE_FACTOR}_{digest.hexdigest()[:12]}")
    if not _complete(directory):
        logging.info("Making pretraining data of the BBC News training articles in %s (once; "
                     "about a minute)...", directory)
        tf.io.gfile.makedirs(directory)
        text = os.path.join(directory, "bbc_news_train.txt")
        with open(text, "w", encoding="utf-8") as f:
            for article in articles:
                f.write("\n".join(corpus.split_sentences(article.strip())) + "\n\n")
        creator.create(creator.CreationOptions(
            input_file=text, output_dir=directory, vocab_file=vocab,
            max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
            dupe_factor=DUPE_FACTOR, holdout_fraction=HOLDOUT_FRACTION, overwrite=True))
    return directory


def directory_of(input_path, max_seq_length, max_predictions_per_seq):
    """The shards' directory if `input_path` names built-in data, else None."""
    name = input_path.strip()
    if name == BUILTIN:
        return ensure(max_seq_length, max_predictions_per_seq)
    if not name.lower().startswith("bbc_news:"):
        return None
    split = name.split(":", 1)[1].strip().lower()
    if split == "train":
        return ensure_bbc_news_train(max_seq_length, max_predictions_per_seq)
    if split in ("dev", "test"):
        raise ValueError(f"input_path {name!r}: only {BBC_NEWS_TRAIN} can be pretrained on; the "
                         "dev and test articles judge the fine-tuning, so pretraining on them "
                         "would leak into its evaluation.")
    raise ValueError(f"input_path {name!r}: unknown BBC News split; pretraining reads "
                     f"{BBC_NEWS_TRAIN}.")


def _complete(directory):
    return tf.io.gfile.exists(os.path.join(directory, creator.DATA_DESCRIPTION_FILE))
