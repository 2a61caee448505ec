r"""What breaks a small-batch LAMB pretraining, by runs that separate the candidates.

    python -m benchmarks.pretraining_study                      # every variant, in order
    python -m benchmarks.pretraining_study --variants=lamb_0.03,adamw_1e-3

Each variant is the study's base with a few flags changed: README command 1's pretraining
(`configs/bert/tiny_wiki_lamb.yaml`, BERT-Tiny, batch 64) with google-research/bert's
random-next sentence pairs (STUDY_BASE; command 1 makes sentence-order pairs). Per variant, one
row of --output: held-out masked-LM and next-sentence accuracy, the next-sentence pooler's
saturation (share of its tanh outputs beyond +-0.99 on 1,024 held-out pairs) and the spread of
its outputs across inputs, the growth of the word embeddings' and the largest tensor norm since
initialization, and a linear probe of the frozen encoder on BBC News (logistic regression on
the final layer averaged over tokens, dev accuracy; `benchmarks.finetune_probe`; random weights
of the same shape: 67.0%).

A killed study resumes: finished rows are skipped, and a variant's pretraining resumes from its
model_dir's last checkpoint.
"""

import csv
import os
import re
import sys

import numpy as np
from absl import app, flags

from benchmarks import trainer_process

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPE = "configs/bert/tiny_wiki_lamb.yaml"

# name: (what it separates, flags on top of the recipe). The recipe is LAMB 0.005 for 2,400
# updates since this study; before, LAMB 0.03 for 1,200.
_SHORT = ["--num_train_steps=1200", "--num_warmup_steps=120"]
VARIANTS = {
    "lamb_0.03": ("the recipe before this study", ["--learning_rate=0.03", *_SHORT]),
    "adamw_1e-3": ("LAMB or the rest (data, model, trainer)?",
                   ["--learning_rate=0.001", *_SHORT, "--params_override=optimizer.name=adamw"]),
    "lamb_0.005": ("the rate", ["--learning_rate=0.005", *_SHORT]),
    "lamb_0.005_2400": ("twice the updates at a rate that does not explode (the recipe now)",
                        []),
    "lamb_0.005_no_dropout": ("dropout in a short pretraining", [
        "--learning_rate=0.005", *_SHORT,
        "--params_override=task.model.dropout_rate=0.0,task.model.attention_dropout_rate=0.0"]),
    # At the rate that broke the recipe: would sparing the embeddings and the next-sentence
    # pooler from layer adaptation, or bounding ||w|| in the trust ratio, have saved it?
    "lamb_0.03_adapt_no_embeddings_pooler": (
        "layer adaptation on the embeddings and the pooler",
        ["--learning_rate=0.03", *_SHORT, "--params_override=optimizer.lamb."
         "exclude_from_layer_adaptation=[LayerNorm, layer_norm, bias, embeddings, pooler_dense]"]),
    "lamb_0.03_norm_bounds": (
        "the trust ratio's bounds (phi clipping ||w|| to at most 10; the word embeddings start "
        "near 20, the kernels near 3)",
        ["--learning_rate=0.03", *_SHORT,
         "--params_override=optimizer.lamb.weight_norm_bounds=[0.0, 10.0]"]),
}


def _both_splits(**fields):
    """A params_override setting each built-in data field on train and eval alike (the eval
    would otherwise score another task than the one trained)."""
    return "--params_override=" + ",".join(
        f"task.{split}.{field}={value}"
        for field, value in fields.items() for split in ("train_data", "eval_data"))


# The study's variants were defined on command 1 with random-next sentence pairs; they keep those
# pairs, so that each committed row reruns as it was measured. A variant's own --params_override
# comes after and wins.
STUDY_BASE = _both_splits(pair_task="random_next")


def on_study_base(extra_flags):
    """`extra_flags` with STUDY_BASE's overrides put in front of the variant's own."""
    prefix = "--params_override="
    overrides = [f[len(prefix):] for f in [STUDY_BASE, *extra_flags] if f.startswith(prefix)]
    return ([f for f in extra_flags if not f.startswith(prefix)]
            + [prefix + ",".join(overrides)])


# What makes the encoder transfer beyond topic words (issue 39): each is the study's base (command
# 1 as it was then) with one thing changed, judged by fine-tuning on BBC News and health_tweets
# beside the base's encoder and random weights (benchmarks.finetune_study;
# docs/results/finetuning.md).
LEVERS = {
    "lever_sentence_order": (
        "next-sentence pairs without the length shortcut: ALBERT's sentence order",
        [_both_splits(pair_task="sentence_order")]),
    "lever_random_next_matched": (
        "next-sentence pairs without the length shortcut: a random B as long as the true one",
        [_both_splits(pair_task="random_next_matched")]),
    "lever_whole_word_mask": ("masking whole words", [_both_splits(do_whole_word_mask="true")]),
    "lever_broad_corpus": (
        "a broader corpus: the Wikipedia summaries and the State of the Union addresses",
        [_both_splits(input_path="builtin_broad")]),
}
VARIANTS.update(LEVERS)
# Each lever's encoder is fine-tuned at these rates, seeds 1-3; the base's encoder and random
# weights are judged on the same grid (they were run at more rates: docs/results/finetuning.md).
LEVER_RATES = {"bbc_news": ("1e-3", "3e-3"), "health_tweets": ("3e-4", "1e-3")}
BASELINE = "lamb_0.005_2400"  # the study's base, command 1 before the levers; its fine-tuning
BASELINE_ENCODER = "tiny_wiki_lamb_random_next"  # label (a model_dir's name)
# The lever that became README command 1 (configs/bert/tiny_wiki_lamb.yaml): the same run, so its
# fine-tuning rows carry command 1's label.
COMMAND_1_LEVER = "lever_sentence_order"
COMMAND_1_ENCODER = "tiny_wiki_lamb"
RANDOM_ENCODER = f"random ({COMMAND_1_ENCODER}'s shape)"


def _study_cell(optimizer, batch, rate):
    """One best cell of the large-batch study's BERT part (the rate its first seed chose, which
    its second seed reran): 25,600 examples at `batch`, warmup 10% then linear decay
    (benchmarks/results/large_batch_study_cpu). Its rates were chosen by masked-LM accuracy
    alone; these reruns ask whether the winning runs are healthy encoders or masked-LM bought
    with a rate that breaks them. They run on command 1's model, whose embedding tables have
    8,000 rows and 512 positions (the study's: 7,707 and 128), and on its seed."""
    updates = 25_600 // batch
    extra = [f"--train_batch_size={batch}", f"--num_train_steps={updates}",
             f"--num_warmup_steps={updates // 10}", f"--learning_rate={rate}"]
    if optimizer != "lamb":
        extra.append(f"--params_override=optimizer.name={optimizer}")
    return (f"the large-batch study's best {optimizer} cell at batch {batch}", extra)


VARIANTS.update({
    f"study_{optimizer}_b{batch}": _study_cell(optimizer, batch, rate)
    for optimizer, batch, rate in (("lamb", 16, 0.015), ("adamw", 16, 0.002),
                                   ("lamb", 32, 0.0212132), ("adamw", 32, 0.00141421),
                                   ("lamb", 64, 0.015), ("adamw", 64, 0.001))})
FIELDS = ("variant", "question", "flags", "masked_lm_accuracy", "next_sentence_accuracy",
          "pooler_saturation", "pooler_spread", "word_embedding_growth", "largest_growth",
          "largest_growth_variable", "probe_dev_accuracy")

def _define_flags():
    """Defined only when run as a program, so that tests can import VARIANTS beside the other
    benchmarks' flags."""
    flags.DEFINE_list("variants", list(VARIANTS), "Which variants to run, in order.")
    flags.DEFINE_string("output", os.path.join(REPO, "benchmarks", "results",
                                               "pretraining_study.csv"), "The results table.")
    flags.DEFINE_string("work_dir", "/tmp/pretraining_study", "Where the runs' model_dirs stay "
                        "(kept: fine-tune them with benchmarks.finetune_study).")


FLAGS = flags.FLAGS

_PROBE = re.compile(r"pretrained encoder, mean over tokens: dev accuracy ([0-9.]+)%")


def pretrain(model_dir, extra_flags, mode="train_and_eval"):
    """Trains (or resumes) README command 1's pretraining with `extra_flags` in `model_dir`;
    raises trainer_process.Diverged when the run went NaN or Inf, exits on any other failure."""
    trainer_process.run("trainers.bert", [f"--config_file={RECIPE}", f"--mode={mode}",
                                          f"--model_dir={model_dir}", *extra_flags],
                        f"pretraining {model_dir}")


def probe(model_dir):
    printed = trainer_process.run("benchmarks.finetune_probe",
                                  [f"--init_checkpoint={model_dir}"], f"the probe of {model_dir}")
    found = _PROBE.search(printed)
    if not found:
        sys.exit(f"error: the probe of {model_dir} printed no accuracy:\n{printed[-3000:]}")
    return float(found.group(1)) / 100


def diagnose(model_dir, eval_examples=1024):
    """Eval accuracies, pooler saturation and norm growth of a finished pretraining run."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tf_keras  # pylint: disable=g-import-not-at-top
    from trainers.bert import pretrained  # pylint: disable=g-import-not-at-top
    from trainers.bert import task as bert_task  # pylint: disable=g-import-not-at-top

    experiment = pretrained.pretraining_experiment(model_dir)
    task = bert_task.BertPretrainingTask(experiment.task)
    tf_keras.utils.set_random_seed(experiment.runtime.seed)
    initial = [np.linalg.norm(v.numpy()) for v in task.build_model().trainable_variables]
    model = task.build_model()
    tf.train.Checkpoint(model=model).read(tf.train.latest_checkpoint(model_dir)).expect_partial()
    growth = {v.name.split(":")[0]: np.linalg.norm(v.numpy()) / norm
              for v, norm in zip(model.trainable_variables, initial) if norm > 0}
    largest = max(growth, key=growth.get)
    embeddings = next(g for name, g in growth.items() if "word_embeddings" in name)

    pooled, nsp_right, mlm_right, mlm_count = [], 0, 0.0, 0.0
    batch = 256
    for features in task.inputs("eval").eval_dataset(batch).take(eval_examples // batch):
        outputs = model(task.model_inputs(features), training=False)
        pooled.append(outputs[bert_task.POOLED_OUTPUT].numpy())
        nsp_right += np.sum(np.argmax(outputs["next_sentence"].numpy(), -1) ==
                            features["next_sentence_labels"].numpy()[:, 0])
        weights = features["masked_lm_weights"].numpy()
        mlm_right += np.sum((np.argmax(outputs["mlm_logits"].numpy(), -1) ==
                             features["masked_lm_ids"].numpy()) * weights)
        mlm_count += weights.sum()
    pooled = np.concatenate(pooled)
    return {
        "masked_lm_accuracy": float(mlm_right / mlm_count),
        "next_sentence_accuracy": float(nsp_right / len(pooled)),
        "pooler_saturation": float(np.mean(np.abs(pooled) > bert_task.SATURATED)),
        # Standard deviation across inputs, averaged over the pooler's units: ~0 means the
        # same features for every input.
        "pooler_spread": float(pooled.std(axis=0).mean()),
        "word_embedding_growth": float(embeddings),
        "largest_growth": float(growth[largest]),
        "largest_growth_variable": largest,
    }


def _read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def table(rows):
    """Markdown, a line per variant."""
    lines = ["| variant | flags on the base | masked-LM | next-sentence | pooler saturated | "
             "pooler spread | word-embedding norm growth | largest growth | probe (dev) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        flags_cell = f"`{r['flags']}`" if r["flags"] else "(none)"
        lines.append(
            f"| {r['variant']} | {flags_cell} | {float(r['masked_lm_accuracy']):.1%} | "
            f"{float(r['next_sentence_accuracy']):.1%} | {float(r['pooler_saturation']):.0%} | "
            f"{float(r['pooler_spread']):.2g} | {float(r['word_embedding_growth']):.2f}x | "
            f"{float(r['largest_growth']):.2f}x | {float(r['probe_dev_accuracy']):.1%} |")
    return "\n".join(lines) + "\n"


def lever_table(pretraining_rows, finetune_rows):
    """Markdown: the base's encoder, each lever's and random weights', with their pretraining
    figures and their test accuracy on each task of `finetune_rows` ({task: the fine-tuning
    study's rows}) at their best dev rate of LEVER_RATES, then that rate's mean dev accuracy
    (what a recipe is chosen on); the difference in test accuracy from the base's in
    brackets."""
    from benchmarks import finetune_study  # pylint: disable=g-import-not-at-top
    tasks = list(finetune_rows)
    lines = ["| encoder | changed from the base | masked-LM | next-sentence | probe (dev) | "
             + " | ".join(f"{task} test (rate)" for task in tasks) + " |",
             "|---|---|---:|---:|---:|" + "---|" * len(tasks)]
    pretraining = {r["variant"]: r for r in pretraining_rows}

    def downstream(task, encoder):
        mine = [r for r in finetune_rows[task] if r["init"] == encoder]
        if not any(r["learning_rate"] in LEVER_RATES[task] for r in mine):
            return None, "not run yet"
        best, _, by_rate = finetune_study.choose(mine, LEVER_RATES[task])
        dev = finetune_study.mean_of(by_rate[best], "dev_accuracy")
        return (finetune_study.mean_of(by_rate[best], "test_accuracy"),
                f"{finetune_study.test_accuracies(by_rate[best])} at {best}; dev {dev:.1%}")

    def label(lever):
        return COMMAND_1_ENCODER if lever == COMMAND_1_LEVER else lever

    reference = {task: downstream(task, BASELINE_ENCODER)[0] for task in tasks}
    encoders = [(BASELINE_ENCODER, BASELINE, BASELINE_ENCODER,
                 "nothing: the study's base, the default recipe with random-next pairs")]
    encoders += [(label(name), name,
                  f"{name} (the default recipe)" if name == COMMAND_1_LEVER else name,
                  question) for name, (question, _) in LEVERS.items() if name in pretraining]
    encoders.append((RANDOM_ENCODER, None, RANDOM_ENCODER, "no pretraining"))
    for encoder, variant, shown, question in encoders:
        row = pretraining.get(variant)
        figures = ([f"{float(row[k]):.1%}" for k in ("masked_lm_accuracy",
                                                     "next_sentence_accuracy",
                                                     "probe_dev_accuracy")]
                   if row else ["", "", ""])
        cells = []
        for task in tasks:
            mean, text = downstream(task, encoder)
            if mean is not None and encoder != BASELINE_ENCODER and reference[task] is not None:
                text += f" [{(mean - reference[task]) * 100:+.1f}]"
            cells.append(text)
        lines.append(f"| {shown} | {question} | " + " | ".join(figures + cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    unknown = [v for v in FLAGS.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant(s) {unknown}; choose from {list(VARIANTS)}.")
    done = {row["variant"] for row in _read(FLAGS.output)}
    for name in FLAGS.variants:
        if name in done:
            continue
        question, extra_flags = VARIANTS[name]
        model_dir = os.path.join(FLAGS.work_dir, name)
        try:
            pretrain(model_dir, on_study_base(extra_flags))
        except trainer_process.Diverged as e:
            sys.exit(f"error: variant {name} diverged: {e}")
        row = {"variant": name, "question": question, "flags": " ".join(extra_flags),
               **diagnose(model_dir), "probe_dev_accuracy": probe(model_dir)}
        new = not os.path.exists(FLAGS.output)
        with open(FLAGS.output, "a", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            if new:
                writer.writeheader()
            writer.writerow({k: f"{v:.4g}" if isinstance(v, float) else v
                             for k, v in row.items()})
        print(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in row.items()), flush=True)
    summary = table(_read(FLAGS.output))
    with open(os.path.splitext(FLAGS.output)[0] + ".md", "w") as f:
        f.write(summary)
    print(summary)


if __name__ == "__main__":
    _define_flags()
    app.run(main)
