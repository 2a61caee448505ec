r"""Prints what BERT pretraining TFRecords hold, for a human to check.

  python -m trainers.data.inspect_pretraining_data "/tmp/wiki/train-*.tfrecord" --num_examples=3

Per file: records, feature naming, max_seq_length and max_predictions_per_seq. Overall: tokens
per instance, targets per instance, the share of random-next pairs. Then a few decoded
instances, each masked position shown as {what the model sees -> the target}. The vocab is
--vocab_file, or vocab.txt next to the first file when there is one.
"""

import os

import numpy as np
import tensorflow as tf
from absl import flags

from trainers import cli
from trainers.data import files as files_lib
from trainers.data import pretraining_records
from trainers.data import wordpiece

flags.DEFINE_string("vocab_file", "", "Vocab to decode ids with (default: vocab.txt beside the "
                    "first file, if any).")
flags.DEFINE_integer("num_examples", 3, "Instances to print decoded.")
FLAGS = flags.FLAGS


def _decode(ids, vocab):
    return [vocab[i] if vocab and 0 <= i < len(vocab) else str(i) for i in ids]


def describe_instance(inputs, vocab):
    """One instance as text: segments A | B with masked positions as {seen -> target}."""
    length = int(inputs["input_mask"].sum())
    tokens = _decode(inputs["input_word_ids"][:length].tolist(), vocab)
    targets = {}
    for position, label, weight in zip(inputs["masked_lm_positions"], inputs["masked_lm_ids"],
                                       inputs["masked_lm_weights"]):
        if weight > 0:
            targets[int(position)] = _decode([int(label)], vocab)[0]
    shown = [f"{{{token} -> {targets[i]}}}" if i in targets else token
             for i, token in enumerate(tokens)]
    label = "random next" if inputs["next_sentence_labels"][0] == 1 else "actual next"
    return f"[{label}, {length} tokens, {len(targets)} targets] " + " ".join(shown)


def inspect(patterns, vocab_file="", num_examples=3, out=print):
    files = files_lib.expand_patterns(patterns, what="pretraining data")
    if not vocab_file and os.path.exists(os.path.join(os.path.dirname(files[0]), "vocab.txt")):
        vocab_file = os.path.join(os.path.dirname(files[0]), "vocab.txt")
    vocab = wordpiece.read_vocab(vocab_file) if vocab_file else None
    totals = {"records": 0, "tokens": 0, "targets": 0, "random_next": 0}
    examples = []
    for path in files:
        example = tf.train.Example.FromString(files_lib.first_record(path))
        naming = pretraining_records.naming_of(example)
        seq_length, predictions = pretraining_records.shapes_of(example, naming)
        parse = pretraining_records.parser(naming, seq_length, predictions)
        records = 0
        with files_lib.naming_corrupt_file([path]):
            for batch in tf.data.TFRecordDataset(path).batch(1024).map(parse):
                batch = {name: value.numpy() for name, value in batch.items()}
                records += len(batch["input_mask"])
                totals["tokens"] += int(batch["input_mask"].sum())
                totals["targets"] += int(np.sum(batch["masked_lm_weights"] > 0))
                totals["random_next"] += int(batch["next_sentence_labels"].sum())
                while len(examples) < num_examples and len(examples) < records:
                    i = len(examples) - (records - len(batch["input_mask"]))
                    examples.append({name: value[i] for name, value in batch.items()})
        totals["records"] += records
        names = "google-research/bert" if naming is pretraining_records.V1_NAMES else "v2"
        out(f"{path}: {records} records, {names} names, max_seq_length={seq_length}, "
            f"max_predictions_per_seq={predictions}")
    n = max(1, totals["records"])
    out(f"total: {totals['records']} records in {len(files)} files; "
        f"{totals['tokens'] / n:.1f} tokens and {totals['targets'] / n:.1f} masked-LM targets "
        f"per instance; random next sentence {totals['random_next'] / n:.1%}")
    for example in examples:
        out(describe_instance(example, vocab))
    return totals


def main(argv):
    if len(argv) < 2:
        cli.usage_error("Give the TFRecord files (paths or globs) to inspect.")
    try:
        inspect(",".join(argv[1:]), FLAGS.vocab_file, FLAGS.num_examples)
    except (ValueError, FileNotFoundError) as e:
        cli.user_error(e)


if __name__ == "__main__":
    cli.run(main)
