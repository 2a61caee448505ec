r"""How much of a pair task's label the segment lengths alone tell: the shortcut check.

  python -m trainers.data.pair_lengths ~/.cache/lamb_tf/bert_wiki_seq128_pred20_vocab8000_dupe5

A classifier (scikit-learn's gradient-boosted trees) sees only the lengths of A, of B and of the
pair, is fit on pairs of the training shards (train-*) and scored on the held-out shards
(eval-*, documents it never saw). Near 50%: the lengths carry no label. On the built-in
summaries google-research/bert's pairs give 58.8% (a true B ends with its short document, a
random B is filled to length), which a model can learn without reading the text.
"""

import os

import numpy as np
import tensorflow as tf
from absl import flags

from trainers import cli
from trainers.data import files as files_lib
from trainers.data import pretraining_records

MAX_FIT_PAIRS = 20_000
MAX_HELD_OUT_PAIRS = 20_000


def pair_lengths(patterns, max_pairs):
    """([[len A, len B, len A + len B]], [label]) of the first `max_pairs` pairs of the files."""
    lengths, labels = [], []
    for path in files_lib.expand_patterns(patterns, what="pretraining data"):
        example = tf.train.Example.FromString(files_lib.first_record(path))
        naming = pretraining_records.naming_of(example)
        parse = pretraining_records.parser(
            naming, *pretraining_records.shapes_of(example, naming))
        with files_lib.naming_corrupt_file([path]):
            for batch in tf.data.TFRecordDataset(path).batch(1024).map(parse):
                mask = batch["input_mask"].numpy()
                segments = batch["input_type_ids"].numpy() * mask
                # [CLS] A [SEP] is segment 0, B [SEP] segment 1.
                length_b = segments.sum(1) - 1
                length_a = mask.sum(1) - segments.sum(1) - 2
                lengths.extend(zip(length_a, length_b, length_a + length_b))
                labels.extend(batch["next_sentence_labels"].numpy()[:, 0])
                if len(labels) >= max_pairs:
                    return np.array(lengths[:max_pairs]), np.array(labels[:max_pairs])
    return np.array(lengths), np.array(labels)


def lengths_only_accuracy(fit_patterns, held_out_patterns, max_fit_pairs=MAX_FIT_PAIRS,
                          max_held_out_pairs=MAX_HELD_OUT_PAIRS):
    """(held-out accuracy of the lengths-only classifier, held-out share of label 1)."""
    # pylint: disable-next=g-import-not-at-top
    from sklearn.ensemble import HistGradientBoostingClassifier
    fit_lengths, fit_labels = pair_lengths(fit_patterns, max_fit_pairs)
    held_out_lengths, held_out_labels = pair_lengths(held_out_patterns, max_held_out_pairs)
    if len(set(fit_labels.tolist())) < 2:
        raise ValueError(f"The pairs of {fit_patterns} all have label {fit_labels[0]}: nothing "
                         "to tell apart.")
    classifier = HistGradientBoostingClassifier(random_state=0).fit(fit_lengths, fit_labels)
    return (float(classifier.score(held_out_lengths, held_out_labels)),
            float(held_out_labels.mean()))


def check_directory(data_dir):
    """lengths_only_accuracy of a create_pretraining_data output_dir (train-* vs eval-*)."""
    fit, held_out = (os.path.join(data_dir, f"{split}-*.tfrecord") for split in ("train", "eval"))
    if not tf.io.gfile.isdir(data_dir):
        raise FileNotFoundError(f"{data_dir} is not a directory: give the --output_dir of "
                                "create_pretraining_data.")
    if not tf.io.gfile.glob(held_out):
        raise FileNotFoundError(f"{data_dir} has no eval-*.tfrecord shards to score on: make the "
                                "data with --holdout_fraction > 0, or give --fit and --held_out.")
    return lengths_only_accuracy(fit, held_out)


flags.DEFINE_string("fit", "", "Shards to fit on (instead of DATA_DIR/train-*).")
flags.DEFINE_string("held_out", "", "Shards to score on (instead of DATA_DIR/eval-*).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 2 or (len(argv) == 2) == bool(FLAGS.fit or FLAGS.held_out):
        cli.usage_error("Give one create_pretraining_data output_dir, or --fit and --held_out.")
    try:
        if len(argv) == 2:
            accuracy, share = check_directory(argv[1])
        else:
            accuracy, share = lengths_only_accuracy(FLAGS.fit, FLAGS.held_out)
    except (ValueError, FileNotFoundError) as e:
        cli.user_error(e)
    print(f"lengths-only classifier: {accuracy:.1%} held-out accuracy (label 1 is {share:.1%} of "
          "the held-out pairs; 50% = the lengths tell nothing)")


if __name__ == "__main__":
    cli.run(main)
