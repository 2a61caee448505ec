"""The built-in pretraining data as cached TFRecords: the Wikipedia vital-article summaries
(`builtin`), those and the State of the Union addresses (`builtin_broad`, trainers/data/corpus.py
says what and under which terms), and the BBC News task's training articles (`bbc_news:train`)
for task-adaptive pretraining, tokenized with the Wikipedia data's vocab so that one encoder
reads both.

Each is made with the data config's `pair_task` and `do_whole_word_mask` (see
trainers/data/instances.py); a setting other than the default names its own cache directory,
so that shards of two settings never mix and the default's cache keeps its name."""

import hashlib
import os

import tensorflow as tf
from absl import logging

from trainers.data import create_pretraining_data as creator
from trainers.data.files import cache_root

BUILTIN = "builtin"
BUILTIN_BROAD = "builtin_broad"
BBC_NEWS_TRAIN = "bbc_news:train"
VOCAB_SIZE = 8000
DUPE_FACTOR = 5
HOLDOUT_FRACTION = 0.05
# The shards made with the creator's default pair task keep the names they had before the option.
DEFAULT_PAIR_TASK = creator.CreationOptions.pair_task
_CORPUS_NAMES = {BUILTIN: "wiki", BUILTIN_BROAD: "broad"}


def _settings_suffix(pair_task, do_whole_word_mask):
    """'' for the default settings (the caches made before these options keep their names)."""
    return ((f"_{pair_task}" if pair_task != DEFAULT_PAIR_TASK else "")
            + ("_wwm" if do_whole_word_mask else ""))


def ensure(max_seq_length, max_predictions_per_seq, corpus_name=BUILTIN,
           pair_task=DEFAULT_PAIR_TASK, do_whole_word_mask=False):
    """The directory of the built-in shards of `corpus_name` (`builtin` or `builtin_broad`)
    for these shapes and settings, made on first use; each corpus learns its own vocab.

    The description file is written last, so its presence means the shards are complete.
    """
    directory = os.path.join(
        cache_root(), f"bert_{_CORPUS_NAMES[corpus_name]}_seq{max_seq_length}_pred"
        f"{max_predictions_per_seq}_vocab{VOCAB_SIZE}_dupe{DUPE_FACTOR}"
        f"{_settings_suffix(pair_task, do_whole_word_mask)}")
    if not _complete(directory):
        logging.info("Making the built-in pretraining data in %s (once; a minute or a few)...",
                     directory)
        creator.create(creator.CreationOptions(
            input_file=corpus_name, output_dir=directory, vocab_size=VOCAB_SIZE,
            max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
            dupe_factor=DUPE_FACTOR, holdout_fraction=HOLDOUT_FRACTION, pair_task=pair_task,
            do_whole_word_mask=do_whole_word_mask,
            overwrite=True))  # our own cache: a killed first make leaves partial shards
    return directory


def ensure_bbc_news_train(max_seq_length, max_predictions_per_seq,
                          pair_task=DEFAULT_PAIR_TASK, do_whole_word_mask=False):
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
        f"{max_predictions_per_seq}_dupe{DUPE_FACTOR}"
        f"{_settings_suffix(pair_task, do_whole_word_mask)}_{digest.hexdigest()[:12]}")
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
            dupe_factor=DUPE_FACTOR, holdout_fraction=HOLDOUT_FRACTION, pair_task=pair_task,
            do_whole_word_mask=do_whole_word_mask, overwrite=True))
    return directory


def directory_of(input_path, max_seq_length, max_predictions_per_seq,
                 pair_task=DEFAULT_PAIR_TASK, do_whole_word_mask=False):
    """The shards' directory if `input_path` names built-in data, made with `pair_task` and
    `do_whole_word_mask`, else None."""
    name = input_path.strip()
    settings = dict(pair_task=pair_task, do_whole_word_mask=do_whole_word_mask)
    if name in _CORPUS_NAMES:
        return ensure(max_seq_length, max_predictions_per_seq, name, **settings)
    if not name.lower().startswith("bbc_news:"):
        return None  # one's own shards: the task checks the settings against their description
    split = name.split(":", 1)[1].strip().lower()
    if split == "train":
        return ensure_bbc_news_train(max_seq_length, max_predictions_per_seq, **settings)
    if split in ("dev", "test"):
        raise ValueError(f"input_path {name!r}: only {BBC_NEWS_TRAIN} can be pretrained on; the "
                         "dev and test articles judge the fine-tuning, so pretraining on them "
                         "would leak into its evaluation.")
    raise ValueError(f"input_path {name!r}: unknown BBC News split; pretraining reads "
                     f"{BBC_NEWS_TRAIN}.")


def _complete(directory):
    return tf.io.gfile.exists(os.path.join(directory, creator.DATA_DESCRIPTION_FILE))
