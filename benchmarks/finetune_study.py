r"""Is the pretraining worth it downstream? Fine-tune each pretrained encoder and the same
architecture from random weights on a built-in task (bbc_news, reuters_r8, health_tweets,
tweet_sentiment) or on your own train/dev/test tables, with the same budget and rate grid, and
report test accuracy at each one's best dev rate.

    python -m benchmarks.finetune_study --task=reuters_r8 --init_checkpoint=runs/tiny_wiki_lamb
    python -m benchmarks.finetune_study --init_checkpoint=runs/tiny_wiki_lamb \
        --train_data=train.csv --dev_data=dev.csv --test_data=test.csv --output=mine.csv

Each run is `python -m trainers.bert.finetune --config_file=finetune_<task>` (train, then
`--mode=eval` on the dev and on the test split), one row of --output (default for a built-in
task: benchmarks/results/finetune_<task>.csv) per (init, rate, seed) as it finishes; rerunning
the command skips finished rows. Own tables run on finetune_bbc_news's protocol (AdamW, warmup
over 10%, linear decay, batch 32) for --epochs of the train table. The table, with the TF-IDF
yardstick's rows, goes to the .md beside --output.
"""

import csv
import dataclasses
import math
import os
import re
import shutil
import statistics
import sys

import yaml
from absl import app, flags

from benchmarks import trainer_process
from trainers.bert.finetune import builtin_tasks
from trainers.bert.finetune import config as finetune_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ("init", "learning_rate", "seed", "dev_accuracy", "test_accuracy")
RANDOM = "random"
TIE = 1e-4  # mean dev accuracies closer than the CSV's rounding are a tie

def _define_flags():
    """Defined only when run as a program, so that other studies can import run_one beside
    their own flags."""
    flags.DEFINE_string("task", "bbc_news", "The built-in task to fine-tune on (its config is "
                        "configs/bert/finetune_<task>.yaml): bbc_news, reuters_r8, "
                        "health_tweets or tweet_sentiment. Or give --train_data, --dev_data "
                        "and --test_data.")
    flags.DEFINE_string("train_data", "", "Your own task instead of a built-in one: its training "
                        "table(s), .tsv or .csv with a header row (what task.train_data."
                        "input_path takes); needs --dev_data, --test_data and --output.")
    flags.DEFINE_string("dev_data", "", "Your task's dev table(s): the rate is chosen here.")
    flags.DEFINE_string("test_data", "", "Your task's test table(s): reported, never chosen on.")
    flags.DEFINE_string("text_column", "sentence", "Your tables' text column.")
    flags.DEFINE_string("text_b_column", "", "Your tables' second-text column, for pairs.")
    flags.DEFINE_string("label_column", "label", "Your tables' label column.")
    flags.DEFINE_integer("max_seq_length", 128, "Tokens per example on your tables.")
    flags.DEFINE_float("epochs", 4.0, "Passes over your train table per run (BERT's fine-tuning "
                       "runs 2-4), at batch 32 with 10% warmup.")
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
                      "and whole texts, or whole tweets for the tweet tasks).")
    flags.DEFINE_string("work_dir", "/tmp/finetune_study", "Where the runs' model_dirs go (each "
                        "is deleted once its row is written).")


FLAGS = flags.FLAGS

_TABLES_ONLY = ("epochs", "max_seq_length", "text_column", "text_b_column", "label_column")
# Tweets are shorter than 100 words: a "first 100 words" row would repeat the whole-text one.
_TFIDF_WORDS = {"health_tweets": ["0"], "tweet_sentiment": ["0"]}
_ACCURACY = re.compile(r"^eval: accuracy=([0-9.]+)", re.MULTILINE)


# The recipe whose protocol (AdamW, warmup then linear decay, batch 32, rate 1e-3) runs on tables
# of your own; what is specific to BBC News in it (updates, sequence length) is replaced.
TABLES_RECIPE = "finetune_bbc_news"
TABLES_BATCH_SIZE = 32
SPLITS = ("train", "dev", "test")


@dataclasses.dataclass(frozen=True)
class StudyTask:
    """What a study fine-tunes on: the recipe each run starts from, the input_path of each
    split and the tables' columns; for your own tables also their sequence length and updates
    (0: the recipe's)."""
    name: str
    config_file: str
    train: str
    dev: str
    test: str
    text_column: str = "sentence"
    text_b_column: str = ""
    label_column: str = "label"
    max_seq_length: int = 0
    num_train_steps: int = 0

    def data_config(self, split):
        """The ClassificationDataConfig that reads `split` ('train', 'dev' or 'test')."""
        return finetune_config.ClassificationDataConfig(
            input_path=getattr(self, split), text_column=self.text_column,
            text_b_column=self.text_b_column, label_column=self.label_column)

    def settings(self, split):
        """The settings that train on the train split and evaluate on `split`, over the
        recipe's: the nested keys of a config file, which carries paths and column names as
        they are (--params_override would split them at commas and read them as YAML)."""
        def data(path):
            columns = {"input_path": path, "text_column": self.text_column,
                       "text_b_column": self.text_b_column, "label_column": self.label_column}
            return dict(columns, max_seq_length=self.max_seq_length) if self.max_seq_length \
                else columns
        settings = {"task": {"train_data": data(self.train),
                             "eval_data": data(getattr(self, split))}}
        if self.num_train_steps:
            steps = self.num_train_steps
            settings["trainer"] = {"train_batch_size": TABLES_BATCH_SIZE,
                                   "num_train_steps": steps,
                                   "iterations_per_loop": math.ceil(steps / 4),
                                   "save_checkpoints_steps": steps}
            settings["optimizer"] = {"num_warmup_steps": round(steps / 10)}
        return settings


def builtin_task(name):
    """The built-in task `name` as its own recipe finetune_<name> runs it."""
    return StudyTask(name, f"finetune_{name}", f"{name}:train", f"{name}:dev", f"{name}:test")


def tables_task(train, dev, test, epochs=4.0, max_seq_length=128, text_column="sentence",
                text_b_column="", label_column="label"):
    """Your own train/dev/test tables as a StudyTask: `epochs` passes over the train table at
    batch 32 (rounded up to whole updates), the first 10% of them warming up. Every table is
    read now, so what would stop a run stops the study before its first: ValueError naming the
    table and the fix."""
    from trainers.bert.finetune import data as data_lib  # pylint: disable=g-import-not-at-top
    if not text_column or not label_column:
        raise ValueError("--text_column and --label_column must name columns of your tables.")
    if epochs <= 0 or max_seq_length < 8:
        raise ValueError(f"--epochs={epochs:g} --max_seq_length={max_seq_length}: give a positive "
                         "number of epochs and at least 8 tokens per example.")
    task = StudyTask("tables", TABLES_RECIPE, train, dev, test, text_column, text_b_column,
                     label_column, max_seq_length)
    examples = {}
    for split in SPLITS:
        try:
            examples[split] = data_lib.read(task.data_config(split))
        except ValueError as e:
            # The trainer's hint names its config keys; here they are this study's flags.
            message = str(e).replace("set task.<train|eval>_data.text_column / text_b_column / "
                                     "label_column", "set --text_column / --text_b_column / "
                                     "--label_column")
            path = getattr(task, split)
            raise ValueError(message if path in message else f"{path}: {message}") from e
    labels = set(examples["train"].labels)
    if len(examples["train"].labels) < TABLES_BATCH_SIZE:
        raise ValueError(f"{train} holds {len(examples['train'].labels)} examples, fewer than one "
                         f"batch of {TABLES_BATCH_SIZE}.")
    if len(labels) < 2:
        raise ValueError(f"{train} holds only the label {labels.pop()!r}: a classifier needs at "
                         "least two labels among the training examples.")
    for split in ("dev", "test"):
        unseen = sorted(set(examples[split].labels) - labels)
        if unseen:
            raise ValueError(f"{getattr(task, split)} has label {unseen[0]!r}, which {train} "
                             "never has: the classifier can only answer the train table's labels.")
    steps = math.ceil(epochs * len(examples["train"].labels) / TABLES_BATCH_SIZE)
    return dataclasses.replace(task, num_train_steps=steps)


def _from_here(paths):
    """Comma-separated table paths with the local relative ones made absolute: the trainer runs
    in the repository, the user names files from where the study was started."""
    return ",".join(
        path if "://" in path or os.path.isabs(path) or builtin_tasks.parse(path)
        else os.path.abspath(path) for path in (p.strip() for p in paths.split(",")))


def _label(path):
    return os.path.basename(os.path.normpath(path))


def _as_task(task):
    return builtin_task(task) if isinstance(task, str) else task


def _finetune(task, arguments):
    return trainer_process.run("trainers.bert.finetune",
                               [f"--config_file={task.config_file}", *arguments],
                               f"fine-tuning ({' '.join(arguments)})")


def run_one(task, init_checkpoint, random_init, learning_rate, seed, model_dir,
            optimizer="adamw", params_override=""):
    """(dev accuracy, test accuracy) of one fine-tuning run on `task` (a built-in task's name,
    run on its recipe configs/bert/finetune_<task>.yaml, or a StudyTask): trained on its train
    split, evaluated on dev, then on test; `params_override` is applied last."""
    task = _as_task(task)
    override = f"optimizer.name={optimizer},task.random_init={str(random_init).lower()}"
    if params_override:
        override += "," + params_override
    if random_init:  # random weights have no trained pooler to start a head from
        override += ",task.init_cls_pooler=false"
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(os.path.dirname(os.path.abspath(model_dir)), exist_ok=True)
    accuracies = []
    for split, mode in (("dev", "train_and_eval"), ("test", "eval")):
        # Absolute: the trainer runs in the repository, wherever the study was started.
        settings = os.path.abspath(f"{model_dir}_{split}.yaml")
        with open(settings, "w") as f:
            yaml.safe_dump(task.settings(split), f)
        try:
            output = _finetune(task, [
                f"--config_file={settings}", f"--init_checkpoint={init_checkpoint}",
                f"--model_dir={model_dir}", f"--learning_rate={learning_rate}",
                f"--seed={seed}", f"--params_override={override}", f"--mode={mode}"])
        finally:
            os.remove(settings)
        accuracies.append(float(_ACCURACY.search(output).group(1)))
    shutil.rmtree(model_dir, ignore_errors=True)
    return tuple(accuracies)


def tfidf_baseline(first_words, task="bbc_news", inverse_regularizations=(1.0, 10.0, 100.0)):
    """(best C on dev, dev accuracy, test accuracy) of TF-IDF + logistic regression on the same
    split of `task` (a built-in task's name or a StudyTask; a pair's two texts read as one),
    reading each text's first `first_words` words (0: all), C chosen from
    `inverse_regularizations`. About a minute per task on 2 cores (health_tweets' whole
    grid: two): the yardstick a pretrained encoder has to beat."""
    from sklearn.feature_extraction.text import TfidfVectorizer  # pylint: disable=g-import-not-at-top
    from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
    from trainers.bert.finetune import data as data_lib  # pylint: disable=g-import-not-at-top

    task = _as_task(task)

    def split(name):
        examples = data_lib.read(task.data_config(name))
        texts = examples.texts if examples.texts_b is None else [
            f"{a} {b}" for a, b in zip(examples.texts, examples.texts_b)]
        texts = [" ".join(t.split()[:first_words]) if first_words else t for t in texts]
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


def _task_and_output():
    """(StudyTask, results CSV) the flags name: your own tables or a built-in task; exits with
    a line naming the problem and the fix."""
    tables = [FLAGS.train_data, FLAGS.dev_data, FLAGS.test_data]
    if any(tables):
        if FLAGS["task"].present:
            sys.exit("error: give either --task (a built-in task) or --train_data, --dev_data "
                     "and --test_data (your own), not both.")
        if not all(tables) or not FLAGS.output:
            sys.exit("error: your own task needs --train_data, --dev_data, --test_data and "
                     "--output (the results table to write, e.g. --output=mine.csv).")
        import tensorflow as tf  # pylint: disable=g-import-not-at-top
        try:
            task = tables_task(*[_from_here(paths) for paths in tables], epochs=FLAGS.epochs,
                               max_seq_length=FLAGS.max_seq_length,
                               text_column=FLAGS.text_column,
                               text_b_column=FLAGS.text_b_column, label_column=FLAGS.label_column)
        except (ValueError, OSError, csv.Error, tf.errors.OpError) as e:
            sys.exit(f"error: {e}")
        return task, FLAGS.output
    name = FLAGS.task.strip().lower()
    if name not in builtin_tasks.TASKS:
        sys.exit(f"error: --task={FLAGS.task}: no such built-in task; choose one of "
                 f"{list(builtin_tasks.TASKS)}.")
    ignored = [f"--{flag}" for flag in _TABLES_ONLY if FLAGS[flag].present]
    if ignored:
        sys.exit(f"error: {', '.join(ignored)} apply to your own tables (--train_data ...); "
                 f"a built-in task runs on its recipe, configs/bert/finetune_{name}.yaml.")
    return builtin_task(name), FLAGS.output or default_output(name)


def main(argv):
    del argv
    if not FLAGS.init_checkpoint:
        sys.exit("error: pass --init_checkpoint (e.g. runs/tiny_wiki_lamb, README command 1).")
    task, output = _task_and_output()
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
                                    os.path.abspath(os.path.join(FLAGS.work_dir, "run")),
                                    FLAGS.optimizer,
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
    words = FLAGS.tfidf_words or _TFIDF_WORDS.get(task.name, ["100", "0"])
    summary = table(_read(output)) + tfidf_rows(task, words)
    with open(os.path.splitext(output)[0] + ".md", "w") as f:
        f.write(summary)
    print(summary)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
