"""study.md and study.png from pretraining.csv and finetuning.csv: test accuracy per batch and
optimizer (tuned on dev, and the untuned rule), the pretraining figures and health beside it,
and what held as the batch grew."""

import dataclasses
import math
import statistics
from typing import Dict, List, Optional

from benchmarks.batch_scaling_study import protocol

KINDS = ("tuned", "untuned")
NAMES = {"lamb": "LAMB", "adamw": "AdamW"}


@dataclasses.dataclass
class Row:
    """One encoder of the table: its pretraining record and its fine-tunings per task."""
    kind: str
    optimizer: str
    batch: int
    record: Optional[protocol.PretrainRecord]
    runs_tried: int
    tests: Dict[str, List[float]]   # task -> test accuracy per seed (the plan's order)
    on_edge: bool = False           # tuned, and its rate was never bracketed

    def complete(self, plan):
        return self.record is not None and all(
            len(self.tests.get(task, [])) == len(plan.seeds) for task in plan.tasks)

    def mean(self, task):
        return statistics.fmean(self.tests[task])

    def spread(self, task):
        """The range of the seeds' test accuracies; NaN if one diverged (max and min would
        depend on where the NaN sits)."""
        tests = self.tests[task]
        return math.nan if any(map(math.isnan, tests)) else max(tests) - min(tests)

    def problem(self, plan, task):
        """Why this row has no figure to compare on `task`, or None."""
        if self.record is None:
            return "is not run yet"
        if not self.record.finite:
            return "diverged"
        if not self.complete(plan):
            return "is not complete yet"
        if math.isnan(self.mean(task)):
            return "has a diverged fine-tuning"
        return None


def tests_per_task(plan, finetunes, encoder, examples, seeds=None):
    """{task: test accuracy of each of `seeds` (default: the plan's reporting seeds) that has a
    fine-tuning of `encoder` on record}."""
    tests = {}
    for task in plan.tasks:
        found = [finetunes.get((task, encoder, examples, seed))
                 for seed in (plan.seeds if seeds is None else seeds)]
        tests[task] = [record.test_accuracy for record in found if record is not None]
    return tests


def baseline_tests(plan, finetunes, encoder):
    """tests_per_task of random weights (the reporting seeds) or TF-IDF (no seed)."""
    return tests_per_task(plan, finetunes, encoder, 0,
                          None if encoder == protocol.RANDOM else (0,))


def rows(plan, pretrainings, finetunes):
    """{(kind, optimizer, batch): Row} for every cell with at least one pretraining record."""
    table = {}
    for optimizer in protocol.OPTIMIZERS:
        for batch in plan.batches:
            cell = [r for r in pretrainings.values() if r.optimizer == optimizer
                    and r.batch == batch and r.examples == plan.examples]
            if not cell:
                continue
            untuned = plan.untuned(optimizer, batch)
            # A cell whose every run diverged shows its first run, marked so.
            chosen = protocol.choose(cell, plan, finetunes) or cell[0]
            for kind, record in (("tuned", chosen),
                                 ("untuned", pretrainings.get((untuned.encoder, plan.examples)))):
                tests = tests_per_task(plan, finetunes, record.encoder if record else "",
                                       plan.examples)
                table[kind, optimizer, batch] = Row(
                    kind, optimizer, batch, record, len(cell) if kind == "tuned" else 1, tests,
                    on_edge=kind == "tuned" and _on_edge(plan, cell, chosen,
                                                         untuned.learning_rate))
    return table


def _on_edge(plan, cell, chosen, centre):
    """Whether `chosen`'s rate was never bracketed: the highest or lowest rate of its cell's
    rate grid, widened as far as the plan allows on that side, or beta_2's higher rate (nothing
    higher was tried with that beta_2). The beta_2-at-a-higher-rate run does not bracket the
    grid's rates: its beta_2 is another."""
    if chosen.stage == protocol.BETA_2_RATE:
        return True
    def offset(rate):  # in grid steps from the square-root rule
        return round(math.log(rate / centre, plan.grid_factor))
    reach = plan.grid_size // 2 + plan.max_widenings
    offsets = [offset(r.learning_rate) for r in cell if r.stage == "rate"]
    mine = offset(chosen.learning_rate)
    return abs(mine) >= reach and mine in (max(offsets), min(offsets))


def _problem(plan, row, task):
    """Row.problem, and for a row that is not in the table yet, that it is not run."""
    return "is not run yet" if row is None else row.problem(plan, task)


def seed_ranges(plan, table, task):
    """{encoder: the range of its seeds' test accuracies on `task`} over the table's distinct
    encoders with every seed and none diverged."""
    return {row.record.encoder: row.spread(task) for row in table.values()
            if row.problem(plan, task) is None and not math.isnan(row.spread(task))}


def seed_yardstick(plan, table, task):
    """The fine-tuning seeds' typical range of test accuracy on `task`: the median of
    seed_ranges (NaN before an encoder has every seed). One yardstick for every comparison: the
    range of the three seeds one row drew is a noisy estimate (LAMB's batch-32 encoder: 0.5
    points on BBC News over seeds 2-4, 2.8 with seed 1), and the median keeps one collapsed
    seed from widening it."""
    ranges = seed_ranges(plan, table, task)
    return statistics.median(ranges.values()) if ranges else math.nan


def holds(first, row, task, yardstick):
    """Whether `row`'s mean test accuracy is no lower than `first`'s minus `yardstick`."""
    return row.mean(task) >= first.mean(task) - yardstick


def differs(row, other, task, yardstick):
    """Whether the two rows' mean test accuracies differ by more than the yardstick and more
    than either row's own seeds ranged: the larger batches' encoders are noisier than the
    yardstick's median says (LAMB on BBC News: 0.5 points over its seeds at batch 32, 8.9 at
    512)."""
    return abs(row.mean(task) - other.mean(task)) > max(yardstick, row.spread(task),
                                                        other.spread(task))


def holds_up_to(plan, table, kind, optimizer, task, yardstick):
    """(largest batch up to which test accuracy holds against the reference batch's, and why
    the next batch does not: None, or a reason), or None while the reference batch's row has
    no figure."""
    reference = table.get((kind, optimizer, plan.reference_batch))
    if reference is None or reference.problem(plan, task):
        return None
    held = plan.reference_batch
    for batch in [b for b in plan.batches if b > plan.reference_batch]:
        row = table.get((kind, optimizer, batch))
        reason = _problem(plan, row, task)
        if reason is None and not holds(reference, row, task, yardstick):
            reason = "falls below it"
        if reason:
            return held, f"{batch} {reason}"
        held = batch
    return held, None


def _percent(value):
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def _setting(record):
    return (f"lr {record.learning_rate:.3g}, warmup {record.warmup_updates}, "
            f"beta_2 {record.beta_2:g}, power {record.power:g}")


def markdown(plan, pretrainings, finetunes):
    table = rows(plan, pretrainings, finetunes)
    lines = [
        "# The LAMB paper's Table 1 in miniature: downstream accuracy against pretraining batch",
        "", f"BERT-Tiny, built-in Wikipedia corpus, {plan.examples:,} examples at every batch. "
        "Each cell's setting is chosen on the mean dev accuracy of one fine-tuning "
        f"(seed {plan.selection_seed}) on each of {', '.join(plan.choosing_tasks)}; its encoder "
        "is then fine-tuned with seeds "
        f"{', '.join(map(str, plan.seeds))}, which chose nothing, and the table gives test "
        "accuracy (%): mean (seeds). \"runs\": the settings the cell pretrained to choose "
        "the tuned row (the untuned row is one of them). \"untuned\": the paper's rule "
        f"(square-root rate from batch {plan.base_batch}, {plan.paper_warmup_updates()} warmup "
        "updates at every batch). \"edge\": the chosen rate was not bracketed (the highest "
        "or lowest the cell tried, its grid widened as far as the plan allows, or beta_2's "
        "higher rate). "
        "Masked-LM and sentence-order accuracy on 1,024 held-out pairs; health: the pooler's "
        "saturated share and spread, norm growth since initialization. Generated from "
        "pretraining.csv and finetuning.csv by `python -m benchmarks.batch_scaling_study "
        "--report`.", ""]
    task_columns = " | ".join(f"{task} test" for task in plan.tasks)
    lines += [f"| encoder | batch | setting | runs | {task_columns} | mean dev of "
              f"{', '.join(plan.choosing_tasks)} (seed {plan.selection_seed}) | masked-LM | "
              "sentence order | pooler saturated | pooler spread | word-embedding growth | "
              "largest growth |",
              "|---|---:|---|---:|" + "---:|" * len(plan.tasks) + "---:|" * 7]
    for optimizer in protocol.OPTIMIZERS:
        for kind in KINDS:
            for batch in plan.batches:
                row = table.get((kind, optimizer, batch))
                if row is None:
                    continue
                lines.append(_row_line(plan, row, finetunes))
    for encoder, label in ((protocol.RANDOM, "random weights"),
                           (protocol.TFIDF, "TF-IDF + logistic regression, whole texts")):
        cells = []
        for tests in baseline_tests(plan, finetunes, encoder).values():
            cells.append(f"{_percent(statistics.fmean(tests))} ("
                         f"{', '.join(_percent(t) for t in tests)})" if tests else "not run yet")
        lines.append(f"| {label} | | | | " + " | ".join(cells) + " |" + " |" * 7)
    # The runs' own examples/s (pretraining.csv) span sessions and machines, which differed
    # by up to 3x; what accumulation costs is measured in one sitting instead.
    lines += ["", "Examples/s per batch, so accumulation's cost shows: measured in one sitting by "
              "`python -m benchmarks.batch_scaling_study.throughput` "
              "(`benchmarks/results/performance/batch_scaling_throughput.txt`); the runs' own "
              "figures, in pretraining.csv, come from machines of different speeds."]
    lines += ["", "## What held", ""] + what_held(plan, table)
    lines += ["", "## Every setting tried", ""] + every_setting(plan, pretrainings, finetunes,
                                                                 table)
    return "\n".join(lines) + "\n"


def every_setting(plan, pretrainings, finetunes, table):
    """Each cell's pretraining runs in the order the search asked for them, with the dev
    accuracies that chose between them: how much tuning each optimizer got, and how close the
    choice was."""
    devs = " | ".join(f"{task} dev" for task in plan.choosing_tasks)
    lines = [f"Dev accuracy of fine-tuning seed {plan.selection_seed}; the chosen setting in "
             "bold (in a cell still running, the best so far).", "",
             f"| batch | optimizer | step | setting | masked-LM | sentence order | {devs} | "
             "mean dev |", "|---:|---|---|---|---:|---:|" + "---:|" * (len(plan.choosing_tasks)
                                                               + 1)]
    for batch in plan.batches:
        for optimizer in protocol.OPTIMIZERS:
            chosen = table.get(("tuned", optimizer, batch))
            for record in pretrainings.values():
                if (record.optimizer, record.batch, record.examples) != (
                        optimizer, batch, plan.examples):
                    continue
                found = [finetunes.get((task, record.encoder, record.examples,
                                        plan.selection_seed)) for task in plan.choosing_tasks]
                cells = [_percent(f.dev_accuracy) if f else "" for f in found]
                score = protocol.selection_score(record.encoder, record.examples, plan,
                                                 finetunes)
                setting = _setting(record)
                if chosen and chosen.record is record and record.finite:
                    setting = f"**{setting}**"
                lines.append(
                    f"| {batch} | {NAMES[optimizer]} | {record.stage} | {setting} | "
                    f"{_percent(record.masked_lm_accuracy)} | "
                    f"{_percent(record.next_sentence_accuracy)} | " + " | ".join(cells)
                    + f" | {_percent(score) if score > -math.inf else ''} |")
    return lines


def _row_line(plan, row, finetunes):
    name = f"{NAMES[row.optimizer]} {row.kind}"
    record = row.record
    if record is None:
        return f"| {name} | {row.batch} | not run yet |" + " |" * (len(plan.tasks) + 8)
    if not record.finite:
        return (f"| {name} | {row.batch} | {_setting(record)} | {row.runs_tried} |"
                + " diverged |" * len(plan.tasks) + " |" * 7)
    def cell(task):
        tests = row.tests[task]
        if len(tests) < len(plan.seeds):
            return f"in progress ({len(tests)}/{len(plan.seeds)} seeds)"
        return f"**{_percent(row.mean(task))}** ({', '.join(map(_percent, tests))})"
    tests = [cell(task) for task in plan.tasks]
    score = protocol.selection_score(record.encoder, record.examples, plan, finetunes)
    dev = _percent(score) if score > -math.inf else "in progress or diverged"
    edge = "; edge" if row.on_edge else ""
    return (f"| {name} | {row.batch} | {_setting(record)}{edge} | {row.runs_tried} | "
            + " | ".join(tests) + f" | {dev} | {_percent(record.masked_lm_accuracy)} | "
            f"{_percent(record.next_sentence_accuracy)} | {_percent(record.pooler_saturation)} | "
            f"{record.pooler_spread:.2g} | {record.word_embedding_growth:.2f}x | "
            f"{record.largest_growth:.2f}x |")


def _means_at(plan, table, kind, optimizer, task, batches):
    """ " (32: 91.9)": the row's mean test accuracy at each of `batches`, or "" without any."""
    means = []
    for batch in batches:
        row = table.get((kind, optimizer, batch))
        means.append(f"{batch}: " + (_percent(row.mean(task))
                                     if _problem(plan, row, task) is None else "n/a"))
    return f" ({', '.join(means)})" if means else ""


def what_held(plan, table):
    """Two tables computed from the rows: up to which batch each encoder's test accuracy held,
    and tuned LAMB minus tuned AdamW per batch, marked where it exceeds the seeds' spread."""
    reference = plan.reference_batch
    smaller = [batch for batch in plan.batches if batch < reference]
    yardstick = {task: seed_yardstick(plan, table, task) for task in plan.tasks}
    encoders = len(set().union(*(seed_ranges(plan, table, task) for task in plan.tasks)))
    lines = ["The yardstick of both tables is the seeds' typical range of test accuracy per "
             f"task: the median, over the {encoders} encoder(s) with every seed, of the range of "
             f"their {len(plan.seeds)} seeds (" + ", ".join(
                 f"{task} {100 * yardstick[task]:.1f}" for task in plan.tasks) + " points).", "",
             f"Up to which batch test accuracy holds: no lower than the batch-{reference} mean "
             + ("(given first; the default recipe's batch)" if reference == plan.base_batch
                else "(given first)") + " minus that range"
             + (f", the mean at batch {', '.join(map(str, smaller))} in parentheses"
                if smaller else "") + ".", "",
             "| encoder | " + " | ".join(plan.tasks) + " |",
             "|---|" + "---|" * len(plan.tasks)]
    for optimizer in protocol.OPTIMIZERS:
        for kind in KINDS:
            cells = []
            for task in plan.tasks:
                below = _means_at(plan, table, kind, optimizer, task, smaller)
                held = holds_up_to(plan, table, kind, optimizer, task, yardstick[task])
                if held is None:
                    cells.append(f"batch {reference} "
                                 + _problem(plan, table.get((kind, optimizer, reference)), task)
                                 + below)
                    continue
                batch, why_not_further = held
                cells.append(f"{_percent(table[kind, optimizer, reference].mean(task))}{below}: "
                             f"up to **{batch}**"
                             + (f"; {why_not_further}" if why_not_further else ""))
            lines.append(f"| {NAMES[optimizer]} {kind} | " + " | ".join(cells) + " |")
    lines += ["", "Tuned LAMB minus tuned AdamW, mean test accuracy in points; bold where the "
              "difference exceeds both the seeds' typical range and the range of each row's "
              "own seeds.",
              "", "| batch | " + " | ".join(plan.tasks) + " |",
              "|---:|" + "---:|" * len(plan.tasks)]
    for batch in plan.batches:
        lamb, adamw = table.get(("tuned", "lamb", batch)), table.get(("tuned", "adamw", batch))
        cells = []
        for task in plan.tasks:
            problems = [f"{NAMES[name]} {_problem(plan, row, task)}"
                        for name, row in (("lamb", lamb), ("adamw", adamw))
                        if _problem(plan, row, task)]
            if problems:
                cells.append("; ".join(problems))
                continue
            figure = f"{100 * (lamb.mean(task) - adamw.mean(task)):+.1f}"
            cells.append(f"**{figure}**" if differs(lamb, adamw, task, yardstick[task])
                         else figure)
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    return lines


def plot(plan, pretrainings, finetunes, path):
    import matplotlib  # pylint: disable=g-import-not-at-top
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
    table = rows(plan, pretrainings, finetunes)
    figure, axes = plt.subplots(1, len(plan.tasks), figsize=(6.5 * len(plan.tasks), 4.5),
                                squeeze=False)
    for axis, task in zip(axes[0], plan.tasks):
        for optimizer, colour in zip(protocol.OPTIMIZERS, ("tab:blue", "tab:orange")):
            for kind, style in zip(KINDS, ("-", "--")):
                done = [table[kind, optimizer, b] for b in plan.batches
                        if (kind, optimizer, b) in table
                        and table[kind, optimizer, b].problem(plan, task) is None]
                if not done:
                    continue
                means = [100 * row.mean(task) for row in done]
                # Clipped at 0: the float mean of equal seeds (a failed encoder's fine-tunings
                # all answering the majority class) can sit a rounding error past them.
                low = [max(0.0, m - 100 * min(row.tests[task])) for m, row in zip(means, done)]
                high = [max(0.0, 100 * max(row.tests[task]) - m) for m, row in zip(means, done)]
                axis.errorbar([row.batch for row in done], means, yerr=[low, high],
                              color=colour, linestyle=style, marker="o", capsize=3,
                              label=f"{NAMES[optimizer]} {kind}")
        for encoder, label, style in ((protocol.RANDOM, "random weights", ":"),
                                      (protocol.TFIDF, "TF-IDF", "-.")):
            tests = baseline_tests(plan, finetunes, encoder)[task]
            if tests:
                axis.axhline(100 * statistics.fmean(tests), color="grey", linestyle=style,
                             label=label)
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(plan.batches))
        axis.set_xticklabels([str(b) for b in plan.batches])
        axis.set_xlabel(f"pretraining batch ({plan.examples:,} examples at each)")
        axis.set_ylabel(f"{task} test accuracy (%), seeds' range as bars")
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
