r"""python -m benchmarks.large_batch_study --preset=quick|cpu|gpu [--dry_run] [--workloads=...]
python -m benchmarks.large_batch_study --protocol=steps_to_target --preset=quick|cpu

The fixed-budget study writes results.csv, study.md and study.png into --output_dir (cpu:
benchmarks/results/large_batch_study_cpu, committed; others: runs/large_batch_study_<preset>);
the steps-to-target study targets.csv, targets.md and targets.png (cpu: benchmarks/results/
steps_to_target_cpu). Rerunning the same command skips finished runs, so a killed study
continues where it was.
"""

import os
import sys

from absl import app, flags

from benchmarks.large_batch_study import presets, protocol, report, steps_to_target
from benchmarks.large_batch_study import target_report
from benchmarks.large_batch_study.results import ResultsFile, TargetRecord

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

flags.DEFINE_enum("protocol", "fixed_budget", ["fixed_budget", "steps_to_target"],
                  "fixed_budget: accuracy at a fixed example budget; steps_to_target: updates "
                  "to reach a validation target (Shallue et al. 2019).")
flags.DEFINE_enum("preset", "quick", list(presets.PRESETS), "Which study to run.")
flags.DEFINE_string("output_dir", None, "Where results.csv, study.md and study.png go.")
flags.DEFINE_list("workloads", [], "Run only these workloads (fashion_cnn, bert).")
flags.DEFINE_bool("dry_run", False, "Print the runs and their estimated cost; train nothing.")
flags.DEFINE_bool("report_only", False, "Rewrite study.md and study.png from results.csv; "
                  "train nothing.")
flags.DEFINE_list("examples_per_sec", [],
                  "For --dry_run estimates: workload=rate pairs, e.g. bert=2500.")
flags.DEFINE_string("fashion_mnist_dir", None, "Fashion-MNIST idx files (default: the Debian "
                    "package dataset-fashion-mnist's folder).")
flags.DEFINE_string("bert_data_dir", None, "BERT pretraining shards with vocab.txt (default: "
                    "the built-in Wikipedia data, made on first use).")
FLAGS = flags.FLAGS


def default_output_dir(preset, study="large_batch_study"):
    if preset == "cpu":
        return os.path.join(REPO, "benchmarks", "results", f"{study}_cpu")
    return os.path.join(REPO, "runs", f"{study}_{preset}")


def make_workloads(preset, output_dir, fashion_mnist_dir=None, bert_data_dir=None):
    from benchmarks.large_batch_study import workloads
    made = {}
    for plan in preset.plans:
        options = dict(plan.options)
        if plan.workload == "fashion_cnn":
            made[plan.workload] = workloads.FashionCnn(
                fashion_mnist_dir or workloads.FASHION_MNIST_DIR)
        elif plan.workload == "bert":
            made[plan.workload] = workloads.Bert(os.path.join(output_dir, "bert_runs"),
                                                 data_dir=bert_data_dir, **options)
    return made


def write_report(preset, results, output_dir, module=report, name="study"):
    """name.md and name.png of `results` in output_dir, made by `module` (report or
    target_report)."""
    records = list(results.records.values())
    with open(os.path.join(output_dir, f"{name}.md"), "w") as f:
        f.write(module.markdown(preset, records))
    if records:
        module.plot(preset, records, os.path.join(output_dir, f"{name}.png"))


def run_study(preset, output_dir, only=(), log=print, fashion_mnist_dir=None,
              bert_data_dir=None):
    """The whole study (or the named workloads), resumed from output_dir/results.csv."""
    _check_workloads(preset, only)
    os.makedirs(output_dir, exist_ok=True)
    results = ResultsFile(os.path.join(output_dir, "results.csv"))
    study = protocol.Study(
        preset, results,
        make_workloads(preset, output_dir, fashion_mnist_dir, bert_data_dir), log=log,
        after_run=lambda: write_report(preset, results, output_dir))
    chosen = study.run(only or None)
    write_report(preset, results, output_dir)
    return chosen


def write_target_report(preset, results, output_dir):
    write_report(preset, results, output_dir, target_report, "targets")


def _check_workloads(preset, only):
    unknown = set(only) - {p.workload for p in preset.plans}
    if unknown:
        raise ValueError(f"Unknown workload(s) {sorted(unknown)}; preset {preset.name} has "
                         f"{[p.workload for p in preset.plans]}.")


def run_target_study(preset, output_dir, only=(), log=print, fashion_mnist_dir=None,
                     bert_data_dir=None):
    """The steps-to-target study, resumed from output_dir/targets.csv."""
    _check_workloads(preset, only)
    os.makedirs(output_dir, exist_ok=True)
    results = ResultsFile(os.path.join(output_dir, "targets.csv"), TargetRecord)
    study = steps_to_target.TargetStudy(
        preset, results,
        make_workloads(preset, output_dir, fashion_mnist_dir, bert_data_dir), log=log,
        after_run=lambda: write_target_report(preset, results, output_dir))
    chosen = study.run(only or None)
    write_target_report(preset, results, output_dir)
    return chosen


def _rates(pairs):
    rates = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            rates[name] = float(value)
        except ValueError:
            raise app.UsageError(f"--examples_per_sec expects workload=rate, got {pair!r}.")
    return rates


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.protocol == "steps_to_target":
        _steps_to_target()
        return
    preset = presets.PRESETS[FLAGS.preset]
    if FLAGS.dry_run:
        print("\n".join(protocol.describe_plan(preset, _rates(FLAGS.examples_per_sec))))
        return
    output_dir = FLAGS.output_dir or default_output_dir(FLAGS.preset)
    if FLAGS.report_only:
        write_report(preset, ResultsFile(os.path.join(output_dir, "results.csv")), output_dir)
        print(f"wrote {os.path.join(output_dir, 'study.md')} and study.png")
        return
    print(f"large-batch study, preset {preset.name}: results in {output_dir}", flush=True)
    try:
        run_study(preset, output_dir, FLAGS.workloads,
                  log=lambda line: print(line, flush=True),
                  fashion_mnist_dir=FLAGS.fashion_mnist_dir, bert_data_dir=FLAGS.bert_data_dir)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"done: {os.path.join(output_dir, 'study.md')}, study.png, results.csv")


def _steps_to_target():
    if FLAGS.preset not in presets.TARGET_PRESETS:
        raise app.UsageError(f"--protocol=steps_to_target has presets "
                             f"{sorted(presets.TARGET_PRESETS)}, not {FLAGS.preset!r}.")
    preset = presets.TARGET_PRESETS[FLAGS.preset]
    if FLAGS.dry_run:
        print("\n".join(steps_to_target.describe(preset)))
        return
    output_dir = FLAGS.output_dir or default_output_dir(FLAGS.preset, "steps_to_target")
    if FLAGS.report_only:
        write_target_report(preset, ResultsFile(os.path.join(output_dir, "targets.csv"),
                                                TargetRecord), output_dir)
        print(f"wrote {os.path.join(output_dir, 'targets.md')} and targets.png")
        return
    print(f"steps-to-target study, preset {preset.name}: results in {output_dir}", flush=True)
    try:
        run_target_study(preset, output_dir, FLAGS.workloads,
                         log=lambda line: print(line, flush=True),
                         fashion_mnist_dir=FLAGS.fashion_mnist_dir,
                         bert_data_dir=FLAGS.bert_data_dir)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    print(f"done: {os.path.join(output_dir, 'targets.md')}, targets.png, targets.csv")


if __name__ == "__main__":
    app.run(main)
