"""The steps-to-target search (Shallue et al., JMLR 2019): for each optimizer and batch, the
fewest updates to first reach the validation target, each cell searched the same way.

Like the fixed-budget search (`protocol`), the plan is recomputed from targets.csv every time:
a run whose row exists is read back, any other is trained and appended, so a killed study
resumes where it was and runs in the same order. A cell's grid is centred on the smallest
batch's best rate scaled by sqrt(batch / smallest) (the square-root rule: that centre run is
also "no tuning" at this batch), widened one rate at a time while the best sits on an edge,
and on both sides (the lower first) while no rate reaches the target.
"""

import math
import time

from benchmarks.large_batch_study import presets, target_report
from benchmarks.large_batch_study.protocol import (format_duration, grid,
                                                   search_every_cell, widening_search)
from benchmarks.large_batch_study.results import TargetRecord, target_key


def _updates(record):
    """The score to minimize: updates to target, infinite when not reached. Runs that miss all
    tie: how close a run came is no guide (runs stuck on a plateau differ by noise)."""
    return record.updates_to_target if record.reached else math.inf


class TargetStudy:
    def __init__(self, preset, results, workloads, log=print, after_run=None,
                 clock=time.monotonic):
        self.preset, self.results, self.workloads = preset, results, workloads
        self.log, self.after_run, self.clock = log, after_run, clock
        self._runs = 0

    def run(self, workloads=None):
        """{workload: {(optimizer, batch): best rate or None}} for every plan (or those named)."""
        return {plan.workload: self.run_plan(plan) for plan in self.preset.plans
                if not workloads or plan.workload in workloads}

    def run_plan(self, plan):
        return search_every_cell(plan, self.search_cell, self.ensure)

    def search_cell(self, plan, optimizer, batch, centre):
        """The rate reaching the target in the fewest updates (first seed; ties to the lower
        rate), or None if no rate of the grid, widened, reaches it."""
        rate, fewest = widening_search(
            grid(centre, plan.grid_size, plan.grid_factor),
            lambda lr: -_updates(self.ensure(plan, optimizer, batch, lr, plan.seeds[0])),
            plan.grid_factor, plan.max_widenings, succeeded=math.isfinite)
        return rate if math.isfinite(fewest) else None

    def ensure(self, plan, optimizer, batch, lr, seed):
        """The record of this run: read back if it exists, else trained now and appended."""
        cap = plan.cap_updates(batch)
        existing = self.results.get(target_key(plan.workload, optimizer, batch, lr, plan.target,
                                               cap, seed))
        if existing:
            return existing
        start = self.clock()
        outcome = self.workloads[plan.workload].run_to_target(
            optimizer=optimizer, batch=batch, peak_lr=lr, cap_updates=cap,
            warmup_updates=plan.warmup_updates(batch), eval_every=plan.eval_every(batch),
            target=plan.target, seed=seed)
        record = TargetRecord(
            workload=plan.workload, optimizer=optimizer, batch=batch, peak_lr=lr, seed=seed,
            target=plan.target, cap_updates=cap, eval_every=plan.eval_every(batch),
            warmup_updates=plan.warmup_updates(batch),
            updates_to_target=outcome.updates_to_target,
            best_validation=outcome.best_validation, updates_trained=outcome.updates_trained,
            b_simple=outcome.b_simple, wall_seconds=self.clock() - start,
            examples_per_sec=outcome.examples_per_sec, finite=outcome.finite)
        self.results.add(record)
        self._runs += 1
        self.log(self._progress_line(record))
        if self.after_run:
            self.after_run()
        return record

    def _progress_line(self, record):
        reached = (f"target in {record.updates_to_target} updates" if record.reached else
                   f"not reached in {record.updates_trained} updates")
        state = "" if record.finite else " (loss diverged)"
        seconds = sum(r.wall_seconds for r in self.results.records.values())
        return (f"[run {self._runs} this session, {len(self.results.records)} in all, "
                f"{format_duration(seconds)} of training] {record.workload} {record.optimizer} "
                f"batch={record.batch} lr={record.peak_lr:.4g} seed={record.seed}: {reached} "
                f"(best validation {100 * record.best_validation:.2f}%, B_simple "
                f"{record.b_simple:.4g}){state} in {record.wall_seconds:.0f} s")


def describe(preset):
    """The dry run: each plan's batches, caps, evaluation intervals and first grids."""
    lines = [f"steps-to-target preset {preset.name}: optimizers {', '.join(presets.OPTIMIZERS)}"]
    for plan in preset.plans:
        lines.append(f"\n{plan.workload}: target {plan.target:g} "
                     f"{target_report.METRICS[plan.workload]}, rate warmed up over "
                     f"{plan.warmup_fraction:.0%} of the cap, then constant")
        lines.append(f"  {'batch':>6} {'cap':>8} {'eval every':>11} {'warmup':>7}")
        for batch in plan.batches:
            lines.append(f"  {batch:>6} {plan.cap_updates(batch):>8} "
                         f"{plan.eval_every(batch):>11} {plan.warmup_updates(batch):>7}")
        for optimizer in presets.OPTIMIZERS:
            rates = ", ".join(f"{lr:.3g}" for lr in grid(plan.initial_centres[optimizer],
                                                          plan.grid_size, plan.grid_factor))
            lines.append(f"  {optimizer}: batch {plan.batches[0]} grid [{rates}]; larger "
                         f"batches: {plan.grid_size} rates x{plan.grid_factor:g} apart around "
                         "best(smallest) * sqrt(batch / smallest); then a second seed")
        runs = len(plan.batches) * len(presets.OPTIMIZERS) * (plan.grid_size + len(plan.seeds) - 1)
        lines.append(f"  at least {runs} runs, each stopping at the target or its cap")
    return lines
