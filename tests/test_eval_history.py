"""benchmarks.eval_history reads back what a run's evaluations wrote to TensorBoard."""

import io
import os
import subprocess
import sys

import tensorflow as tf

from benchmarks import eval_history

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write(directory, step, values):
    # Summaries as the trainer's evaluator writes them (tf.summary.scalar, tensor-valued).
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
        for tag, value in values.items():
            tf.summary.scalar(tag, value, step=step)
    writer.close()


def test_histograms_beside_the_scalars_are_passed_over(tmp_path):
    # The trainer's train/ directory holds trust-ratio and norm-growth histograms too.
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        tf.summary.histogram("trust_ratio", [0.5, 1.0, 2.0], step=100)
        tf.summary.scalar("examples_per_second", 150.0, step=100)
    writer.close()
    assert list(eval_history.scalars(str(tmp_path))) == [(100, "examples_per_second", 150.0)]


def test_one_row_per_evaluation_by_step_with_a_reevaluated_step_keeping_its_last_value(
        tmp_path):
    eval_dir = str(tmp_path / "eval")
    _write(eval_dir, 200, {"masked_lm_accuracy": 0.25, "next_sentence_loss": 0.5})
    _write(eval_dir, 100, {"masked_lm_accuracy": 0.125, "next_sentence_loss": 0.75})
    # A resumed run evaluates step 200 again, in a later event file.
    _write(eval_dir, 200, {"masked_lm_accuracy": 0.375, "next_sentence_loss": 0.625})
    # File names end in a per-process counter, so the ninth and tenth writers of a process
    # sort "...10.v2" before "...9.v2": give the last file written the name that sorts first.
    newest = max(os.listdir(eval_dir), key=lambda name: int(name.split(".")[-2]))
    os.rename(os.path.join(eval_dir, newest),
              os.path.join(eval_dir, "events.out.tfevents.0000000000.host.1.10.v2"))
    rows = eval_history.history(str(tmp_path))
    assert rows == [{"step": 100, "masked_lm_accuracy": 0.125, "next_sentence_loss": 0.75},
                    {"step": 200, "masked_lm_accuracy": 0.375, "next_sentence_loss": 0.625}]
    out = io.StringIO()
    eval_history.write_csv(rows, out)
    assert out.getvalue().splitlines() == [
        "step,masked_lm_accuracy,next_sentence_loss", "100,0.125,0.75", "200,0.375,0.625"]
    table = eval_history.markdown(
        [{k: str(v) for k, v in r.items()} for r in rows],
        {"masked_lm_accuracy": ("masked-LM accuracy", ".1%")})
    assert table.splitlines() == ["| updates | 100 | 200 |", "|---|---:|---:|",
                                  "| masked-LM accuracy | 12.5% | **37.5%** |"]


def test_a_directory_without_evaluations_is_refused_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.eval_history",
                           f"--model_dir={tmp_path}"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path} has no eval/ directory")


def test_a_run_with_no_evaluation_yet_gives_a_table_without_figures():
    table = eval_history.markdown([], {"masked_lm_accuracy": ("masked-LM accuracy", ".1%")})
    assert "| masked-LM accuracy |" in table and "%" not in table
