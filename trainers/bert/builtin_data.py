"""The built-in pretraining data: the Wikipedia vital-article summaries as cached TFRecords."""

import os

import tensorflow as tf
from absl import logging

from trainers.data import create_pretraining_data as creator
from trainers.data.files import cache_root

BUILTIN = "builtin"
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
    description = os.path.join(directory, creator.DATA_DESCRIPTION_FILE)
    if not tf.io.gfile.exists(description):
        logging.info("Making the built-in pretraining data in %s (once; about a minute)...",
                     directory)
        creator.create(creator.CreationOptions(
            input_file=BUILTIN, output_dir=directory, vocab_size=VOCAB_SIZE,
            max_seq_length=max_seq_length, max_predictions_per_seq=max_predictions_per_seq,
            dupe_factor=DUPE_FACTOR, holdout_fraction=HOLDOUT_FRACTION,
            overwrite=True))  # our own cache: a killed first make leaves partial shards
    return directory
