"""The steps-to-target study: its search on a workload whose answer is known, resuming after a
kill, the report, and one real Keras run that stops at its target."""

import math
import os

import pytest

from benchmarks.large_batch_study import presets, target_report
from benchmarks.large_batch_study.__main__ import run_target_study
from benchmarks.large_batch_study.results import ResultsFile, TargetRecord
from benchmarks.large_batch_study.steps_to_target import TargetStudy
from benchmarks.large_batch_study.workloads import FashionCnn, TargetOutcome
from tests.test_large_batch_study import fashion_dir  # noqa: F401  (fixture)

PLAN = presets.TargetPlan("fashion_cnn", (16, 32, 64, 128), target=0.9, cap_examples=16 * 4000,
                          eval_examples=16 * 10, grid_size=3, grid_factor=2.0,
                          initial_centres={"lamb": 0.01, "lars": 0.01, "adamw": 0.01,
                                           "nesterov": 0.01},
                          min_cap_updates=100, max_widenings=3, seeds=(0, 1))
PRESET = presets.Preset("test", (PLAN,), {})
CRITICAL_BATCH = 64


class KnownWorkload:
    """McCandlish et al.'s model of steps against batch, S = S_min (1 + B_crit / B), at the best
    rate 0.04 * sqrt(B / 16) (lamb: 0.02 * ...); each factor of two off it costs 50% more
    updates, and four times above it diverges. Rounded up to whole evaluation intervals."""

    def __init__(self):
        self.calls = []

    def run_to_target(self, optimizer, batch, peak_lr, cap_updates, warmup_updates,
                      eval_every, target, seed):
        self.calls.append((optimizer, batch, peak_lr, seed))
        best = (0.02 if optimizer == "lamb" else 0.04) * math.sqrt(batch / 16)
        off = abs(math.log2(peak_lr / best))
        if peak_lr > 3.9 * best:
            return TargetOutcome(-1, 0.1, 10, float("nan"), 1000.0, False)
        updates = 200 * (1 + CRITICAL_BATCH / batch) * (1 + 0.5 * off) + seed
        updates = int(math.ceil(updates / eval_every) * eval_every)
        reached = updates <= cap_updates
        return TargetOutcome(updates if reached else -1, 0.95 if reached else 0.5,
                             updates if reached else cap_updates, 60.0 + seed, 1000.0, True)


def test_each_cell_finds_the_rate_reaching_the_target_first(tmp_path):
    workload = KnownWorkload()
    results = ResultsFile(str(tmp_path / "targets.csv"), TargetRecord)
    chosen = TargetStudy(PRESET, results, {"fashion_cnn": workload}, log=lambda _: None) \
        .run()["fashion_cnn"]
    for batch in PLAN.batches:
        expected = 0.04 * math.sqrt(batch / 16)
        assert chosen["adamw", batch] == pytest.approx(expected)  # found by widening up
        assert chosen["lamb", batch] == pytest.approx(expected / 2)
    # Each best rate ran again with the second seed.
    assert ("lars", 128, pytest.approx(0.04 * math.sqrt(8)), 1) in workload.calls
    record = results.get(next(k for k in results.records if k[1] == "adamw" and k[2] == 16
                              and k[-1] == 0 and k[3] == f"{0.04:.5g}"))
    assert record.updates_to_target == 1000 and record.eval_every == 10  # 200 (1 + 64 / 16)


def test_a_cell_whose_whole_grid_misses_widens_on_both_sides_lower_first(tmp_path):
    class LowerRatesAtBatch64(KnownWorkload):
        """At batch 64, AdamW (grid 0.04, 0.08, 0.16 by the square-root rule) and LAMB (0.02,
        0.04, 0.08) miss above 0.01, as Adam does with too short a warmup, and reach the target
        at 0.01 and below, in more updates the lower the rate. LAMB's misses come closer the
        higher the rate (noise on a plateau), so how close a miss came must not steer the
        search. LARS at 64 misses everywhere."""

        def run_to_target(self, optimizer, batch, peak_lr, cap_updates, **kwargs):
            if batch != 64 or optimizer == "nesterov":
                return super().run_to_target(optimizer, batch, peak_lr, cap_updates, **kwargs)
            self.calls.append((optimizer, batch, peak_lr, kwargs["seed"]))
            if peak_lr > 0.0101 or optimizer == "lars":
                closeness = peak_lr if optimizer == "lamb" else -peak_lr
                return TargetOutcome(-1, 0.5 + closeness, cap_updates, 60.0, 1000.0, True)
            return TargetOutcome(int(400 * 0.01 / peak_lr), 0.95, 400, 60.0, 1000.0, True)

    workload = LowerRatesAtBatch64()
    chosen = TargetStudy(PRESET, ResultsFile(str(tmp_path / "targets.csv"), TargetRecord),
                         {"fashion_cnn": workload}, log=lambda _: None).run()["fashion_cnn"]

    def tried(optimizer):
        return [lr for o, b, lr, seed in workload.calls if (o, b, seed) == (optimizer, 64, 0)]

    # Down from the grid to 0.01, which reaches the target; then once more, slower.
    assert tried("adamw") == pytest.approx([0.04, 0.08, 0.16, 0.02, 0.01, 0.005])
    assert chosen["adamw", 64] == pytest.approx(0.01)
    assert ("adamw", 64, pytest.approx(0.01), 1) in workload.calls
    assert tried("lamb") == pytest.approx([0.02, 0.04, 0.08, 0.01, 0.005])
    assert chosen["lamb", 64] == pytest.approx(0.01)
    # Every widening on both sides (3 each in this plan), then the cell counts as missed.
    lars_grid = 0.04 * 2
    assert tried("lars") == pytest.approx([lars_grid * 2 ** k for k in (-1, 0, 1, -2, -3, -4,
                                                                         2, 3, 4)])
    assert chosen["lars", 64] is None


def test_a_killed_study_resumes_without_training_a_finished_run_again(tmp_path):
    class Killed(Exception):
        pass

    class Dying(KnownWorkload):
        def run_to_target(self, **kwargs):
            if len(self.calls) == 7:
                raise Killed()
            return super().run_to_target(**kwargs)

    path = str(tmp_path / "targets.csv")
    with pytest.raises(Killed):
        TargetStudy(PRESET, ResultsFile(path, TargetRecord), {"fashion_cnn": Dying()},
                    log=lambda _: None).run()
    resumed = KnownWorkload()
    TargetStudy(PRESET, ResultsFile(path, TargetRecord), {"fashion_cnn": resumed},
                log=lambda _: None).run()
    uninterrupted = KnownWorkload()
    TargetStudy(PRESET, ResultsFile(str(tmp_path / "whole.csv"), TargetRecord),
                {"fashion_cnn": uninterrupted}, log=lambda _: None).run()
    assert resumed.calls == uninterrupted.calls[7:]


def test_the_report_states_the_scaling_and_no_tuning_per_optimizer(tmp_path):
    results = ResultsFile(str(tmp_path / "targets.csv"), TargetRecord)
    TargetStudy(PRESET, results, {"fashion_cnn": KnownWorkload()}, log=lambda _: None).run()
    records = list(results.records.values())
    found = target_report.cells(PLAN, records)
    # S = 200 (1 + 64 / B): 1005 updates (mean of seeds) at 16, so perfect scaling is 251 at 64
    # and 126 at 128; 400 (at 64) is within twice that, 300 (at 128) is not.
    assert found["adamw", 16]["updates"] == [1000, 1010]
    assert target_report.largest_batch_within(PLAN, found, "adamw") == 64
    # The square-root rule is exactly right here: no tuning costs nothing.
    assert found["adamw", 64]["no_tuning"] == found["adamw", 64]["updates"][0]
    text = target_report.markdown(PRESET, records)
    assert "| adamw | 1005 (1000/1010) @ 0.04 |" in text
    assert "B_simple at the end of the smallest batch's runs (median): 60" in text
    assert "- adamw: largest batch within 2x of perfect scaling: 64; fitted critical batch " \
        "(S = S_min (1 + B_crit / B)): 64;" in text
    assert 62 < target_report.fitted_critical_batch(PLAN, found, "adamw") < 66
    assert "within 2x of perfect scaling up to batch ~92 (2 x 16 + B_simple)" in text
    assert "incomplete" not in text
    target_report.plot(PRESET, records, str(tmp_path / "targets.png"))
    assert os.path.getsize(tmp_path / "targets.png") > 10_000

    # Killed after the first batch: later cells are "not run yet", not "not reached".
    partial = target_report.markdown(PRESET, [r for r in records if r.batch == 16])
    assert "| adamw | 1005 (1000/1010) @ 0.04 | not run yet | not run yet | not run yet |" \
        in partial
    assert "- incomplete: 12 (optimizer, batch) cells not run yet" in partial
    # Batch 32's first rate only: its square-root-rule run has not happened yet.
    first_of_32 = [r for r in records if r.batch == 16] + [next(
        r for r in records if (r.optimizer, r.batch) == ("adamw", 32))]
    assert "(square-root rule from the smallest batch's best rate), updates: 16: 1000, " \
        "32: not run yet" in target_report.markdown(PRESET, first_of_32)


def test_a_keras_run_stops_at_its_target_and_measures_the_noise_scale(fashion_dir):  # noqa: F811
    outcome = FashionCnn(fashion_dir).run_to_target(
        optimizer="lamb", batch=32, peak_lr=0.01, cap_updates=300, warmup_updates=5,
        eval_every=10, target=0.5, seed=0)
    assert outcome.finite and 0 < outcome.updates_to_target <= 300
    assert outcome.updates_to_target % 10 == 0
    assert outcome.updates_trained == outcome.updates_to_target  # stopped there
    assert outcome.best_validation >= 0.5
    assert math.isfinite(outcome.b_simple) and outcome.b_simple > 0


def test_a_small_preset_runs_end_to_end_into_its_three_files(fashion_dir, tmp_path):  # noqa: F811
    small = presets.TargetPlan("fashion_cnn", (32,), target=0.5, cap_examples=32 * 40,
                               eval_examples=320, grid_size=1, grid_factor=2.0,
                               initial_centres=presets.FASHION_CENTRES, min_cap_updates=10,
                               max_widenings=0, seeds=(0,))
    lines = []
    run_target_study(presets.Preset("small", (small,)), str(tmp_path), log=lines.append,
                     fashion_mnist_dir=fashion_dir)
    assert sorted(os.listdir(tmp_path)) == ["targets.csv", "targets.md", "targets.png"]
    assert lines and lines[0].startswith("[run 1 this session, 1 in all, ")
