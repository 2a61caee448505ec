"""study.png and study.md from results.csv: the best metric of each (optimizer, batch) cell."""

import dataclasses
import math
import statistics

from benchmarks.large_batch_study import presets

WITHIN_POINTS = 1.0  # "holds": within this many points of the optimizer's own smallest batch


@dataclasses.dataclass
class Cell:
    """The chosen rate of one (optimizer, batch) and its metric over the seeds run at it."""
    optimizer: str
    batch: int
    peak_lr: float
    updates: int
    metrics: list          # reported metric, one per seed at the chosen rate
    rates_tried: int
    complete: bool         # the search ended: its best rate has been run with every seed

    @property
    def mean(self):
        return statistics.fmean(self.metrics)


def best_cells(records, plan, complete_only=True):
    """Per (optimizer, batch): the rate with the best first-seed selection metric (only cells
    whose search has ended, unless `complete_only` is False)."""
    cells = {}
    for optimizer in presets.OPTIMIZERS:
        for batch in plan.batches:
            runs = [r for r in records if r.optimizer == optimizer and r.batch == batch
                    and r.updates == plan.updates(batch) and r.workload == plan.workload]
            first_seed = [r for r in runs if r.seed == plan.seeds[0]]
            if not first_seed:
                continue
            chosen = max(first_seed, key=lambda r: -math.inf if math.isnan(r.selection_metric)
                         else r.selection_metric)
            same_rate = [r.metric for r in runs if f"{r.peak_lr:.5g}" == f"{chosen.peak_lr:.5g}"]
            # Later seeds run only once a cell's search has ended.
            complete = (len(same_rate) == len(plan.seeds) if len(plan.seeds) > 1
                        else len(first_seed) >= plan.grid_size)
            cells[optimizer, batch] = Cell(optimizer, batch, chosen.peak_lr, chosen.updates,
                                           same_rate, len(first_seed), complete)
    if complete_only:
        cells = {key: cell for key, cell in cells.items() if cell.complete}
    return cells


def holds_up_to(cells, optimizer, batches):
    """The largest batch up to which every batch stays within WITHIN_POINTS of the smallest."""
    if (optimizer, batches[0]) not in cells:
        return None
    reference = cells[optimizer, batches[0]].mean
    held = batches[0]
    for batch in batches[1:]:
        cell = cells.get((optimizer, batch))
        if cell is None or 100 * (reference - cell.mean) > WITHIN_POINTS:
            break
        held = batch
    return held


def markdown(preset, records):
    lines = [f"# Large-batch study, preset `{preset.name}`", ""]
    for plan in preset.plans:
        workload_records = [r for r in records if r.workload == plan.workload]
        if not workload_records:
            continue
        cells = best_cells(workload_records, plan)
        started = best_cells(workload_records, plan, complete_only=False)
        metric = {"fashion_cnn": "test top-1 (%), rate chosen on a 5,000-image validation "
                                 "split", "bert": "held-out masked-LM accuracy (%)"}.get(
                                     plan.workload, "metric (%)")
        lines += [f"## {plan.workload}", "",
                  f"{metric}; {plan.examples:,} training examples per run; mean over seeds "
                  "(each seed in brackets) at the best rate, which is given below the metric.", ""]
        header = "| optimizer | " + " | ".join(
            f"{b} ({plan.updates(b)} upd.)" for b in plan.batches) + " |"
        lines += [header, "|---|" + "---:|" * len(plan.batches)]
        for optimizer in presets.OPTIMIZERS:
            row = [optimizer]
            for batch in plan.batches:
                cell = cells.get((optimizer, batch))
                if cell is None:
                    row.append("in progress" if (optimizer, batch) in started else "not run yet")
                    continue
                seeds = "/".join(f"{100 * m:.1f}" for m in cell.metrics)
                row.append(f"**{100 * cell.mean:.2f}** ({seeds})<br>lr {cell.peak_lr:.3g}")
            lines.append("| " + " | ".join(row) + " |")
        lines += ["", "What held (within "
                  f"{WITHIN_POINTS:g} point of the optimizer's own batch-{plan.batches[0]} "
                  "metric):", ""]
        complete = all((o, b) in cells for o in presets.OPTIMIZERS for b in plan.batches)
        for optimizer in presets.OPTIMIZERS:
            held = holds_up_to(cells, optimizer, plan.batches)
            if held is None:
                continue
            largest = max(b for o, b in cells if o == optimizer)
            at_largest = cells[optimizer, largest].mean
            lines.append(f"- {optimizer}: holds up to batch {held}; at batch {largest} "
                         f"{100 * at_largest:.2f}% vs {100 * cells[optimizer, plan.batches[0]].mean:.2f}%"
                         f" at {plan.batches[0]}")
        if complete:
            largest = plan.batches[-1]
            ranking = sorted(presets.OPTIMIZERS, key=lambda o: -cells[o, largest].mean)
            lines.append(f"- at batch {largest}: " + " > ".join(
                f"{o} {100 * cells[o, largest].mean:.2f}" for o in ranking))
        else:
            lines.append("- incomplete: cells not run yet or in progress are still to come "
                         "(rerun the same command to continue).")
        lines.append("")
    return "\n".join(lines)


def plot(preset, records, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plans = [p for p in preset.plans if any(r.workload == p.workload for r in records)]
    figure, axes = plt.subplots(1, max(1, len(plans)), figsize=(6 * max(1, len(plans)), 4.5),
                                squeeze=False)
    for axis, plan in zip(axes[0], plans):
        cells = best_cells([r for r in records if r.workload == plan.workload], plan)
        for optimizer in presets.OPTIMIZERS:
            points = sorted((b, c) for (o, b), c in cells.items() if o == optimizer)
            if not points:
                continue
            batches = [b for b, _ in points]
            means = [100 * c.mean for _, c in points]
            low = [m - 100 * min(c.metrics) for m, (_, c) in zip(means, points)]
            high = [100 * max(c.metrics) - m for m, (_, c) in zip(means, points)]
            axis.errorbar(batches, means, yerr=[low, high], marker="o", capsize=3,
                          label=optimizer)
        axis.set_xscale("log", base=2)
        axis.set_xticks(list(plan.batches))
        axis.set_xticklabels([str(b) for b in plan.batches])
        axis.set_xlabel(f"global batch ({plan.examples:,} examples per run)")
        axis.set_ylabel("test top-1 (%)" if plan.workload == "fashion_cnn"
                        else "held-out masked-LM accuracy (%)")
        axis.set_title(f"{plan.workload}: best rate per batch, seeds as bars")
        axis.grid(True, alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
