"""The vocab and the casing that travel with BERT data, pretraining runs and their exports:
`vocab.txt` and `tokenization.json`, written beside the shards by create_pretraining_data, kept
in a pretraining model_dir, copied into an export, and read back by fine-tuning."""

import json
import os

import tensorflow as tf

from trainers.data import create_pretraining_data as creator

TOKENIZATION_FILE = "tokenization.json"
VOCAB_FILE = "vocab.txt"


def data_tokenization(data_directory):
    """(vocab path or "", do_lower_case or None, tokenizer or None) that
    create_pretraining_data wrote beside its shards in `data_directory`; empty where the data
    does not say (made by another tool)."""
    vocab = os.path.join(data_directory, VOCAB_FILE)
    description = os.path.join(data_directory, creator.DATA_DESCRIPTION_FILE)
    settings = {}
    if tf.io.gfile.exists(description):
        with tf.io.gfile.GFile(description) as f:
            settings = json.load(f).get("settings", {})
    return (vocab if tf.io.gfile.exists(vocab) else "", settings.get("do_lower_case"),
            settings.get("tokenizer"))


def tokenization_record(do_lower_case, tokenizer=None):
    """The contents of TOKENIZATION_FILE: how the vocab's text was cut (the export's format)."""
    record = {"do_lower_case": do_lower_case}
    if tokenizer:
        record["tokenizer"] = tokenizer
    return json.dumps(record)


def recorded_lower_case(directory):
    """The do_lower_case of the TOKENIZATION_FILE in `directory`; None if there is none."""
    path = os.path.join(directory, TOKENIZATION_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        return json.load(f).get("do_lower_case")
