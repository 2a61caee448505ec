"""A linear probe: what a frozen encoder's features know about the built-in downstream tasks.

The features of a text are the encoder's final layer averaged over its real tokens; a logistic
regression (scikit-learn, which Model Garden brings) is fit on the task's training split and
scored on its dev split. No fine-tuning: a pretraining run whose probe does not beat the same
architecture at random weights has put nothing into its features that fine-tuning could not
have found from scratch (README command 1's encoder at 1,200 updates: 67.0%, as random
weights). Used by the pretraining task at each evaluation (task.probe_tasks) and by
benchmarks/finetune_probe.py.
"""

import time

import numpy as np
import tensorflow as tf

from trainers.bert.finetune import builtin_tasks
from trainers.bert.finetune import data as data_lib

BATCH_SIZE = 128
MAX_ITERATIONS = 3000
RESULT_PREFIX = "probe_accuracy/"


def pooled_features(encoder, arrays, batch_size=BATCH_SIZE):
    """([mean of the final layer over real tokens], [the [CLS] token's final layer]) of the
    tokenized `arrays` (trainers.bert.finetune.data.ClassificationInput.arrays), inference mode."""
    pooled, cls = [], []
    for start in range(0, len(arrays["input_mask"]), batch_size):
        inputs = {k: tf.constant(arrays[k][start:start + batch_size]) for k in data_lib.FEATURES}
        sequence = encoder(inputs, training=False)["sequence_output"].numpy().astype(np.float32)
        mask = arrays["input_mask"][start:start + batch_size, :, None].astype(np.float32)
        pooled.append((sequence * mask).sum(1) / np.maximum(mask.sum(1), 1.0))
        cls.append(sequence[:, 0])
    return np.concatenate(pooled), np.concatenate(cls)


def dev_accuracy(train_features, train_labels, dev_features, dev_labels):
    """Dev accuracy of a logistic regression fit on the training features."""
    from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
    probe = LogisticRegression(max_iter=MAX_ITERATIONS).fit(train_features, train_labels)
    return float(probe.score(dev_features, dev_labels))


def check_task_names(task_names):
    """Refuse task.probe_tasks that are not built-in tasks before any training is done."""
    unknown = [name for name in task_names if name not in builtin_tasks.TASKS]
    if unknown or not task_names:
        raise ValueError(f"task.probe_tasks={list(task_names)}: give built-in task names, "
                         f"from {list(builtin_tasks.TASKS)}.")


class LinearProbe:
    """The probe on built-in tasks (trainers.bert.finetune.builtin_tasks.TASKS), fit on each
    task's train split and scored on its dev split, tokenized once with the pretraining data's
    vocab."""

    def __init__(self, task_names, vocab, do_lower_case, max_seq_length):
        check_task_names(task_names)
        self.splits = {}
        for name in task_names:
            # The fine-tuning runs' class ids: every split's labels, sorted.
            labels = builtin_tasks.labels(name)
            self.splits[name] = {
                split: data_lib.ClassificationInput(
                    data_lib.builtin(name, split), vocab, do_lower_case, labels,
                    max_seq_length).arrays
                for split in ("train", "dev")}

    def accuracies(self, encoder):
        """{"probe_accuracy/<task>": dev accuracy} of the mean-pooled features of `encoder`."""
        results = {}
        for name, splits in self.splits.items():
            train, dev = splits["train"], splits["dev"]
            results[RESULT_PREFIX + name] = dev_accuracy(
                pooled_features(encoder, train)[0], train[data_lib.LABEL_KEY],
                pooled_features(encoder, dev)[0], dev[data_lib.LABEL_KEY])
        return results

    def timed_accuracies(self, encoder):
        """(accuracies, seconds they took)."""
        started = time.monotonic()
        return self.accuracies(encoder), time.monotonic() - started
