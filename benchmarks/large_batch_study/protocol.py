"""The search: which runs the study makes, in which order, given what has already run.

The plan is recomputed from results.csv every time: a run whose row exists is read back, any
other is trained and appended. That is all resuming needs, and it makes the order of runs (and
so the grids of later cells, which depend on earlier bests) identical whether or not the study
was interrupted.
"""

import math
import time

from benchmarks.large_batch_study import presets
from benchmarks.large_batch_study.results import RunRecord, run_key


def grid(centre, size, factor):
    """`size` rates spaced by `factor`, geometrically centred on `centre`."""
    return [centre * factor ** (k - (size - 1) / 2) for k in range(size)]


def _score(value):
    return -math.inf if math.isnan(value) else value


def search_every_cell(plan, search_cell, ensure):
    """{(optimizer, batch): best rate} of every cell, batches in ascending order.

    The smallest batch's grid is centred on the optimizer's initial centre, every larger one on
    the square-root scaling of the smallest batch's best (the paper's rule). `search_cell(plan,
    optimizer, batch, centre)` returns a cell's best rate, or None when no rate succeeded (then
    larger batches have nothing to scale from and are None too); each best rate is run again
    with the plan's further seeds through `ensure(plan, optimizer, batch, rate, seed)`.
    """
    best = {}
    smallest = plan.batches[0]
    for batch in plan.batches:
        for optimizer in presets.OPTIMIZERS:
            if batch == smallest:
                centre = plan.initial_centres[optimizer]
            elif best[optimizer, smallest] is None:
                best[optimizer, batch] = None
                continue
            else:
                centre = best[optimizer, smallest] * math.sqrt(batch / smallest)
            best[optimizer, batch] = search_cell(plan, optimizer, batch, centre)
            if best[optimizer, batch] is not None:
                for seed in plan.seeds[1:]:
                    ensure(plan, optimizer, batch, best[optimizer, batch], seed)
    return best


def widening_search(rates, score, factor, max_widenings, on_widen=lambda: None,
                    succeeded=lambda score: True):
    """(rate, score) of the highest `score(rate)` over `rates` (ties to the lower rate), trying
    one more rate a `factor` past an edge while the best sits on it, at most `max_widenings`
    times per side. While no score has `succeeded`, the best says nothing about where to look:
    every widening is tried, the low side first (too high a rate is the commoner failure)."""
    rates = list(rates)
    scores = [score(lr) for lr in rates]
    widened = {"low": 0, "high": 0}
    while True:
        best = max(range(len(rates)), key=lambda i: scores[i])
        lost = not succeeded(scores[best])
        if (best == 0 or lost) and widened["low"] < max_widenings:
            side, lr = "low", rates[0] / factor
        elif (best == len(rates) - 1 or lost) and widened["high"] < max_widenings:
            side, lr = "high", rates[-1] * factor
        else:
            return rates[best], scores[best]
        widened[side] += 1
        on_widen()
        if side == "low":
            rates.insert(0, lr)
            scores.insert(0, score(lr))
        else:
            rates.append(lr)
            scores.append(score(lr))


class Study:
    def __init__(self, preset, results, workloads, log=print, after_run=None,
                 clock=time.monotonic):
        self.preset = preset
        self.after_run = after_run
        self.results = results
        self.workloads = workloads  # name -> object with run(...) -> workloads.Outcome
        self.log = log
        self.clock = clock
        self._planned = {plan.workload: minimum_runs(plan) for plan in preset.plans}
        self._visited = {plan.workload: 0 for plan in preset.plans}

    # ------------------------------------------------------------------------------ search
    def run(self, workloads=None):
        """Runs every plan (or those named); returns {workload: {(optimizer, batch): lr}}."""
        chosen = {}
        for plan in self.preset.plans:
            if workloads and plan.workload not in workloads:
                continue
            chosen[plan.workload] = self.run_plan(plan)
        return chosen

    def run_plan(self, plan):
        return search_every_cell(plan, self.search_cell, self.ensure)

    def search_cell(self, plan, optimizer, batch, centre):
        """The best rate (on the selection metric, first seed) of a grid widened off its edges."""
        def widen():
            self._planned[plan.workload] += 1

        rate, _ = widening_search(
            grid(centre, plan.grid_size, plan.grid_factor),
            lambda lr: _score(self.ensure(plan, optimizer, batch, lr,
                                          plan.seeds[0]).selection_metric),
            plan.grid_factor, plan.max_widenings, on_widen=widen)
        return rate

    def ensure(self, plan, optimizer, batch, lr, seed):
        """The record of this run: read back if it exists, else trained now and appended."""
        self._visited[plan.workload] += 1
        existing = self.results.get(run_key(plan.workload, optimizer, batch, lr, plan.examples,
                                            seed))
        if existing:
            return existing
        updates = plan.updates(batch)
        warmup = int(round(plan.warmup_fraction * updates))
        start = self.clock()
        outcome = self.workloads[plan.workload].run(
            optimizer=optimizer, batch=batch, peak_lr=lr, updates=updates,
            warmup_updates=warmup, seed=seed)
        record = RunRecord(
            workload=plan.workload, optimizer=optimizer, batch=batch, peak_lr=lr,
            updates=updates, examples=updates * batch, seed=seed, metric=outcome.metric,
            selection_metric=outcome.selection_metric, wall_seconds=self.clock() - start,
            examples_per_sec=outcome.examples_per_sec, warmup_updates=warmup,
            finite=outcome.finite)
        self.results.add(record)
        self.log(self._progress_line(record))
        if self.after_run:
            self.after_run()
        return record

    # ---------------------------------------------------------------------------- progress
    def _seconds_per_run(self, plan):
        done = [r.wall_seconds for r in self.results.of_workload(plan.workload)
                if r.updates == plan.updates(r.batch)]
        if done:
            return sum(done) / len(done)
        return plan.examples / self.preset.assumed_examples_per_sec[plan.workload]

    def eta_seconds(self):
        """Runs still planned (at least; widening may add some) times their mean cost."""
        return sum(max(self._planned[p.workload] - self._visited[p.workload], 0)
                   * self._seconds_per_run(p) for p in self.preset.plans
                   if p.workload in self._planned)

    def _progress_line(self, record):
        visited = sum(self._visited.values())
        planned = sum(self._planned.values())
        state = "" if record.finite else "  (loss diverged)"
        return (f"[{visited}/{planned}] {record.workload} {record.optimizer} "
                f"batch={record.batch} lr={record.peak_lr:.4g} seed={record.seed}: "
                f"metric {100 * record.metric:.2f}% (selection {100 * record.selection_metric:.2f}%)"
                f" in {record.wall_seconds:.0f} s, {record.examples_per_sec:,.0f} examples/s"
                f"{state}; study ETA {format_duration(self.eta_seconds())}")


def minimum_runs(plan):
    """Runs of a plan when no grid needs widening."""
    cells = len(plan.batches) * len(presets.OPTIMIZERS)
    return cells * (plan.grid_size + len(plan.seeds) - 1)


def format_duration(seconds):
    minutes = int(round(seconds / 60))
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def describe_plan(preset, examples_per_sec=None):
    """The dry run: every plan's runs and their estimated cost, as printable lines."""
    lines = [f"preset {preset.name}: optimizers {', '.join(presets.OPTIMIZERS)}"]
    total = 0.0
    for plan in preset.plans:
        rate = (examples_per_sec or {}).get(plan.workload,
                                            preset.assumed_examples_per_sec[plan.workload])
        runs = minimum_runs(plan)
        seconds = runs * plan.examples / rate
        total += seconds
        options = ", ".join(f"{k}={v}" for k, v in plan.options)
        lines.append(f"\n{plan.workload}{f' ({options})' if options else ''}: "
                     f"{plan.examples:,} training examples per run, warmup "
                     f"{plan.warmup_fraction:.0%} of updates then linear decay")
        lines.append(f"  {'batch':>6} {'updates':>8} {'warmup':>7}")
        for batch in plan.batches:
            updates = plan.updates(batch)
            lines.append(f"  {batch:>6} {updates:>8} {int(round(plan.warmup_fraction * updates)):>7}")
        smallest = plan.batches[0]
        for optimizer in presets.OPTIMIZERS:
            rates = ", ".join(f"{lr:.3g}" for lr in
                              grid(plan.initial_centres[optimizer], plan.grid_size,
                                   plan.grid_factor))
            lines.append(f"  {optimizer}: batch {smallest} grid [{rates}]; larger batches: "
                         f"{plan.grid_size} rates x{plan.grid_factor:g} apart around "
                         "best(smallest) * sqrt(batch / smallest)")
        lines.append(f"  at least {runs} runs ({len(plan.batches)} batches x "
                     f"{len(presets.OPTIMIZERS)} optimizers x {plan.grid_size} rates + "
                     f"{len(plan.seeds) - 1} more seed(s) of each best), "
                     f"{runs * plan.examples:,} examples: ~{format_duration(seconds)} at "
                     f"{rate:,.0f} examples/s (assumed; --examples_per_sec overrides)")
    lines.append(f"\ntotal: ~{format_duration(total)} before any widening of grids")
    return lines
