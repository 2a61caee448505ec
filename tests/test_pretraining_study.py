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


def _experiment(extra_flags):
    from absl import flags as absl_flags
    from trainers import flags as trainer_flags
    from trainers.bert.config import BertExperimentConfig
    values = absl_flags.FlagValues()
    trainer_flags.define_flags(values)
    values(["prog", f"--config_file={pretraining_study.RECIPE}", *extra_flags])
    return trainer_flags.resolve(BertExperimentConfig(), values)


def test_each_lever_changes_one_thing_of_the_study_base_on_train_and_eval_alike():
    import dataclasses
    base = _experiment(pretraining_study.on_study_base([]))
    assert base.task.train_data.pair_task == base.task.eval_data.pair_task == "random_next"
    changed = {"lever_sentence_order": ("pair_task", "sentence_order"),
               "lever_random_next_matched": ("pair_task", "random_next_matched"),
               "lever_whole_word_mask": ("do_whole_word_mask", True),
               "lever_broad_corpus": ("input_path", "builtin_broad")}
    assert set(pretraining_study.LEVERS) == set(changed)
    for name, (field, value) in changed.items():
        experiment = _experiment(pretraining_study.on_study_base(
            pretraining_study.VARIANTS[name][1]))
        for split in ("train_data", "eval_data"):
            assert getattr(getattr(experiment.task, split), field) == value, name
            assert getattr(getattr(base.task, split), field) != value
        # Nothing else differs from the base: model, schedule, optimizer, trainer.
        for split in ("train_data", "eval_data"):
            setattr(getattr(experiment.task, split), field,
                    getattr(getattr(base.task, split), field))
        assert dataclasses.asdict(experiment) == dataclasses.asdict(base), name


def test_the_lever_named_as_command_1_is_exactly_readme_command_1():
    import dataclasses
    lever = pretraining_study.VARIANTS[pretraining_study.COMMAND_1_LEVER][1]
    assert (dataclasses.asdict(_experiment(pretraining_study.on_study_base(lever)))
            == dataclasses.asdict(_experiment([])))


def test_a_variants_own_overrides_win_over_the_study_base_and_other_flags_stay():
    flags = pretraining_study.on_study_base(
        ["--learning_rate=0.03",
         "--params_override=optimizer.name=adamw,task.eval_data.pair_task=sentence_order"])
    experiment = _experiment(flags)
    assert experiment.optimizer.name == "adamw"
    assert experiment.optimizer.learning_rate == 0.03
    assert experiment.task.train_data.pair_task == "random_next"  # the base's
    assert experiment.task.eval_data.pair_task == "sentence_order"  # the variant's, after it
    assert len([f for f in flags if f.startswith("--params_override=")]) == 1


def test_the_lever_table_judges_each_encoder_at_its_best_dev_rate_of_the_shared_grid():
    def rows(init, rate, devs, tests):
        return [{"init": init, "learning_rate": rate, "seed": str(seed), "dev_accuracy": str(d),
                 "test_accuracy": str(t)} for seed, (d, t) in enumerate(zip(devs, tests), 1)]

    pretraining = [{"variant": "lamb_0.005_2400", "masked_lm_accuracy": "0.158",
                    "next_sentence_accuracy": "0.72", "probe_dev_accuracy": "0.67"},
                   {"variant": "lever_sentence_order", "masked_lm_accuracy": "0.15",
                    "next_sentence_accuracy": "0.60", "probe_dev_accuracy": "0.70"}]
    health = (
        # The base's encoder: 1e-4 is off the levers' grid, however good its dev.
        rows("tiny_wiki_lamb_random_next", "1e-4", [0.9] * 3, [0.9] * 3)
        + rows("tiny_wiki_lamb_random_next", "1e-3", [0.45] * 3, [0.44, 0.45, 0.46])
        + rows("tiny_wiki_lamb_random_next", "3e-4", [0.40] * 3, [0.50] * 3)
        # The lever that is command 1 now, under command 1's label: 3e-4 has the better dev,
        # 1e-3 the better test; dev decides.
        + rows("tiny_wiki_lamb", "3e-4", [0.48] * 3, [0.47, 0.47, 0.47])
        + rows("tiny_wiki_lamb", "1e-3", [0.46] * 3, [0.60] * 3)
        # Rows of that lever under its own name are not its (it was run as tiny_wiki_lamb).
        + rows("lever_sentence_order", "3e-4", [0.99] * 3, [0.99] * 3)
        + rows("random (tiny_wiki_lamb's shape)", "1e-3", [0.39] * 3, [0.39] * 3))
    text = pretraining_study.lever_table(pretraining, {"health_tweets": health,
                                                       "bbc_news": []})
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()}
    lever = "lever_sentence_order (the default recipe)"
    assert "45.0% (44.0%, 45.0%, 46.0%) at 1e-3; dev 45.0% |" in lines["tiny_wiki_lamb_random_next"]
    assert "47.0% (47.0%, 47.0%, 47.0%) at 3e-4; dev 48.0% [+2.0]" in lines[lever]
    assert "| 15.0% | 60.0% | 70.0% |" in lines[lever]
    assert ("39.0% (39.0%, 39.0%, 39.0%) at 1e-3; dev 39.0% [-6.0]"
            in lines["random (tiny_wiki_lamb's shape)"])
    # A task not fine-tuned yet says so; a lever not pretrained yet has no row.
    assert lines[lever].count("not run yet") == 1
    assert "lever_broad_corpus" not in text
