"""The large-batch study on a reduced protocol: its search, files, resuming and planning."""

import csv
import gzip
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.large_batch_study import presets, protocol
from benchmarks.large_batch_study.__main__ import run_study
from benchmarks.large_batch_study.results import FIELDS, ResultsFile
from benchmarks.large_batch_study import workloads
from benchmarks.large_batch_study.workloads import Bert
from tests import bert_runs

# On one pytest-xdist worker: the reduced study (a minute) is made once, not on each.
pytestmark = pytest.mark.xdist_group("large_batch_study")

PLAN = presets.WorkloadPlan(
    "fashion_cnn", (16, 64), examples=64 * 6, grid_size=2, grid_factor=4.0,
    initial_centres=presets.FASHION_CENTRES, max_widenings=1, seeds=(0, 1))
PRESET = presets.Preset("test", (PLAN,), {"fashion_cnn": 5000.0})
# The protocol treats every optimizer alike: two of them, one Adam-type and one not, show it in
# half the time of all four.
STUDIED = ("lamb", "nesterov")


def _write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fashion_dir(tmp_path_factory):
    """Fashion-MNIST-format files whose class is a bright band at one of ten heights."""
    directory = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for stem, count in (("train", 1200), ("t10k", 300)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 60, (count, 28, 28))
        for i, label in enumerate(labels):
            images[i, 2 * label + 4:2 * label + 7, :] += 180
        _write_idx(directory / f"{stem}-images-idx3-ubyte.gz", images)
        _write_idx(directory / f"{stem}-labels-idx1-ubyte.gz", labels)
    return str(directory)


class GraphModeFashionCnn(workloads.FashionCnn):
    """The study's CNN without XLA, which compiles in 1.5 s a run instead of 2.6 s: the
    protocol under test does not depend on how a run is compiled."""

    def __init__(self, data_dir):
        super().__init__(data_dir, jit_compile=False)


@pytest.fixture(scope="module")
def study(fashion_dir, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("study"))
    lines = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workloads, "FashionCnn", GraphModeFashionCnn)
        patch.setattr(presets, "OPTIMIZERS", STUDIED)
        chosen = run_study(PRESET, output_dir, log=lines.append, fashion_mnist_dir=fashion_dir)
    with open(os.path.join(output_dir, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    return output_dir, chosen["fashion_cnn"], rows, lines


def _first_seed_rates(rows, optimizer, batch):
    return sorted(float(r["peak_lr"]) for r in rows if r["optimizer"] == optimizer
                  and int(r["batch"]) == batch and r["seed"] == "0")


def test_every_cell_follows_the_protocol(study):
    _, chosen, rows, _ = study
    assert list(rows[0]) == FIELDS
    for row in rows:
        batch = int(row["batch"])
        assert int(row["updates"]) == PLAN.examples // batch
        assert int(row["examples"]) == PLAN.examples
        assert int(row["warmup_updates"]) == round(0.1 * (PLAN.examples // batch))
        assert 0.0 <= float(row["metric"]) <= 1.0
    assert {row["optimizer"] for row in rows} == set(STUDIED)
    for optimizer in STUDIED:
        small = _first_seed_rates(rows, optimizer, 16)
        large = _first_seed_rates(rows, optimizer, 64)
        # The smallest batch's grid sits around the optimizer's conventional rate; the larger
        # batch's around best(16) * sqrt(64 / 16); each grid of 2 is widened once on the side
        # where its best landed (with 2 rates, always an edge).
        centre = presets.FASHION_CENTRES[optimizer]
        assert any(math.isclose(r, centre / 2) for r in small)
        assert any(math.isclose(r, centre * 2) for r in small)
        assert len(small) == 3 and len(large) == 3
        best_small = chosen[optimizer, 16]
        assert any(math.isclose(r, best_small * 2 / 2) for r in large)
        assert any(math.isclose(r, best_small * 2 * 2) for r in large)
        # The chosen rate has the best selection metric among the first-seed runs ...
        runs = {float(r["peak_lr"]): float(r["selection_metric"]) for r in rows
                if r["optimizer"] == optimizer and int(r["batch"]) == 16 and r["seed"] == "0"}
        assert runs[best_small] == max(runs.values())
        # ... and was run again with the second seed.
        for batch in PLAN.batches:
            again = [r for r in rows if r["optimizer"] == optimizer and int(r["batch"]) == batch
                     and r["seed"] == "1"]
            assert len(again) == 1
            assert math.isclose(float(again[0]["peak_lr"]), chosen[optimizer, batch])


def test_learning_happens_on_the_toy_data(study):
    _, _, rows, _ = study
    best = max(float(r["metric"]) for r in rows)
    assert best > 0.5  # chance is 0.1: the runs really train


def test_table_plot_and_progress_lines(study):
    output_dir, chosen, rows, lines = study
    table = open(os.path.join(output_dir, "study.md")).read()
    for optimizer in STUDIED:
        assert f"| {optimizer} | **" in table
        assert f"lr {chosen[optimizer, 64]:.3g}" in table
    assert "| optimizer | 16 (24 upd.) | 64 (6 upd.) |" in table
    assert "holds up to batch" in table
    with open(os.path.join(output_dir, "study.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(os.path.join(output_dir, "study.png")) > 10_000
    assert len(lines) == len(rows)
    assert lines[0].startswith("[1/") and "study ETA" in lines[0]


class CountingWorkload:
    def __init__(self, real=None):
        self.calls = []
        self.real = real

    def run(self, **kwargs):
        self.calls.append(kwargs)
        if self.real is None:
            raise AssertionError(f"a finished run was trained again: {kwargs}")
        return self.real.run(**kwargs)


def test_a_rerun_skips_finished_runs(study, monkeypatch):
    output_dir, chosen, rows, _ = study
    monkeypatch.setattr(presets, "OPTIMIZERS", STUDIED)
    forbidden = CountingWorkload()
    again = protocol.Study(PRESET, ResultsFile(os.path.join(output_dir, "results.csv")),
                           {"fashion_cnn": forbidden}, log=lambda line: None).run()
    assert again["fashion_cnn"] == chosen and not forbidden.calls


def test_a_study_killed_while_writing_redoes_only_that_run(study, fashion_dir, tmp_path,
                                                           monkeypatch):
    output_dir, chosen, rows, _ = study
    monkeypatch.setattr(presets, "OPTIMIZERS", STUDIED)
    path = tmp_path / "results.csv"
    content = open(os.path.join(output_dir, "results.csv")).read()
    path.write_text(content[:len(content) - 25])  # the last row cut off mid-way
    counting = CountingWorkload(GraphModeFashionCnn(fashion_dir))
    again = protocol.Study(PRESET, ResultsFile(str(path)), {"fashion_cnn": counting},
                           log=lambda line: None).run()
    last = rows[-1]
    assert len(counting.calls) == 1
    call = counting.calls[0]
    assert (call["optimizer"], call["batch"], call["seed"]) == (
        last["optimizer"], int(last["batch"]), int(last["seed"]))
    assert again["fashion_cnn"] == chosen
    assert len(ResultsFile(str(path)).records) == len(rows)


def test_grid_is_geometric_around_its_centre():
    assert np.allclose(protocol.grid(1.0, 5, 2.0), [0.25, 0.5, 1.0, 2.0, 4.0])
    assert np.allclose(protocol.grid(1.0, 2, 4.0), [0.5, 2.0])


def test_gpu_preset_dry_run_prints_the_runs_and_their_cost():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.large_batch_study", "--preset=gpu", "--dry_run",
         "--examples_per_sec=bert=2000"], cwd=bert_runs.REPO, capture_output=True, text=True,
        timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "bert (size=mini, max_seq_length=128)" in out
    assert "at 2,000 examples/s" in out and "at 60,000 examples/s" in out
    for batch in (64, 2048):
        assert f"\n  {batch:>6} " in out
    assert "at least 144 runs" in out and "total: ~" in out


def test_bert_workload_trains_through_the_trainers_runner(tmp_path):
    data_dir = bert_runs.make_data(str(tmp_path / "data"))
    workload = Bert(str(tmp_path / "runs"), data_dir=data_dir, max_seq_length=bert_runs.SEQ,
                    max_predictions_per_seq=bert_runs.PREDICTIONS)
    experiment = workload.experiment("nesterov", 8, 0.1, 4, 1, 3, data_dir)
    assert (experiment.optimizer.name, experiment.optimizer.momentum.nesterov) == ("momentum", True)
    assert experiment.optimizer.momentum.weight_decay == 0.01
    assert experiment.trainer.train_batch_size == 8 and experiment.runtime.seed == 3
    outcome = workload.run(optimizer="lamb", batch=8, peak_lr=0.01, updates=4,
                           warmup_updates=1, seed=0)
    assert outcome.finite and 0.0 <= outcome.metric <= 1.0
    assert outcome.metric == outcome.selection_metric
    assert not os.listdir(tmp_path / "runs")  # the run's model_dir is removed once recorded


def test_bert_runs_to_its_target_through_the_trainers_and_resumes_after_a_kill(
        tmp_path, monkeypatch):
    from benchmarks.large_batch_study import workloads
    data_dir = bert_runs.make_data(str(tmp_path / "data"))
    workload = Bert(str(tmp_path / "runs"), data_dir=data_dir, max_seq_length=bert_runs.SEQ,
                    max_predictions_per_seq=bert_runs.PREDICTIONS, max_eval_steps=2)
    run = dict(optimizer="lamb", batch=8, peak_lr=0.01, warmup_updates=1, seed=0)
    reached = workload.run_to_target(cap_updates=8, eval_every=2, target=0.0, **run)
    assert (reached.updates_to_target, reached.updates_trained) == (2, 2)  # first eval
    assert reached.finite and math.isfinite(reached.b_simple) and reached.b_simple != 0
    assert not os.listdir(tmp_path / "runs")

    # Killed after its last checkpoint, before its row was written: the rerun trains nothing
    # more and still knows the accuracies it saw.
    monkeypatch.setattr(workloads.shutil, "rmtree", lambda *a, **k: None)
    missed = workload.run_to_target(cap_updates=4, eval_every=2, target=1.0, **run)
    assert (missed.updates_to_target, missed.updates_trained) == (-1, 4)
    [model_dir] = os.listdir(tmp_path / "runs")
    seen_path = tmp_path / "runs" / model_dir / "target_evals.json"
    assert len(json.loads(seen_path.read_text())) == 2  # evaluated at updates 2 and 4
    seen_path.write_text("[0.42, 0.125]")  # as if these were seen before the kill
    monkeypatch.undo()
    again = workload.run_to_target(cap_updates=4, eval_every=2, target=1.0, **run)
    assert (again.updates_to_target, again.updates_trained) == (-1, 4)
    assert again.best_validation == 0.42
    assert not os.listdir(tmp_path / "runs")

    # Killed right after the eval that reached the target: the rerun reports that checkpoint
    # instead of training on past it.
    monkeypatch.setattr(workloads.shutil, "rmtree", lambda *a, **k: None)
    workload.run_to_target(cap_updates=8, eval_every=2, target=0.0, **run)
    monkeypatch.undo()
    done = workload.run_to_target(cap_updates=8, eval_every=2, target=0.0, **run)
    assert (done.updates_to_target, done.updates_trained) == (2, 2)
    assert done.best_validation == reached.best_validation
    assert not os.listdir(tmp_path / "runs")


def test_a_cell_whose_search_has_not_ended_is_shown_in_progress():
    from benchmarks.large_batch_study import report
    from benchmarks.large_batch_study.results import RunRecord

    def record(optimizer, lr, seed, metric):
        return RunRecord("fashion_cnn", optimizer, 16, lr, 24, 384, seed, metric, metric, 1.0,
                         100.0, 2, True)

    records = [record("lamb", 0.002, 0, 0.8), record("lamb", 0.008, 0, 0.9),
               record("lamb", 0.008, 1, 0.7),  # search ended: second seed at the best rate
               record("adamw", 0.001, 0, 0.85)]  # still searching
    table = report.markdown(PRESET, records)
    assert "| lamb | **80.00** (90.0/70.0)<br>lr 0.008 | not run yet |" in table
    assert "| adamw | in progress | not run yet |" in table
    assert "| lars | not run yet | not run yet |" in table
