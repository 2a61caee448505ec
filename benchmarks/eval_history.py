r"""A run's held-out evaluations as a table: one row per evaluation, read from the TensorBoard
summaries the trainer writes under `<model_dir>/eval`.

    python -m benchmarks.eval_history --model_dir=runs/tiny_wiki_lamb_hour \
        --output=benchmarks/results/tiny_wiki_lamb_hour_eval.csv

A step evaluated twice (a run resumed from a checkpoint before its last evaluation) keeps the
last value written. Without --output the CSV goes to standard output.
"""

import csv
import glob
import heapq
import os
import sys

from absl import app, flags


def scalars(directory):
    """(step, tag, value) of every scalar summary in `directory`'s event files, in the order
    written: the files merged by each event's wall time, since their names order by the second
    they were created and then by a per-process counter that sorts "10" before "9"."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    files = [tf.compat.v1.train.summary_iterator(path)
             for path in sorted(glob.glob(os.path.join(directory, "events*")))]
    for event in heapq.merge(*files, key=lambda e: e.wall_time):
        for value in event.summary.value:
            if not value.HasField("tensor"):
                yield event.step, value.tag, value.simple_value
                continue
            array = tf.make_ndarray(value.tensor)
            if array.shape == ():  # histograms (trust ratios, norm growth) are not scalars
                yield event.step, value.tag, float(array)


def history(model_dir):
    """[{"step": s, tag: value, ...}] per evaluation of the run in `model_dir`, by step."""
    by_step = {}
    for step, tag, value in scalars(os.path.join(model_dir, "eval")):
        by_step.setdefault(step, {})[tag] = value
    return [{"step": step, **values} for step, values in sorted(by_step.items())]


def write_csv(rows, stream):
    fields = ["step"] + sorted({tag for row in rows for tag in row} - {"step"})
    writer = csv.DictWriter(stream, fields)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()})


def markdown(rows, metrics):
    """A table with the evaluations as columns and `metrics` ({tag: (label, format)}) as rows,
    the last evaluation in bold."""
    lines = ["| updates | " + " | ".join(f"{int(r['step']):,}" for r in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    for tag, (label, form) in metrics.items():
        cells = [format(float(r[tag]), form) if r.get(tag, "") != "" else "" for r in rows]
        if cells and cells[-1]:
            cells[-1] = f"**{cells[-1]}**"
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    model_dir = flags.FLAGS.model_dir
    if not os.path.isdir(os.path.join(model_dir, "eval")):
        sys.exit(f"error: {model_dir} has no eval/ directory of summaries; pass the model_dir "
                 "of a run made with --mode=train_and_eval.")
    rows = history(model_dir)
    if flags.FLAGS.output:
        with open(flags.FLAGS.output, "w", newline="") as f:
            write_csv(rows, f)
    else:
        write_csv(rows, sys.stdout)


if __name__ == "__main__":
    flags.DEFINE_string("model_dir", None, "The run's model_dir.", required=True)
    flags.DEFINE_string("output", "", "The CSV to write (default: standard output).")
    app.run(main)
