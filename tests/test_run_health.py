"""A broken pretraining run says so while it runs: weight norms that explode and a saturated
next-sentence pooler are warned about in the log; a healthy run is not."""

import json
import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import bert_runs
from trainers import health
from trainers import runner
from trainers.bert import task as bert_task


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bert_runs.make_data(str(tmp_path_factory.mktemp("health")))


def _run(data_dir, model_dir, learning_rate, num_train_steps=20, mode="train_and_eval"):
    experiment = bert_runs.experiment(
        data_dir, trainer={"num_train_steps": num_train_steps, "iterations_per_loop": 10,
                           "save_checkpoints_steps": num_train_steps},
        optimizer={"learning_rate": learning_rate, "num_warmup_steps": 1})
    return runner.run(bert_task.BertPretrainingTask(experiment.task), experiment, model_dir,
                      mode)


@pytest.fixture(scope="module")
def ten_steps(data_dir, tmp_path_factory):
    """The model_dir of a healthy 10-step run (rate 1e-3), for tests to copy."""
    model_dir = str(tmp_path_factory.mktemp("ten_steps"))
    _run(data_dir, model_dir, learning_rate=1e-3, num_train_steps=10, mode="train")
    return model_dir


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
            and ("Weight norms exploded" in r.getMessage() or "pooler is saturated"
                 in r.getMessage())]


def test_a_run_that_saturates_its_pooler_and_explodes_its_norms_is_warned_about(
        data_dir, tmp_path, caplog):
    # LAMB moves every adapted tensor by about lr x its norm per update: at 0.5 the norms
    # compound past 10x within 10 updates and the pooler's tanh ends at +-1.
    with caplog.at_level(logging.WARNING):
        results = _run(data_dir, str(tmp_path / "broken"), learning_rate=0.5)
    assert results["next_sentence_pooler_saturation"] > 0.9
    warned = _warnings(caplog)
    assert any("pooler is saturated" in w for w in warned), warned
    exploded = [w for w in warned if "Weight norms exploded" in w]
    assert exploded and "embeddings/embeddings" in " ".join(exploded)


def test_a_healthy_run_is_not_warned_about(data_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        results = _run(data_dir, str(tmp_path / "healthy"), learning_rate=1e-3)
    assert results["next_sentence_pooler_saturation"] < 0.05
    assert _warnings(caplog) == []


def test_norms_are_judged_against_step_0_also_after_a_resume(data_dir, tmp_path, ten_steps,
                                                             caplog):
    model_dir = bert_runs.copy_run(ten_steps, tmp_path / "resumed")
    with open(os.path.join(model_dir, health.START_NORMS_FILE)) as f:
        start = json.load(f)["norms"]
    # Ten times a variable's recorded start, as if the first run had exploded it: the resumed
    # run must judge by step 0's record, not by the norms it resumed with.
    experiment = bert_runs.experiment(data_dir, trainer={"num_train_steps": 20})
    task = bert_task.BertPretrainingTask(experiment.task)
    resumed = runner.Runner(task, experiment, model_dir)
    resumed.state.checkpoint.restore(tf.train.latest_checkpoint(model_dir))
    index, embeddings = next((i, v) for i, v in enumerate(resumed.state.model.trainable_variables)
                             if "word_embeddings" in health.variable_path(v))
    path = health.variable_path(embeddings)
    embeddings.assign(embeddings * (11.0 * start[index] / np.linalg.norm(embeddings.numpy())))
    norms, warnings = resumed.weight_norms.check(step=10)
    assert norms[index] == pytest.approx(11.0 * start[index], rel=1e-4)
    assert len(warnings) == 1 and path in warnings[0] and "(11x)" in warnings[0]
    # Once per variable: the next check does not repeat it.
    assert resumed.weight_norms.check(step=20)[1] == []


def test_a_fresh_start_records_its_own_norms_over_an_earlier_attempts(data_dir, tmp_path,
                                                                     caplog):
    # An earlier attempt, from other weights (another --init_checkpoint), died before its first
    # checkpoint: its step-0 record is left, its norms 1/41 of this run's.
    model_dir = str(tmp_path / "restarted")
    experiment = bert_runs.experiment(data_dir)
    weight_norms = runner.Runner(bert_task.BertPretrainingTask(experiment.task), experiment,
                                 model_dir).weight_norms
    stale = [norm / 41 for norm in weight_norms.norms()]
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, health.START_NORMS_FILE), "w") as f:
        json.dump({"step": 0, "paths": weight_norms.paths, "norms": stale}, f)
    with caplog.at_level(logging.WARNING):
        _run(data_dir, model_dir, learning_rate=1e-3, num_train_steps=10, mode="train")
    assert _warnings(caplog) == []
    with open(os.path.join(model_dir, health.START_NORMS_FILE)) as f:
        recorded = json.load(f)["norms"]
    # This run's own start: near the norms after 10 small steps, not 1/41 of them (variables
    # that start at zero, biases, are not judged by growth).
    finished = runner.Runner(bert_task.BertPretrainingTask(experiment.task), experiment,
                             model_dir)
    finished.state.checkpoint.restore(tf.train.latest_checkpoint(model_dir))
    judged = [(start, end) for start, end in zip(recorded, finished.weight_norms.norms())
              if start > 0]
    assert len(judged) > len(recorded) // 2
    for start, end in judged:
        assert start == pytest.approx(end, rel=0.1)


def test_pooler_saturation_is_the_share_of_tanh_outputs_beyond_the_bound():
    task = bert_task.BertPretrainingTask.__new__(bert_task.BertPretrainingTask)
    metrics = task.build_metrics()
    pooled = np.array([[0.995, -0.999, 0.1, 0.0], [0.5, 0.2, -0.3, 0.991],
                       [1.0, 1.0, 1.0, 1.0]], np.float32)
    features = {
        "masked_lm_ids": tf.zeros([3, 2], tf.int32),
        "masked_lm_weights": tf.ones([3, 2]),
        "next_sentence_labels": tf.zeros([3, 1], tf.int32),
        "is_real_example": tf.constant([1.0, 1.0, 0.0]),  # the third is padding
    }
    outputs = {"mlm_logits": tf.zeros([3, 2, 5]), "next_sentence": tf.zeros([3, 2]),
               bert_task.POOLED_OUTPUT: tf.constant(pooled)}
    task.update_metrics(metrics, features, outputs)
    saturation = next(m for m in metrics if m.name == "next_sentence_pooler_saturation")
    # Real examples only: 2 of 4, then 1 of 4.
    assert float(saturation.result()) == pytest.approx((0.5 + 0.25) / 2)


def test_a_model_dir_without_a_record_keeps_the_first_start_it_is_seen_at(data_dir, tmp_path,
                                                                          ten_steps):
    # A model_dir from before the check: its record is missing when training resumes at step 10.
    model_dir = bert_runs.copy_run(ten_steps, tmp_path / "old")
    os.remove(os.path.join(model_dir, health.START_NORMS_FILE))
    experiment = bert_runs.experiment(data_dir, trainer={"num_train_steps": 20})
    first = runner.Runner(bert_task.BertPretrainingTask(experiment.task), experiment, model_dir)
    first.state.checkpoint.restore(tf.train.latest_checkpoint(model_dir))
    baseline = first.weight_norms.start(step=10)
    with open(os.path.join(model_dir, health.START_NORMS_FILE)) as f:
        assert json.load(f) == {"step": 10, "paths": first.weight_norms.paths,
                                "norms": baseline}
    # A second restart judges against the same start, not its own, and says since when.
    second = runner.Runner(bert_task.BertPretrainingTask(experiment.task), experiment, model_dir)
    second.state.checkpoint.restore(tf.train.latest_checkpoint(model_dir))
    index, embeddings = next((i, v) for i, v in enumerate(second.state.model.trainable_variables)
                             if "word_embeddings" in health.variable_path(v))
    embeddings.assign(embeddings * (11.0 * baseline[index] / np.linalg.norm(embeddings.numpy())))
    _, warnings = second.weight_norms.check(step=15)
    assert len(warnings) == 1 and "since step 10" in warnings[0]


def test_eval_only_modes_read_the_weight_norm_record_and_never_write_it(data_dir, tmp_path,
                                                                       ten_steps, caplog):
    # They do not hold model_dir: a record written by them would become the trainer's start.
    model_dir = bert_runs.copy_run(ten_steps, tmp_path / "run")
    record = os.path.join(model_dir, health.START_NORMS_FILE)
    with open(record) as f:
        written_by_the_trainer = f.read()
    caplog.set_level(logging.INFO)
    for mode in ("eval", "continuous_eval"):
        with open(record, "w") as f:
            f.write(written_by_the_trainer)
        caplog.clear()
        _run(data_dir, model_dir, learning_rate=1e-3, num_train_steps=10, mode=mode)
        with open(record) as f:
            assert f.read() == written_by_the_trainer, mode
        assert any(m.startswith("weight norms at step 10, largest growth since step 0: ")
                   for m in caplog.messages), mode
        os.remove(record)  # as before the trainer's first start wrote it
        caplog.clear()
        results = _run(data_dir, model_dir, learning_rate=1e-3, num_train_steps=10, mode=mode)
        assert "masked_lm_accuracy" in results, mode
        assert not os.path.exists(record), mode
        assert not any(m.startswith("weight norms at step") for m in caplog.messages), mode
