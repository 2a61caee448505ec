r"""Is the pretraining worth it downstream? Fine-tune each pretrained encoder and the same
architecture from random weights on a built-in task (bbc_news, reuters_r8, health_tweets), with
the same budget and rate grid, and report test accuracy at each one's best dev rate.

    python -m benchmarks.finetune_study --task=reuters_r8 --init_checkpoint=runs/tiny_wiki_lamb

Each run is `python -m trainers.bert.finetune --config_file=finetune_<task>` (train, then
`--mode=eval` on <task>:dev and on <task>:test), one row of --output (default
benchmarks/results/finetune_<task>.csv) per (init, rate, seed) as it finishes; rerunning the
command skips finished rows. The table, with the TF-IDF yardstick's rows, goes to the .md beside
it.
"""

import csv
import os
import re
import shutil
import statistics
import sys

from absl import app, flags

from benchmarks import trainer_process
from trainers.bert.finetune import builtin_tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("init", "learning_rate", "seed", "dev_accuracy", "test_accuracy")
RANDOM = "random"
TIE = 1e-4  # mean dev accuracies closer than the CSV's rounding are a tie

def _define_flags():
    """Defined only when run as a program, so that other studies can import run_one beside
    their own flags."""
    flags.DEFINE_string("task", "bbc_news", "The built-in task to fine-tune on (its config is "
                        "configs/bert/finetune_<task>.yaml): bbc_news, reuters_r8 or "
                        "health_tweets.")
    flags.DEFINE_multi_string("init_checkpoint", [], "Pretraining model_dirs, checkpoints or "
                              "exports to compare (the first one's architecture is also trained "
                              "from random weights).")
    flags.DEFINE_list("learning_rates", ["1e-4", "3e-4", "1e-3", "3e-3"], "Peak rates to try.")
    flags.DEFINE_list("seeds", ["1", "2"], "Seeds of each (init, rate).")
    flags.DEFINE_string("optimizer", "adamw", "trainers optimizer name.")
    flags.DEFINE_string("params_override", "", "Passed on to every run.")
    flags.DEFINE_string("output", "", "The results table (default: "
                        "benchmarks/results/finetune_<task>.csv).")
    flags.DEFINE_list("tfidf_words", [], "Words of each text the TF-IDF + logistic regression "
                      "yardstick reads, one row each (0: the whole text; default: the first 100 "
                      "and whole texts, or whole tweets for health_tweets).")
    flags.DEFINE_string("work_dir", "/tmp/finetune_study", "Where the runs' model_dirs go (each "
                        "is deleted once its row is written).")


FLAGS = flags.FLAGS

# Tweets are shorter than 100 words: a "first 100 words" row would repeat the whole-text one.
_TFIDF_WORDS = {"health_tweets": ["0"]}
_ACCURACY = re.compile(r"^eval: accuracy=([0-9.]+)", re.MULTILINE)


def _label(path):
    return os.path.basename(os.path.normpath(path))


def _finetune(task, arguments):
    return trainer_process.run("trainers.bert.finetune",
                               [f"--config_file=finetune_{task}", *arguments],
                               f"fine-tuning ({' '.join(arguments)})")


def run_one(task, init_checkpoint, random_init, learning_rate, seed, model_dir,
            optimizer="adamw", params_override=""):
    """(dev accuracy, test accuracy) of one fine-tuning run on the built-in `task` (its recipe
    configs/bert/finetune_<task>.yaml): trained on its train split, evaluated on dev, then on
    test; `params_override` is passed on."""
    override = (f"task.random_init={str(random_init).lower()},"
                f"task.train_data.input_path={task}:train")
    if params_override:
        override += "," + params_override
    if random_init:  # random weights have no trained pooler to start a head from
        override += ",task.init_cls_pooler=false"
    common = [f"--init_checkpoint={init_checkpoint}", f"--model_dir={model_dir}",
              f"--learning_rate={learning_rate}", f"--seed={seed}",
              f"--params_override=optimizer.name={optimizer},{override}"]
    shutil.rmtree(model_dir, ignore_errors=True)
    dev_override = common[-1] + f",task.eval_data.input_path={task}:dev"
    dev = float(_ACCURACY.search(_finetune(task, common[:-1] + [
        dev_override, "--mode=train_and_eval"])).group(1))
    test_override = common[-1] + f",task.eval_data.input_path={task}:test"
    test = float(_ACCURACY.search(_finetune(task, common[:-1] + [test_override, "--mode=eval"]))
                 .group(1))
    shutil.rmtree(model_dir, ignore_errors=True)
    return dev, test


def tfidf_baseline(first_words, task="bbc_news", inverse_regularizations=(1.0, 10.0, 100.0)):
    """(best C on dev, dev accuracy, test accuracy) of TF-IDF + logistic regression on the same
    split of a built-in task, reading each text's first `first_words` words (0: all), C chosen
    from `inverse_regularizations`. About a minute per task on 2 cores (health_tweets' whole
    grid: two): the yardstick a pretrained encoder has to beat."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
    from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
    from trainers.bert.finetune import data as data_lib  # pylint: disable=g-import-not-at-top

    def split(name):
        examples = data_lib.builtin(task, name)
        texts = [" ".join(t.split()[:first_words]) if first_words else t
                 for t in examples.texts]
        return texts, examples.labels

    (train_x, train_y), (dev_x, dev_y), (test_x, test_y) = map(split, ("train", "dev", "test"))
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    train_x = vectorizer.fit_transform(train_x)
    dev_x, test_x = vectorizer.transform(dev_x), vectorizer.transform(test_x)
    fits = {c: LogisticRegression(C=c, max_iter=3000).fit(train_x, train_y)
            for c in inverse_regularizations}
    best = max(fits, key=lambda c: fits[c].score(dev_x, dev_y))
    return best, fits[best].score(dev_x, dev_y), fits[best].score(test_x, test_y)


def tfidf_rows(task, words_list):
    lines = []
    for words in words_list:
        c, dev, test = tfidf_baseline(int(words), task)
        what = f"first {words} words" if int(words) else "whole texts"
        lines.append(f"| TF-IDF + logistic regression, {what} (no encoder) | C={c:g} | "
                     f"{dev:.1%} | {test:.1%} (deterministic) | |")
    return "\n".join(lines) + "\n"


def default_output(task):
    return os.path.join(REPO, "benchmarks", "results", f"finetune_{task}.csv")


def _read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def choose(rows, rates=None):
    """One encoder's rows: (chosen rate, the rates tied with it, {rate: its rows}). The chosen
    rate has the best mean dev accuracy among `rates` (default: every rate tried)."""
    by_rate = {}
    for r in sorted(rows, key=lambda r: float(r["learning_rate"])):
        if rates is None or r["learning_rate"] in rates:
            by_rate.setdefault(r["learning_rate"], []).append(r)
    mean_dev = {rate: mean_of(rs, "dev_accuracy") for rate, rs in by_rate.items()}
    # Accuracies are stored to 4 decimals: rates whose mean dev accuracy differs by less than
    # that rounding tie, and the lowest of them is taken, whatever order they were run in.
    top = max(mean_dev.values())
    tied = [rate for rate in by_rate if mean_dev[rate] >= top - TIE]
    return tied[0], tied[1:], by_rate


def mean_of(rows, field):
    """The mean of `field` over rows of the CSV."""
    return statistics.mean(float(r[field]) for r in rows)


def test_accuracies(rows):
    """"45.0% (44.9%, 45.3%, 45.0%)": the mean test accuracy of one rate's seeds, then each."""
    tests = [float(r["test_accuracy"]) for r in rows]
    return f"{statistics.mean(tests):.1%} ({', '.join(f'{t:.1%}' for t in tests)})"


def table(rows):
    """Markdown: per init, the best rate by mean dev accuracy and its test accuracies."""
    lines = ["| encoder | best rate (by dev) | dev accuracy | test accuracy | rates tried: "
             "mean dev accuracy |", "|---|---|---|---|---|"]
    for init in dict.fromkeys(r["init"] for r in rows):
        best, tied, by_rate = choose([r for r in rows if r["init"] == init])
        also = "".join(f" (tied on dev with {rate}: test "
                       f"{mean_of(by_rate[rate], 'test_accuracy'):.1%})" for rate in tied)
        lines.append(
            f"| {init} | {best} | {mean_of(by_rate[best], 'dev_accuracy'):.1%} | "
            f"{test_accuracies(by_rate[best])}{also} | "
            + ", ".join(f"{rate}: {mean_of(rs, 'dev_accuracy'):.1%}"
                        for rate, rs in by_rate.items()) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    if not FLAGS.init_checkpoint:
        sys.exit("error: pass --init_checkpoint (e.g. runs/tiny_wiki_lamb, README command 1).")
    task = FLAGS.task.strip().lower()
    if task not in builtin_tasks.TASKS:
        sys.exit(f"error: --task={FLAGS.task}: no such built-in task; choose one of "
                 f"{list(builtin_tasks.TASKS)}.")
    output = FLAGS.output or default_output(task)
    rows = _read(output)
    done = {(r["init"], r["learning_rate"], r["seed"]) for r in rows}
    inits = [(_label(p), p, False) for p in FLAGS.init_checkpoint]
    inits.append((f"{RANDOM} ({_label(FLAGS.init_checkpoint[0])}'s shape)",
                  FLAGS.init_checkpoint[0], True))
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    for label, path, random_init in inits:
        for rate in FLAGS.learning_rates:
            for seed in FLAGS.seeds:
                if (label, rate, seed) in done:
                    continue
                dev, test = run_one(task, path, random_init, rate, seed,
                                    os.path.join(FLAGS.work_dir, "run"), FLAGS.optimizer,
                                    FLAGS.params_override)
                new = not os.path.exists(output)
                with open(output, "a", newline="") as f:
                    writer = csv.DictWriter(f, FIELDS)
                    if new:
                        writer.writeheader()
                    writer.writerow({"init": label, "learning_rate": rate, "seed": seed,
                                     "dev_accuracy": dev, "test_accuracy": test})
                print(f"{label} rate {rate} seed {seed}: dev {dev:.2%}, test {test:.2%}",
                      flush=True)
    words = FLAGS.tfidf_words or _TFIDF_WORDS.get(task, ["100", "0"])
    summary = table(_read(output)) + tfidf_rows(task, words)
    with open(os.path.splitext(output)[0] + ".md", "w") as f:
        f.write(summary)
    print(summary)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
