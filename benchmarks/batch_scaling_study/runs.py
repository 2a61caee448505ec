"""The real runs behind the protocol: README command 1's pretraining with a setting's flags,
its diagnostics, and fine-tuning through benchmarks.finetune_study."""

import math
import os
import statistics

from benchmarks import eval_history
from benchmarks import finetune_study
from benchmarks import pretraining_study
from benchmarks import trainer_process
from benchmarks.batch_scaling_study import protocol

# A loop (and a checkpoint, the most a killed run loses) every 25,600 examples: 6 per run.
EXAMPLES_PER_LOOP = 25_600


def pretraining_flags(setting, plan):
    """The trainer flags of `setting` on top of configs/bert/tiny_wiki_lamb.yaml."""
    updates = plan.updates(setting.batch)
    loop = max(1, min(updates, EXAMPLES_PER_LOOP // setting.batch))
    section = f"optimizer.{setting.optimizer}"
    return [f"--train_batch_size={setting.batch}",
            f"--num_accumulation_steps={plan.accumulation_steps(setting.batch)}",
            f"--num_train_steps={updates}", f"--num_warmup_steps={setting.warmup_updates}",
            f"--learning_rate={setting.learning_rate!r}", f"--iterations_per_loop={loop}",
            f"--save_checkpoints_steps={loop}", "--keep_checkpoint_max=2",
            f"--params_override=optimizer.name={setting.optimizer},"
            f"{section}.beta_2={setting.beta_2!r},optimizer.power={setting.power!r}"]


def summary_values(model_dir, tag):
    """The values of scalar summary `tag` under model_dir/train, in the order written."""
    return [value for _, name, value in eval_history.scalars(os.path.join(model_dir, "train"))
            if name == tag]


def pretrain(plan):
    """`pretrain(setting, model_dir)` for protocol.Study: trains or resumes the run, then
    reads its held-out figures, health and throughput."""
    def run(setting, model_dir):
        try:
            pretraining_study.pretrain(model_dir, pretraining_flags(setting, plan), mode="train")
        except trainer_process.Diverged:
            return dict(protocol.DIVERGED)
        figures = pretraining_study.diagnose(model_dir)
        # Each loop's throughput (the first loop of every process traces, and is left out);
        # the median, so a loop slowed by something else on the machine does not move it.
        rates = summary_values(model_dir, "examples_per_second")
        noise = summary_values(model_dir, "noise_scale/b_simple")
        return dict(figures, finite=True,
                    examples_per_sec=statistics.median(rates) if rates else math.nan,
                    b_simple=noise[-1] if noise else math.nan)
    return run


def finetune(plan, work_dir):
    """`finetune(task, init_checkpoint, random_init, seed)` for protocol.Study."""
    def run(task, init_checkpoint, random_init, seed):
        try:
            return finetune_study.run_one(task, init_checkpoint, random_init,
                                          plan.finetune_learning_rate, seed,
                                          os.path.join(work_dir, "finetune"))
        except trainer_process.Diverged:  # on record as NaN: it never chooses, the table says n/a
            return math.nan, math.nan
    return run


def check_tasks(tasks):
    """Refuses, before anything runs, a task without its fine-tuning recipe finetune_<task>."""
    from trainers import recipes  # pylint: disable=g-import-not-at-top
    known = sorted(name.split("/")[1][len("finetune_"):] for name in recipes.available()
                   if name.startswith("bert/finetune_"))
    unknown = [task for task in tasks if task not in known]
    if unknown:
        raise ValueError(f"unknown downstream task(s) {unknown}: no recipe "
                         f"configs/bert/finetune_<task>.yaml; the tasks with one: {known}.")


def tfidf(task):
    """TF-IDF + logistic regression on the task's whole texts: (dev, test)."""
    _, dev, test = finetune_study.tfidf_baseline(0, task)
    return dev, test
