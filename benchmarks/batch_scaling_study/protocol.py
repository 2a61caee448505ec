"""The study's protocol: which settings each cell tries, in which order, and which it keeps.

Nothing here trains: `Study` is given the functions that pretrain and fine-tune (the real ones
are in `runs`; the tests pass fakes), and it replays the search from the results files, so a
finished run is read back and only a missing one is run.
"""

import dataclasses
import math
import os
from typing import Dict, Tuple

from benchmarks.large_batch_study.protocol import format_duration, grid, widening_search

OPTIMIZERS = ("lamb", "adamw")
BETA_2_RATE = "beta_2_rate"  # the stage that tries beta_2's alternative at a higher rate
RANDOM = "random"   # the encoder row of the same architecture at random weights
TFIDF = "tfidf"     # the TF-IDF + logistic regression row (no encoder, no seeds)


class Refused(ValueError):
    """Results on record that this plan cannot use; the message names the fix."""


@dataclasses.dataclass(frozen=True)
class Plan:
    """The numbers of the protocol; every optimizer gets exactly this search."""
    # 16x, 300 updates at the largest: README command 1's 153,600 examples (2,400 updates at
    # 64) at every batch. The same span at 64-1,024 needs 307,200 and twice the hours.
    batches: Tuple[int, ...] = (32, 64, 128, 256, 512)   # global, ascending
    examples: int = 153_600                 # training examples at every batch
    micro_batch: int = 128                  # per update step on the device; the rest accumulates
    # The healthy rates at batch `base_batch` the square-root rule scales from (README command
    # 1; the pretraining study's AdamW variant).
    base_batch: int = 64
    base_rates: Dict[str, float] = dataclasses.field(
        default_factory=lambda: {"lamb": 0.005, "adamw": 1e-3})
    grid_size: int = 3
    grid_factor: float = 2.0
    max_widenings: int = 2                  # per side of a cell's rate grid
    warmup_fraction: float = 0.1            # the second warmup, of each run's updates (or more)
    paper_warmup_share: float = 1 / 5       # of the largest batch's updates, at every batch
    # What Nado et al. tuned for Adam beyond the rate (beta_2, the decay's power, beta_2 with a
    # higher rate), at this many of the largest batches, for these optimizers: both, so that
    # neither gets more tuning than the other.
    nado_batches: int = 2
    nado_optimizers: Tuple[str, ...] = ("lamb", "adamw")
    beta_2_alternative: float = 0.98
    power_alternative: float = 2.0
    # Topics (BBC News, Reuters R8) and a task of another kind (which account posted a tweet).
    tasks: Tuple[str, ...] = ("bbc_news", "reuters_r8", "health_tweets")
    # The tasks whose dev accuracy chooses each cell's setting (empty: all of `tasks`); the
    # others are fine-tuned only from the chosen and untuned encoders, for the table. One topic
    # task and the non-topic one, so a setting is not chosen for topic words alone; Reuters R8
    # would add a third fine-tuning per pretraining (~80 min over the study) for a second topic.
    selection_tasks: Tuple[str, ...] = ("bbc_news", "health_tweets")
    # Fine-tuning: one seed chooses each cell's setting, and others report, since the run
    # that won on dev tends to be lucky on test too and would lift the row it chose.
    selection_seed: int = 1
    seeds: Tuple[int, ...] = (2, 3, 4)
    finetune_learning_rate: float = 1e-3    # configs/bert/finetune_bbc_news.yaml's

    def updates(self, batch):
        return self.examples // batch

    @property
    def reference_batch(self):
        """The batch whose accuracy the others must hold: `base_batch`, that of the default
        recipe the rates scale from (the smallest batch where the grid leaves it out)."""
        return self.base_batch if self.base_batch in self.batches else self.batches[0]

    @property
    def choosing_tasks(self):
        return self.selection_tasks or self.tasks

    def accumulation_steps(self, batch):
        return max(1, batch // self.micro_batch)

    def square_root_rule(self, optimizer, batch):
        return self.base_rates[optimizer] * math.sqrt(batch / self.base_batch)

    def paper_warmup_updates(self):
        return int(round(self.paper_warmup_share * self.updates(self.batches[-1])))

    def second_warmup_updates(self, batch):
        """A longer warmup than the paper's at every batch: warmup_fraction of the run's updates,
        or twice the paper's where that is more. Every cell asks the same question, and at the
        largest batches, where the paper's rule already gives 20% of the updates and a warmup
        matters most, the alternative is 40% rather than a shorter 10%."""
        return max(int(round(self.warmup_fraction * self.updates(batch))),
                   2 * self.paper_warmup_updates())

    def nado_cell(self, optimizer, batch):
        """Whether the cell also tunes what Nado et al. tuned beyond the rate: the
        `nado_optimizers` at the `nado_batches` largest batches (none when it is 0)."""
        return (optimizer in self.nado_optimizers and self.nado_batches > 0
                and batch in self.batches[-self.nado_batches:])

    def untuned(self, optimizer, batch):
        return Setting(optimizer, batch, self.square_root_rule(optimizer, batch),
                       self.paper_warmup_updates())

    def check(self):
        if list(self.batches) != sorted(set(self.batches)) or len(self.batches) < 2:
            raise ValueError(f"--batches must be at least two distinct ascending sizes, got "
                             f"{list(self.batches)}.")
        for batch in self.batches:
            micro = min(batch, self.micro_batch)
            if batch % micro or self.examples % batch:
                raise ValueError(f"batch {batch} must be a multiple of --micro_batch "
                                 f"({self.micro_batch}) or below it, and divide --examples "
                                 f"({self.examples}); pick powers of two.")
        if not set(self.selection_tasks) <= set(self.tasks):
            raise ValueError(f"--selection_tasks {list(self.selection_tasks)} must be among "
                             f"--tasks {list(self.tasks)}.")
        if self.selection_seed in self.seeds:
            raise ValueError(f"the selection seed {self.selection_seed} must not be one of the "
                             f"reporting seeds {list(self.seeds)}.")
        if self.grid_size % 2 == 0:
            raise ValueError(f"the rate grid needs an odd size (its centre is the square-root "
                             f"rule, the untuned row), got {self.grid_size}.")
        if self.paper_warmup_updates() >= self.updates(self.batches[-1]):
            raise ValueError("the paper's warmup must be shorter than the largest batch's run.")


@dataclasses.dataclass(frozen=True)
class Setting:
    """One pretraining run's recipe on top of README command 1."""
    optimizer: str
    batch: int
    learning_rate: float
    warmup_updates: int
    beta_2: float = 0.999
    power: float = 1.0

    @property
    def encoder(self):
        """The run's name: its model_dir and its rows are found by it."""
        return (f"{self.optimizer}_b{self.batch}_lr{self.learning_rate:.4g}_"
                f"wu{self.warmup_updates}_beta2-{self.beta_2:g}_pow{self.power:g}")


@dataclasses.dataclass
class PretrainRecord:
    encoder: str
    examples: int
    stage: str                 # the search step that asked: rate, warmup, beta_2, power,
                               # beta_2_rate
    optimizer: str
    batch: int
    learning_rate: float
    warmup_updates: int
    beta_2: float
    power: float
    updates: int
    micro_batch: int
    accumulation_steps: int
    finite: bool               # False: the loss went NaN/Inf (no figures, nothing fine-tuned)
    masked_lm_accuracy: float
    next_sentence_accuracy: float
    pooler_saturation: float
    pooler_spread: float
    word_embedding_growth: float
    largest_growth: float
    largest_growth_variable: str
    examples_per_sec: float    # the trainer's median over loops, each process's first left out
    b_simple: float            # gradient noise scale at the end (nan: not measured)
    wall_seconds: float

    @property
    def key(self):
        return (self.encoder, int(self.examples))


@dataclasses.dataclass
class FinetuneRecord:
    task: str
    encoder: str               # a PretrainRecord's, or RANDOM, or TFIDF
    examples: int              # the pretraining's (0 for RANDOM and TFIDF)
    seed: int
    learning_rate: float
    dev_accuracy: float
    test_accuracy: float

    @property
    def key(self):
        return (self.task, self.encoder, int(self.examples), int(self.seed))


DIVERGED = dict(finite=False, masked_lm_accuracy=math.nan, next_sentence_accuracy=math.nan,
                pooler_saturation=math.nan, pooler_spread=math.nan,
                word_embedding_growth=math.nan, largest_growth=math.nan,
                largest_growth_variable="", examples_per_sec=math.nan, b_simple=math.nan)
AGAIN = ".pretraining_again"  # beside a model_dir being remade: not the recorded encoder yet
# The figures an encoder pretrained again must reproduce exactly to be the one on record (its
# speed and the name Keras gives its variables vary from process to process).
SAME_ENCODER_FIGURES = ("masked_lm_accuracy", "next_sentence_accuracy", "pooler_saturation",
                        "pooler_spread", "word_embedding_growth", "largest_growth")


def run_order(batches):
    """The ends of the range first, then the middles of the gaps, widest first: a usable
    answer (how the largest batch compares with the smallest) comes early."""
    order, spans = [batches[0], batches[-1]], [(0, len(batches) - 1)]
    while spans:
        wider = []
        for low, high in spans:
            if high - low >= 2:
                middle = (low + high) // 2
                order.append(batches[middle])
                wider += [(low, middle), (middle, high)]
        spans = wider
    return list(dict.fromkeys(order))


def selection_score(encoder, examples, plan, finetunes):
    """Mean dev accuracy over the choosing tasks at the selection seed; -inf without every one
    or where a fine-tuning diverged (its accuracy is NaN)."""
    devs = [finetunes.get((task, encoder, examples, plan.selection_seed))
            for task in plan.choosing_tasks]
    if any(record is None or math.isnan(record.dev_accuracy) for record in devs):
        return -math.inf
    # Rounded, so that equal dev accuracies tie whatever order float addition takes them in.
    return round(sum(record.dev_accuracy for record in devs) / len(devs), 9)


def choose(records, plan, finetunes):
    """The cell's chosen pretraining record: the best selection score, ties to the lower rate
    (as the rate grid's widening decides) and then to the first visited."""
    finite = [r for r in records if r.finite]
    if not finite:
        return None
    return max(finite, key=lambda r: (selection_score(r.encoder, r.examples, plan, finetunes),
                                      -r.learning_rate))


class Study:
    """The search over every cell, given `pretrain(setting, model_dir)` -> the record's figures
    (DIVERGED's keys) and `finetune(task, init_checkpoint, random_init, seed)` -> (dev, test)
    and `tfidf(task)` -> (dev, test)."""

    def __init__(self, plan, pretrainings, finetunings, work_dir, pretrain, finetune, tfidf,
                 remove_dir, log=print, after_run=lambda: None, clock=None):
        self.plan = plan
        self.pretrainings = pretrainings    # ResultsFile of PretrainRecord
        self.finetunings = finetunings      # ResultsFile of FinetuneRecord
        self.work_dir = work_dir
        self._pretrain, self._finetune, self._tfidf = pretrain, finetune, tfidf
        self._remove_dir = remove_dir
        self.log, self.after_run = log, after_run
        self._clock = clock
        self.kept = []                      # model_dirs of chosen and untuned encoders

    def model_dir(self, setting):
        return os.path.join(self.work_dir, f"examples_{self.plan.examples}", setting.encoder)

    # ------------------------------------------------------------------------------ the search
    def run(self):
        """{(optimizer, batch): chosen PretrainRecord or None} of every cell, in run order."""
        chosen = {}
        for batch in run_order(self.plan.batches):
            for optimizer in OPTIMIZERS:
                chosen[optimizer, batch] = self.run_cell(optimizer, batch)
                self.ensure_baselines()
        return chosen

    def run_cell(self, optimizer, batch):
        plan, visited = self.plan, []

        def try_setting(setting, stage):
            record = self.ensure_pretrained(setting, stage)
            if all(r.encoder != record.encoder for r in visited):  # (NaN fields never equal)
                visited.append(record)
            if not record.finite:
                return -math.inf
            for task in plan.choosing_tasks:
                self.ensure_finetuned(task, setting, plan.selection_seed)
            return selection_score(record.encoder, record.examples, plan,
                                   self.finetunings.records)

        def best_setting():
            return setting_of(choose(visited, plan, self.finetunings.records))

        untuned = plan.untuned(optimizer, batch)
        widening_search(
            grid(untuned.learning_rate, plan.grid_size, plan.grid_factor),
            lambda rate: try_setting(dataclasses.replace(untuned, learning_rate=rate), "rate"),
            plan.grid_factor, plan.max_widenings)
        if best_setting() is None:
            self.log(f"{optimizer} batch {batch}: every rate diverged; the cell has no encoder.")
            return None
        try_setting(dataclasses.replace(
            best_setting(), warmup_updates=plan.second_warmup_updates(batch)), "warmup")
        if plan.nado_cell(optimizer, batch):
            try_setting(dataclasses.replace(best_setting(), beta_2=plan.beta_2_alternative),
                        "beta_2")
            try_setting(dataclasses.replace(best_setting(), power=plan.power_alternative),
                        "power")
            # Nado et al. tuned the rate jointly with these: a lower beta_2 mostly pays by
            # standing a higher rate, which the rate grid (at beta_2 0.999) never tried.
            best = best_setting()
            try_setting(dataclasses.replace(
                best, beta_2=plan.beta_2_alternative,
                learning_rate=plan.grid_factor * best.learning_rate), BETA_2_RATE)
        chosen = choose(visited, plan, self.finetunings.records)
        keep = [setting_of(chosen)]
        untuned_record = self.pretrainings.get((untuned.encoder, plan.examples))
        if untuned_record.finite and untuned_record.encoder != chosen.encoder:
            keep.append(untuned)
        for setting in keep:
            for seed in plan.seeds:
                for task in plan.tasks:
                    self.ensure_finetuned(task, setting, seed)
        kept = {self.model_dir(s) for s in keep}
        self.kept += sorted(kept)
        for record in visited:  # disk: only the chosen and the untuned encoders stay
            path = self.model_dir(setting_of(record))
            if path not in kept and os.path.isdir(path):
                self._remove_dir(path)
        return chosen

    def ensure_baselines(self):
        """Random weights (3 seeds, architecture from a kept encoder) and TF-IDF per task."""
        if not self.kept:
            return
        for task in self.plan.tasks:
            for seed in self.plan.seeds:
                key = (task, RANDOM, 0, seed)
                if key not in self.finetunings.records:
                    dev, test = self._finetune(task, self.kept[0], True, seed)
                    self._add_finetune(task, RANDOM, 0, seed, dev, test)
            if (task, TFIDF, 0, 0) not in self.finetunings.records:
                dev, test = self._tfidf(task)
                self._add_finetune(task, TFIDF, 0, 0, dev, test, learning_rate=math.nan)

    # ------------------------------------------------------------------------------ the runs
    def ensure_pretrained(self, setting, stage):
        """The setting's record: read back, or pretrained now (resuming its model_dir)."""
        existing = self.pretrainings.get((setting.encoder, self.plan.examples))
        if existing:
            micro_batch = min(self.plan.micro_batch, setting.batch)
            if int(existing.micro_batch) != micro_batch:
                raise Refused(
                    f"{setting.encoder} is on record with micro-batch {existing.micro_batch}, "
                    f"where this plan gives {micro_batch}: rerun with the --micro_batch it was "
                    "made with, or give a study with another one its own --output_dir.")
            return existing
        start = self._clock() if self._clock else 0.0
        figures = self._pretrain(setting, self.model_dir(setting))
        plan = self.plan
        record = PretrainRecord(
            encoder=setting.encoder, examples=plan.examples, stage=stage,
            optimizer=setting.optimizer, batch=setting.batch,
            learning_rate=setting.learning_rate, warmup_updates=setting.warmup_updates,
            beta_2=setting.beta_2, power=setting.power, updates=plan.updates(setting.batch),
            micro_batch=min(plan.micro_batch, setting.batch),
            accumulation_steps=plan.accumulation_steps(setting.batch),
            wall_seconds=(self._clock() - start) if self._clock else 0.0, **figures)
        self.pretrainings.add(record)
        self.log(f"pretrained {setting.encoder} ({stage}): " + (
            f"masked-LM {record.masked_lm_accuracy:.2%}, sentence order "
            f"{record.next_sentence_accuracy:.2%}, {record.examples_per_sec:.0f} examples/s, "
            f"{format_duration(record.wall_seconds)}" if record.finite else "diverged"))
        self.after_run()
        return record

    def ensure_finetuned(self, task, setting, seed):
        key = (task, setting.encoder, self.plan.examples, seed)
        if key in self.finetunings.records:
            return self.finetunings.records[key]
        model_dir = self.model_dir(setting)
        if not os.path.isdir(model_dir) or os.path.exists(model_dir + AGAIN):
            self.pretrain_again(setting, model_dir, f"{task} seed {seed}")
        dev, test = self._finetune(task, model_dir, False, seed)
        return self._add_finetune(task, setting.encoder, self.plan.examples, seed, dev, test)

    def pretrain_again(self, setting, model_dir, needed_by):
        """Remakes a kept encoder whose model_dir is gone (a wiped machine between sessions).
        On the machine that made it the rerun is bit for bit the same run (docs/reproducing.md,
        "Determinism"), which its held-out figures show to the last digit; any difference means
        another encoder, whose rows would mix with the recorded one's, so it is refused.
        Until the figures agree a marker beside the model_dir says it is not the encoder yet, so
        a killed rerun resumes and a refused one is never fine-tuned."""
        record = self.pretrainings.get((setting.encoder, self.plan.examples))
        self.log(f"{model_dir} is gone or not checked yet, and {needed_by} needs it: "
                 "pretraining it again")
        os.makedirs(os.path.dirname(model_dir), exist_ok=True)
        with open(model_dir + AGAIN, "w"):
            pass
        figures = self._pretrain(setting, model_dir)
        differ = [f"{name} {figures[name]!r} against {getattr(record, name)!r}"
                  for name in SAME_ENCODER_FIGURES
                  if not figures[name] == float(getattr(record, name))]
        if differ:
            raise Refused(
                f"{setting.encoder} pretrained again is not the encoder on record "
                f"({'; '.join(differ)}): another machine or other code makes another encoder. "
                "Move its rows out of pretraining.csv and finetuning.csv so that it is "
                "pretrained and chosen anew, or run the study where it was made.")
        os.remove(model_dir + AGAIN)
        self.log(f"pretrained {setting.encoder} again: the same held-out figures as on record")

    def _add_finetune(self, task, encoder, examples, seed, dev, test, learning_rate=None):
        rate = self.plan.finetune_learning_rate if learning_rate is None else learning_rate
        record = FinetuneRecord(task, encoder, examples, seed, rate, dev, test)
        self.finetunings.add(record)
        self.log(f"fine-tuned {encoder} on {task}, seed {seed}: dev {dev:.2%}, test {test:.2%}")
        self.after_run()
        return record


def setting_of(record):
    if record is None:
        return None
    return Setting(record.optimizer, record.batch, record.learning_rate, record.warmup_updates,
                   record.beta_2, record.power)


# ------------------------------------------------------------------------------------ the plan
def describe(plan, pretrainings=None, finetunings=None, examples_per_sec=200.0,
             finetune_minutes=1.8):
    """--plan: the cells in run order, each one's settings, the least number of runs and the
    estimated hours (each widening adds a pretraining and its choosing fine-tunings)."""
    pretrainings, finetunings = pretrainings or {}, finetunings or {}
    lines = [f"{plan.examples:,} examples per pretraining, micro-batch {plan.micro_batch}, "
             f"tasks {', '.join(plan.tasks)}, fine-tuning seed {plan.selection_seed} chooses on "
             f"dev of {', '.join(plan.choosing_tasks)}, seeds {list(plan.seeds)} report",
             f"warmup: the paper's rule, {plan.paper_warmup_updates()} "
             f"updates at every batch, or {plan.warmup_fraction:.0%} of the run's updates "
             f"(twice the paper's where that is more)", ""]
    pretraining_runs = 0
    for batch in run_order(plan.batches):
        for optimizer in OPTIMIZERS:
            rates = grid(plan.square_root_rule(optimizer, batch), plan.grid_size,
                         plan.grid_factor)
            extras = plan.nado_cell(optimizer, batch)
            runs = plan.grid_size + 1 + 3 * extras   # the rates, the warmup, Nado's three
            pretraining_runs += runs
            lines.append(
                f"batch {batch:>5} {optimizer:<5} {plan.updates(batch):>5} updates "
                f"({plan.accumulation_steps(batch)} micro-batch(es) each): rates "
                f"[{', '.join(f'{r:.3g}' for r in rates)}] at warmup "
                f"{plan.paper_warmup_updates()}, then warmup "
                f"{plan.second_warmup_updates(batch)} at the best"
                + (f", then beta_2 {plan.beta_2_alternative:g}, then power "
                   f"{plan.power_alternative:g}, then beta_2 {plan.beta_2_alternative:g} at "
                   f"{plan.grid_factor:g}x the best rate" if extras else "")
                + f": >= {runs} runs")
    cells = len(plan.batches) * len(OPTIMIZERS)
    every_seed_and_task = len(plan.seeds) * len(plan.tasks)
    # Chosen and untuned encoders apart in every cell, random weights, TF-IDF once per task.
    finetune_runs = (len(plan.choosing_tasks) * pretraining_runs
                     + (2 * cells + 1) * every_seed_and_task + len(plan.tasks))
    pretraining_seconds = plan.examples / examples_per_sec + 60  # + start and diagnostics
    seconds = pretraining_runs * pretraining_seconds + finetune_runs * finetune_minutes * 60
    done = [r for r in pretrainings.values() if r.examples == plan.examples]
    rates = [r.examples_per_sec for r in done if r.finite and r.examples_per_sec > 0]
    if rates:  # the finished runs' speed, for what is left (a resumed run's wall time is only
        # its last process's)
        pretraining_seconds = plan.examples / (sum(rates) / len(rates)) + 60
    left = (max(0, pretraining_runs - len(done)) * pretraining_seconds
            + max(0, finetune_runs - len(finetunings)) * finetune_minutes * 60)
    widening_seconds = pretraining_seconds + len(plan.choosing_tasks) * finetune_minutes * 60
    lines += ["", f"at least {pretraining_runs} pretraining runs and about {finetune_runs} "
              f"fine-tuning runs (every encoder once per choosing task; chosen, untuned and "
              f"random-weight encoders x {len(plan.seeds)} seeds x every task; TF-IDF): "
              f"~{format_duration(seconds)} at "
              f"{examples_per_sec:.0f} examples/s and {finetune_minutes:g} min per fine-tuning; "
              f"each widening of a grid adds ~{format_duration(widening_seconds)}",
              f"done: {len(done)} pretraining and {len(finetunings)} fine-tuning rows; left: "
              f"~{format_duration(left)}"]
    return lines
