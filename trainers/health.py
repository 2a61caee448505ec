"""Signs that a run is going wrong, shown while it runs rather than found in a fine-tuning a
day later: weight norms that explode, and what the task checks in its eval results (BERT: a
saturated next-sentence pooler, see `trainers.bert.task`).

A layer-wise optimizer moves each tensor by a share of its own norm per update (LAMB: about
lr x ||w||), so a rate too high for a layer compounds: README command 1 at LAMB 0.03 grew its
word embeddings 20x over 1,200 updates and left an encoder that fine-tuned worse than random
weights. Each variable's norm is compared with its norm at step 0, recorded in the model_dir so
that a resumed run compares with the same start.
"""

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from lamb_tf.exclusions import variable_path
from trainers import storage

START_NORMS_FILE = "weight_norms_start.json"
# Growth of a variable's norm since step 0 that is warned about. Healthy runs measured here stay
# well below it (README, "Pretraining that pays off").
GROWTH_LIMIT = 10.0


class WeightNorms:
    """Per-variable weight norms for TensorBoard, and a warning when one grows past
    `growth_limit` times its norm at step 0 (variables that start at zero, biases, are not
    judged by growth)."""

    def __init__(self, variables, model_dir, growth_limit=GROWTH_LIMIT):
        self.paths = [variable_path(v) for v in variables]
        self.growth_limit = growth_limit
        self._start_file = os.path.join(model_dir, START_NORMS_FILE)
        self._start = None
        self.start_step = 0
        self._warned = set()
        # One device program and one transfer of a float per variable, as the savable check
        # reads the weights.
        self._norms = tf.function(lambda: tf.stack(
            [tf.norm(tf.cast(v, tf.float32)) for v in variables]))

    def norms(self):
        """[norm of each variable], in the order of `paths`."""
        return self._norms().numpy().tolist()

    def start(self, step, record=True):
        """The norms growth is judged against: step 0's, recorded when a fresh run starts and
        read back on resume. A model_dir without a usable record (made before this check) gets
        one at the step it is first seen, and the warnings then say "since step N".

        `record=False` (runs that do not hold model_dir, such as eval-only ones) only reads:
        None if there is no usable record, and nothing is written.

        At step 0 the norms now are step 0's, whatever a record says: a record there is of an
        earlier attempt that died before its first checkpoint, maybe from other weights.
        """
        if self._start is not None:
            return self._start
        text = storage.read_text(self._start_file) if step > 0 else None
        if text is not None:
            recorded = json.loads(text)
            if len(recorded["norms"]) == len(self.paths):
                self._start, self.start_step = recorded["norms"], recorded.get("step", 0)
        if self._start is None and record:
            self._start, self.start_step = self.norms(), step
            storage.write_text(self._start_file, json.dumps(
                {"step": step, "paths": self.paths, "norms": self._start}, indent=1))
        return self._start

    def check(self, step):
        """([norm of each variable], [warning lines]) at `step`; each variable is warned about
        once."""
        start = self.start(step)
        now = self.norms()
        grown = []
        for path, initial, norm in zip(self.paths, start, now):
            if path in self._warned or initial <= 0 or not np.isfinite(norm):
                continue
            if norm > self.growth_limit * initial:
                grown.append((norm / initial, path, initial, norm))
                self._warned.add(path)
        warnings = []
        if grown:
            grown.sort(reverse=True)
            named = ", ".join(f"{path} {initial:.3g} -> {norm:.3g} ({growth:.0f}x)"
                              for growth, path, initial, norm in grown[:3])
            more = f" and {len(grown) - 3} more" if len(grown) > 3 else ""
            warnings.append(
                f"Weight norms exploded at step {step}: {named}{more} since step "
                f"{self.start_step} (more than "
                f"{self.growth_limit:g}x). The learning rate is likely too high for these layers; "
                "lower it, or exclude them from layer adaptation.")
        return now, warnings

    def write_summaries(self, norms, start):
        """`weight_norm/<path>` scalars and the histogram of growth since the recorded start,
        into the default summary writer."""
        for path, norm in zip(self.paths, norms):
            tf.summary.scalar(f"weight_norm/{path}", norm)
        growth = [norm / initial for initial, norm in zip(start, norms) if initial > 0]
        if growth:
            tf.summary.histogram("weight_norm_growth", np.array(growth, np.float32))

    def largest_growth(self, norms, start, count=3):
        """'path 20.1x, path 3.2x, ...': the variables whose norms grew most since the start."""
        growth = sorted(((norm / initial, path) for path, initial, norm
                         in zip(self.paths, start, norms) if initial > 0), reverse=True)
        return ", ".join(f"{path} {g:.2f}x" for g, path in growth[:count])


def log_warnings(warnings):
    for line in warnings:
        logging.warning("%s", line)
