"""The pretraining study's reruns of the large-batch study's BERT cells use the rate, batch,
updates and warmup that study chose (on command 1's model, not the study's)."""

import csv
import math
import os

from benchmarks import pretraining_study

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "benchmarks", "results", "large_batch_study_cpu", "results.csv")


def _flag(flags, name):
    return next(f.split("=", 1)[1] for f in flags if f.startswith(f"--{name}="))


def test_study_cells_take_the_large_batch_studys_chosen_rate_batch_and_schedule():
    with open(RESULTS) as f:
        rows = [r for r in csv.DictReader(f) if r["workload"] == "bert" and r["seed"] == "1"]
    cells = {name: flags for name, (_, flags) in pretraining_study.VARIANTS.items()
             if name.startswith("study_")}
    assert len(cells) == 6
    for name, flags in cells.items():
        _, optimizer, batch = name.split("_")
        batch = int(batch[1:])
        # The study's second seed reruns the best rate of its first: that row is the choice.
        (chosen,) = [r for r in rows if r["optimizer"] == optimizer and int(r["batch"]) == batch]
        assert math.isclose(float(_flag(flags, "learning_rate")), float(chosen["peak_lr"]),
                            rel_tol=1e-5), name
        assert int(_flag(flags, "train_batch_size")) == batch
        assert int(_flag(flags, "num_train_steps")) == int(chosen["updates"])
        assert int(_flag(flags, "num_warmup_steps")) == int(chosen["warmup_updates"])
        assert any(f"optimizer.name={optimizer}" in f for f in flags) == (optimizer != "lamb")
