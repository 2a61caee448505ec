"""Metrics over the eval set (every example once) at the model's current weights, and what
the task measures on the model itself (`task.model_eval_results`: BERT's linear probe).

Orbit's `StandardEvaluator` in our terms: a compiled eval loop, traced once and reused at every
checkpoint's evaluation, run in chunks so that a long eval says how far it is; the results go
to the log, TensorBoard (model_dir/eval) and, from the chief, model_dir/eval_results.json.
"""

import json
import os
import time

import tensorflow as tf
from absl import logging

from trainers import health
from trainers import storage
from trainers.data import files as files_lib

EVAL_RESULTS_FILE = "eval_results.json"
EVAL_REPORT_SECONDS = 10.0  # between progress lines of a long eval


class Evaluator:
    """Evaluates `model` on `task`'s eval data with `metrics` (built in the strategy's scope).

    `weight_norms`: the chief's `health.WeightNorms`, whose growth since the recorded start is
    logged with the results (None elsewhere).
    """

    def __init__(self, task, strategy, model, metrics, trainer, model_dir, weight_norms):
        self.task = task
        self.strategy = strategy
        self.model = model
        self.metrics = metrics
        self.trainer = trainer
        self.model_dir = model_dir
        self.weight_norms = weight_norms
        self._eval_loop = None

    def evaluate(self, step, writer, is_chief):
        """{metric name: value} at training step `step`; summaries go to `writer`, progress
        to the log every EVAL_REPORT_SECONDS, and the chief writes EVAL_RESULTS_FILE."""
        trainer, task = self.trainer, self.task
        task.validate_inputs("eval")
        steps = task.eval_steps(trainer.eval_batch_size)
        if trainer.max_eval_steps:
            steps = min(steps, trainer.max_eval_steps)
        dataset = self.strategy.distribute_datasets_from_function(
            lambda context: task.input_fn("eval", trainer.eval_batch_size, context))
        for metric in self.metrics:
            metric.reset_state()
        started = last_report = time.monotonic()
        eval_loop, iterator = self._make_eval_loop(), iter(dataset)
        chunk = max(1, min(steps, trainer.iterations_per_loop))
        with files_lib.naming_corrupt_file(task.input_files("eval")):
            for done in range(0, steps, chunk):
                eval_loop(iterator, tf.constant(min(chunk, steps - done)))
                if time.monotonic() - last_report > EVAL_REPORT_SECONDS and done + chunk < steps:
                    last_report = time.monotonic()
                    logging.info("eval: %d/%d steps after %.0f s", done + chunk, steps,
                                 last_report - started)
        results = {metric.name: float(metric.result()) for metric in self.metrics}
        results.update(task.model_eval_results(self.model))
        logging.info("eval at step %d (%d steps, %.1f s): %s", step, steps,
                     time.monotonic() - started,
                     "  ".join(f"{k} {v:.4f}" for k, v in results.items()))
        with writer.as_default(step=step):
            for name, value in results.items():
                tf.summary.scalar(name, value)
        self._log_weight_growth(step)
        health.log_warnings(task.health_warnings(results))
        if is_chief:
            tf.io.gfile.makedirs(self.model_dir)
            storage.write_text(os.path.join(self.model_dir, EVAL_RESULTS_FILE),
                               json.dumps({"step": step, **results}, indent=2))
        return results

    def _log_weight_growth(self, step):
        if not self.weight_norms:
            return
        # Read only: training records the start, and an eval-only run does not hold model_dir.
        start = self.weight_norms.start(step, record=False)
        if start is None:
            return
        logging.info("weight norms at step %d, largest growth since step %d: %s", step,
                     self.weight_norms.start_step,
                     self.weight_norms.largest_growth(self.weight_norms.norms(), start))

    def _make_eval_loop(self):
        if self._eval_loop is None:
            task, model, metrics, strategy = self.task, self.model, self.metrics, self.strategy

            def replica_step(features):
                outputs = model(task.model_inputs(features), training=False)
                task.update_metrics(metrics, features, outputs)

            @tf.function
            def eval_loop(iterator, num_steps):
                for _ in tf.range(num_steps):
                    strategy.run(replica_step, args=(next(iterator),))

            self._eval_loop = eval_loop
        return self._eval_loop
