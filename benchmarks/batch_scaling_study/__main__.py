r"""python -m benchmarks.batch_scaling_study [--plan | --report] [--work_dir=...] [--tasks=...]

Writes pretraining.csv and finetuning.csv (a row per finished run), study.md and study.png
into --output_dir; rerunning the same command skips finished runs and resumes the pretraining
it was in. Model_dirs go under --work_dir; only the chosen and the untuned encoders of each
cell stay there.
"""

import os
import shutil
import signal
import sys
import time

from absl import app, flags

from benchmarks.batch_scaling_study import protocol, report
from benchmarks.large_batch_study.results import ResultsFile

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_DEFAULT = protocol.Plan()

flags.DEFINE_bool("plan", False, "Print the runs in order and the estimated hours; run none.")
flags.DEFINE_bool("report", False, "Rewrite study.md and study.png from the CSVs; run none.")
flags.DEFINE_string("output_dir", os.path.join(REPO, "benchmarks", "results", "batch_scaling"),
                    "Where the CSVs, study.md and study.png go.")
flags.DEFINE_string("work_dir", "/tmp/batch_scaling_study", "Where the model_dirs go.")
flags.DEFINE_list("tasks", list(_DEFAULT.tasks), "Built-in downstream tasks, by name, that "
                  "the chosen and untuned encoders are fine-tuned and reported on; those of "
                  "--selection_tasks also choose each cell's setting.")
flags.DEFINE_list("selection_tasks", list(_DEFAULT.selection_tasks), "The tasks whose dev "
                  "accuracy chooses each cell's setting (empty: all --tasks); the others are "
                  "fine-tuned only from the chosen and untuned encoders (3 seeds each), which "
                  "saves a fine-tuning per task and pretraining run.")
flags.DEFINE_list("batches", [str(b) for b in _DEFAULT.batches], "Global pretraining batches.")
flags.DEFINE_integer("examples", _DEFAULT.examples, "Training examples at every batch.")
flags.DEFINE_integer("micro_batch", _DEFAULT.micro_batch, "Examples per device step; larger "
                     "batches accumulate micro-batches of this size.")
flags.DEFINE_integer("max_widenings", _DEFAULT.max_widenings, "Rates added past an edge of a "
                     "cell's grid while its best sits there, per side.")
flags.DEFINE_float("examples_per_sec", 200.0, "For --plan: pretraining speed to assume "
                   "(README: 196-213 on 2 CPU cores with nothing else running).")
flags.DEFINE_float("finetune_minutes", 1.8, "For --plan: minutes per fine-tuning run, "
                   "averaged over --tasks, test evaluation included (bbc_news about 1.5, "
                   "health_tweets about 1.8).")
FLAGS = flags.FLAGS


def make_plan():
    try:
        batches = tuple(int(b) for b in FLAGS.batches)
    except ValueError:
        raise app.UsageError(f"--batches takes integers, got {FLAGS.batches}.")
    plan = protocol.Plan(batches=batches, examples=FLAGS.examples,
                         micro_batch=FLAGS.micro_batch, max_widenings=FLAGS.max_widenings,
                         tasks=tuple(FLAGS.tasks),
                         selection_tasks=tuple(FLAGS.selection_tasks))
    plan.check()
    return plan


def results_files(output_dir):
    os.makedirs(output_dir, exist_ok=True)
    return (ResultsFile(os.path.join(output_dir, "pretraining.csv"), protocol.PretrainRecord),
            ResultsFile(os.path.join(output_dir, "finetuning.csv"), protocol.FinetuneRecord))


def write_report(plan, pretrainings, finetunings, output_dir):
    with open(os.path.join(output_dir, "study.md"), "w") as f:
        f.write(report.markdown(plan, pretrainings.records, finetunings.records))
    if pretrainings.records:
        report.plot(plan, pretrainings.records, finetunings.records,
                    os.path.join(output_dir, "study.png"))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        plan = make_plan()
        pretrainings, finetunings = results_files(FLAGS.output_dir)
    except ValueError as e:
        sys.exit(f"error: {e}")
    if FLAGS.plan:
        print("\n".join(protocol.describe(plan, pretrainings.records, finetunings.records,
                                          FLAGS.examples_per_sec, FLAGS.finetune_minutes)))
        return
    if not FLAGS.report:
        from benchmarks.batch_scaling_study import runs  # pylint: disable=g-import-not-at-top
        try:
            runs.check_tasks(plan.tasks)
        except ValueError as e:
            sys.exit(f"error: {e}")
        # Killed by its pid alone, the study takes its running trainer with it (subprocess.run
        # kills the child on any exception), so no orphan holds the model_dir's lock.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
        study = protocol.Study(
            plan, pretrainings, finetunings, FLAGS.work_dir, runs.pretrain(plan),
            runs.finetune(plan, FLAGS.work_dir), runs.tfidf, shutil.rmtree,
            log=lambda line: print(time.strftime("%H:%M:%S ") + line, flush=True),
            after_run=lambda: write_report(plan, pretrainings, finetunings, FLAGS.output_dir),
            clock=time.monotonic)
        try:
            study.run()
        except protocol.Refused as e:
            sys.exit(f"error: {e}")
    write_report(plan, pretrainings, finetunings, FLAGS.output_dir)
    print(f"wrote {os.path.join(FLAGS.output_dir, 'study.md')} and study.png")


if __name__ == "__main__":
    app.run(main)
