"""targets.md and targets.png of the steps-to-target study: updates to target against batch
(log-log) with perfect scaling, B_simple, and what each optimizer keeps without tuning."""

import math
import statistics

import numpy as np

from benchmarks.large_batch_study import presets

# What each workload's target is measured on.
METRICS = {"fashion_cnn": "validation accuracy", "bert": "held-out masked-LM accuracy"}


def cells(plan, records):
    """{(optimizer, batch): {"best": rate, "updates": [per seed], "no_tuning": updates}}."""
    mine = [r for r in records if r.workload == plan.workload and r.target == plan.target]
    found = {}
    smallest = plan.batches[0]
    for optimizer in presets.OPTIMIZERS:
        small_best = _best_rate(mine, optimizer, smallest, plan.seeds[0])
        for batch in plan.batches:
            best = _best_rate(mine, optimizer, batch, plan.seeds[0])
            if best is None:
                continue
            updates = [r.updates_to_target if r.reached else math.inf for r in mine
                       if r.optimizer == optimizer and r.batch == batch
                       and f"{r.peak_lr:.5g}" == f"{best:.5g}"]
            no_tuning = None
            if small_best is not None:
                centre = small_best * math.sqrt(batch / smallest)
                for r in mine:
                    if (r.optimizer, r.batch, r.seed) == (optimizer, batch, plan.seeds[0]) and \
                            f"{r.peak_lr:.5g}" == f"{centre:.5g}":
                        no_tuning = r.updates_to_target if r.reached else math.inf
            found[optimizer, batch] = {"best": best, "updates": updates, "no_tuning": no_tuning}
    return found


def _best_rate(records, optimizer, batch, seed):
    runs = [r for r in records if (r.optimizer, r.batch, r.seed) == (optimizer, batch, seed)
            and r.reached]
    if not runs:
        return None
    return min(runs, key=lambda r: (r.updates_to_target, r.peak_lr)).peak_lr


def _mean(updates):
    return math.inf if not updates or any(math.isinf(u) for u in updates) \
        else statistics.mean(updates)


def largest_batch_within(plan, found, optimizer, factor=2.0):
    """The largest batch whose updates stay within `factor` of perfect scaling from the
    smallest batch (updates x batch constant), with every smaller batch within it too."""
    smallest = plan.batches[0]
    base = found.get((optimizer, smallest))
    if base is None or math.isinf(_mean(base["updates"])):
        return None
    examples = _mean(base["updates"]) * smallest
    largest = smallest
    for batch in plan.batches[1:]:
        cell = found.get((optimizer, batch))
        if cell is None or _mean(cell["updates"]) > factor * examples / batch:
            break
        largest = batch
    return largest


def fitted_critical_batch(plan, found, optimizer):
    """B_crit of McCandlish et al.'s model S = S_min (1 + B_crit / B), fitted over the cells
    that reached the target (linear in 1 / B; relative residuals, as S spans orders of
    magnitude); None without two such cells or a fit with S_min <= 0."""
    points = [(1.0 / b, _mean(found[optimizer, b]["updates"])) for b in plan.batches
              if (optimizer, b) in found and math.isfinite(_mean(found[optimizer, b]["updates"]))]
    if len(points) < 2:
        return None
    inverse_batch, updates = (np.array(v) for v in zip(*points))
    slope, s_min = np.polyfit(inverse_batch, updates, 1, w=1.0 / updates)
    return slope / s_min if s_min > 0 else None


def predicted_largest_within(plan, b_simple, factor=2.0):
    """The largest batch within `factor` of perfect scaling from the smallest batch if B_simple
    were the critical batch: S B = S_min (B + B_crit) <= factor S_min (b0 + B_crit)."""
    return factor * plan.batches[0] + (factor - 1) * b_simple


def b_simple_at_smallest(plan, records):
    """Median B_simple at the end of the smallest batch's runs that reached the target."""
    values = [r.b_simple for r in records if r.workload == plan.workload
              and r.batch == plan.batches[0] and r.reached and math.isfinite(r.b_simple)]
    return statistics.median(values) if values else None


def _shown(updates):
    if updates is None:
        return "not run yet"
    return "-" if math.isinf(updates) else str(updates)


def markdown(preset, records):
    lines = [f"# Steps to target, preset {preset.name}\n"]
    for plan in preset.plans:
        found = cells(plan, records)
        mine = [r for r in records if r.workload == plan.workload]
        lines.append(f"## {plan.workload}: updates to {100 * plan.target:.0f}% "
                     f"{METRICS[plan.workload]} ({len(mine)} runs)\n")
        ran = {(r.optimizer, r.batch) for r in mine}
        lines.append("Best rate's updates (mean of seeds; each in brackets; `-`: not reached "
                     "by any rate run so far within the cap):\n")
        lines.append("| optimizer | " + " | ".join(str(b) for b in plan.batches) + " |")
        lines.append("|---|" + "---:|" * len(plan.batches))
        for optimizer in presets.OPTIMIZERS:
            row = []
            for batch in plan.batches:
                cell = found.get((optimizer, batch))
                if cell is None:
                    row.append("-" if (optimizer, batch) in ran else "not run yet")
                    continue
                shown = "/".join("-" if math.isinf(u) else str(u) for u in cell["updates"])
                mean = _mean(cell["updates"])
                row.append(f"{'-' if math.isinf(mean) else f'{mean:.0f}'} ({shown}) "
                           f"@ {cell['best']:.3g}")
            lines.append(f"| {optimizer} | " + " | ".join(row) + " |")
        lines.append("")
        b_simple = b_simple_at_smallest(plan, records)
        lines.append(f"B_simple at the end of the smallest batch's runs (median): "
                     f"{'n/a' if b_simple is None else f'{b_simple:.0f}'}\n")
        if b_simple is not None:
            lines.append(f"If B_simple were the critical batch, updates would stay within 2x of "
                         f"perfect scaling up to batch ~"
                         f"{predicted_largest_within(plan, b_simple):.0f} (2 x "
                         f"{plan.batches[0]} + B_simple).\n")
        for optimizer in presets.OPTIMIZERS:
            largest = largest_batch_within(plan, found, optimizer)
            critical = fitted_critical_batch(plan, found, optimizer)
            no_tuning = [f"{b}: {_shown(found[optimizer, b]['no_tuning'])}"
                         for b in plan.batches if (optimizer, b) in found]
            lines.append(f"- {optimizer}: largest batch within 2x of perfect scaling: "
                         f"{largest if largest else 'n/a'}; fitted critical batch (S = S_min (1 "
                         f"+ B_crit / B)): {'n/a' if critical is None else f'{critical:.0f}'}; "
                         f"with no tuning (square-root rule from the smallest batch's best "
                         f"rate), updates: {', '.join(no_tuning)}")
        missing = sum((o, b) not in ran for o in presets.OPTIMIZERS for b in plan.batches)
        if missing:
            lines.append(f"- incomplete: {missing} (optimizer, batch) cells not run yet; the "
                         "statements above cover the cells run so far")
        lines.append("")
    return "\n".join(lines) + "\n"


def plot(preset, records, path):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(1, len(preset.plans), figsize=(6 * len(preset.plans), 4.5),
                                   squeeze=False)
    for axis, plan in zip(axes[0], preset.plans):
        found = cells(plan, records)
        bases = []
        for optimizer in presets.OPTIMIZERS:
            points = [(b, _mean(found[optimizer, b]["updates"])) for b in plan.batches
                      if (optimizer, b) in found and math.isfinite(_mean(found[optimizer, b]
                                                                         ["updates"]))]
            if points:
                axis.plot(*zip(*points), marker="o", label=optimizer)
                if points[0][0] == plan.batches[0]:
                    bases.append(points[0][1] * points[0][0])
        if bases:
            examples = min(bases)
            axis.plot(plan.batches, [examples / b for b in plan.batches], "k--", linewidth=1,
                      label="perfect scaling")
        b_simple = b_simple_at_smallest(plan, records)
        if b_simple:
            axis.axvline(b_simple, color="grey", linestyle=":", label=f"B_simple {b_simple:.0f}")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("global batch")
        axis.set_ylabel(f"updates to {100 * plan.target:.0f}% {METRICS[plan.workload]}")
        axis.set_title(plan.workload)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
