"""The studies' CSV files: one row per finished run, appended and flushed as each run ends.

results.csv holds the fixed-budget study's `RunRecord`s, targets.csv the steps-to-target
study's `TargetRecord`s."""

import csv
import dataclasses
import os


@dataclasses.dataclass
class RunRecord:
    workload: str
    optimizer: str
    batch: int
    peak_lr: float
    updates: int
    examples: int
    seed: int
    metric: float            # reported: fashion_cnn test top-1, bert held-out masked-LM accuracy
    selection_metric: float  # what chooses the best rate (fashion_cnn: a validation split)
    wall_seconds: float
    examples_per_sec: float
    warmup_updates: int
    finite: bool             # False: the loss went NaN/Inf (the metrics are then what was left)

    @property
    def key(self):
        return run_key(self.workload, self.optimizer, self.batch, self.peak_lr, self.examples,
                       self.seed)


@dataclasses.dataclass
class TargetRecord:
    """One run of the steps-to-target study: trained until the validation metric first reached
    `target` (checked every `eval_every` updates) or `cap_updates` passed."""
    workload: str
    optimizer: str
    batch: int
    peak_lr: float
    seed: int
    target: float
    cap_updates: int
    eval_every: int
    warmup_updates: int
    updates_to_target: int   # -1: not reached within the cap
    best_validation: float   # the best validation metric seen
    updates_trained: int
    b_simple: float          # gradient noise scale at the run's end (nan: not measured)
    wall_seconds: float
    examples_per_sec: float
    finite: bool

    @property
    def reached(self):
        return self.updates_to_target >= 0

    @property
    def key(self):
        return target_key(self.workload, self.optimizer, self.batch, self.peak_lr, self.target,
                          self.cap_updates, self.seed)


FIELDS = [field.name for field in dataclasses.fields(RunRecord)]


def run_key(workload, optimizer, batch, peak_lr, examples, seed):
    """Identity of a run; the rate is rounded so a rate recomputed from the CSV finds its row."""
    return (workload, optimizer, int(batch), f"{float(peak_lr):.5g}", int(examples), int(seed))


def target_key(workload, optimizer, batch, peak_lr, target, cap_updates, seed):
    return (workload, optimizer, int(batch), f"{float(peak_lr):.5g}", f"{float(target):.5g}",
            int(cap_updates), int(seed))


def _parse(row, record_type):
    values = {}
    for field in dataclasses.fields(record_type):
        if field.type is bool:
            values[field.name] = row[field.name] == "True"
        else:
            values[field.name] = field.type(row[field.name])
    return record_type(**values)


class ResultsFile:
    """A study's memory: what ran is read back, and new rows are appended one at a time."""

    def __init__(self, path, record_type=RunRecord):
        self.path = path
        self.record_type = record_type
        self.fields = [field.name for field in dataclasses.fields(record_type)]
        self.records = {}
        if os.path.exists(path):
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != self.fields:
                    raise ValueError(
                        f"{path} has columns {reader.fieldnames}, not this study's "
                        f"{self.fields}. Move it away or pass another --output_dir.")
                rows = list(reader)
            for index, row in enumerate(rows):
                try:
                    record = _parse(row, record_type)
                except (TypeError, ValueError):
                    if index != len(rows) - 1:
                        raise ValueError(f"{path}: row {index + 2} is damaged: {row}") from None
                    # A study killed while writing its last row: that run is done again.
                    print(f"{path}: dropping an incomplete last row; that run will be rerun.")
                    self._rewrite()
                    break
                self.records[record.key] = record

    def _rewrite(self):
        temporary = self.path + ".tmp"
        with open(temporary, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            writer.writeheader()
            for record in self.records.values():
                writer.writerow(dataclasses.asdict(record))
        os.replace(temporary, self.path)

    def get(self, key):
        return self.records.get(key)

    def add(self, record):
        new_file = not os.path.exists(self.path)
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.fields)
            if new_file:
                writer.writeheader()
            writer.writerow(dataclasses.asdict(record))
            f.flush()
            os.fsync(f.fileno())
        self.records[record.key] = record

    def of_workload(self, workload):
        return [r for r in self.records.values() if r.workload == workload]
