"""Config files, overrides and flags resolve into one experiment config; mistakes are named."""

import glob
import os
import re

import pytest
from absl import flags as absl_flags

from trainers import config as config_lib
from trainers import flags as trainer_flags
from trainers.bert.config import BertExperimentConfig
from trainers.resnet.config import ResNetExperimentConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


RECIPES = [(path, BertExperimentConfig) for path in sorted(
    glob.glob(os.path.join(REPO, "configs", "bert", "*.yaml")))] + [
    (path, ResNetExperimentConfig) for path in sorted(
        glob.glob(os.path.join(REPO, "configs", "resnet", "*.yaml")))]


@pytest.mark.parametrize("path, experiment_config", RECIPES)
def test_every_recipe_loads_and_says_where_its_numbers_come_from(path, experiment_config):
    experiment = config_lib.merge(experiment_config(), config_lib.load_yaml(path))
    assert experiment.trainer.num_train_steps > experiment.optimizer.num_warmup_steps
    assert experiment.task.train_data.input_path
    assert open(path).read().startswith("#")


def test_unknown_keys_are_named_with_a_suggestion():
    with pytest.raises(ValueError, match=re.escape(
            "Unknown config key 'learnig_rate' in section 'optimizer'. Did you mean "
            "'learning_rate'?")):
        config_lib.merge(BertExperimentConfig(), {"optimizer": {"learnig_rate": 1.0}})
    with pytest.raises(ValueError, match="Unknown config key 'trainr' at the top level"):
        config_lib.merge(BertExperimentConfig(), {"trainr": {}})


def test_an_unknown_key_in_params_override_is_named_with_the_flag_and_a_suggestion():
    # How the trainers print such an error (one line, exit 1): tests/test_bad_inputs.py.
    values = absl_flags.FlagValues()
    trainer_flags.define_flags(values)
    values(["prog", "--params_override=trainer.train_batch_sise=64"])
    with pytest.raises(ValueError) as raised:
        trainer_flags.resolve(BertExperimentConfig(), values)
    assert str(raised.value).startswith(
        "--params_override: Unknown config key 'train_batch_sise' in section 'trainer'. Did you "
        "mean 'train_batch_size'?")


def test_wrong_types_are_named():
    with pytest.raises(ValueError, match=re.escape(
            "Config key 'trainer.train_batch_size' expects an integer, got 'big'.")):
        config_lib.merge(BertExperimentConfig(), {"trainer": {"train_batch_size": "big"}})


def test_files_then_overrides_then_flags_each_win_in_turn(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("trainer: {train_batch_size: 8, num_train_steps: 10}\n"
                     "optimizer: {name: lars, lars: {exclude_from_weight_decay: [bias]}}\n")
    second = tmp_path / "b.yaml"
    second.write_text("trainer: {num_train_steps: 20}\n")
    values = absl_flags.FlagValues()
    trainer_flags.define_flags(values)
    values([
        "prog", f"--config_file={first}", f"--config_file={second}",
        "--params_override=trainer.num_train_steps=30,optimizer.learning_rate=0.5,"
        "optimizer.lars.exclude_from_layer_adaptation=[LayerNorm, bias]",
        "--learning_rate=0.25"])
    experiment = trainer_flags.resolve(BertExperimentConfig(), values)
    assert experiment.trainer.train_batch_size == 8          # first file
    assert experiment.trainer.num_train_steps == 30          # override beats second file
    assert experiment.optimizer.learning_rate == 0.25        # explicit flag beats override
    assert experiment.optimizer.name == "lars"
    assert experiment.optimizer.lars.exclude_from_layer_adaptation == ["LayerNorm", "bias"]
    assert experiment.optimizer.lars.exclude_from_weight_decay == ["bias"]
    assert trainer_flags.model_dir(values) == os.path.join("runs", "a")
    dumped = config_lib.dump_yaml(experiment)
    again = config_lib.merge(BertExperimentConfig(), __import__("yaml").safe_load(dumped))
    assert again == experiment


def test_yaml_numbers_in_exponent_form_are_accepted(tmp_path):
    # PyYAML reads `1e-3` (no dot) as a string; a float field takes it as the number it is.
    path = tmp_path / "c.yaml"
    path.write_text("optimizer:\n  learning_rate: 1e-3\n  lamb:\n    weight_decay: 2E-2\n")
    experiment = config_lib.merge(BertExperimentConfig(), config_lib.load_yaml(str(path)))
    assert experiment.optimizer.learning_rate == 0.001
    assert experiment.optimizer.lamb.weight_decay == 0.02
    with pytest.raises(ValueError, match="'optimizer.learning_rate' expects a number, got 'fast'"):
        config_lib.merge(BertExperimentConfig(), {"optimizer": {"learning_rate": "fast"}})


@pytest.mark.parametrize("batch", [0, -8])
def test_a_batch_size_that_is_not_positive_is_named_plainly(batch):
    from trainers import distribution
    with pytest.raises(ValueError, match=rf"train_batch_size={batch} must be a positive number "
                                         r"of examples \(a multiple of 2 here, e\.g\. 64\)"):
        distribution.check_batch("train_batch_size", batch, 2)


@pytest.mark.parametrize("entry", ["trainers.bert", "trainers.resnet"])
def test_help_lists_the_trainer_flags(entry):
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", entry, "--help"], cwd=REPO, timeout=300,
                          capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert "Traceback" not in done.stderr  # absl exits 1 after printing the help
    for flag in ("--train_batch_size", "--num_train_steps", "--iterations_per_loop",
                 "--config_file", "--model_dir"):
        assert flag in done.stdout, flag


def test_a_flat_optimizer_key_points_to_the_sections_that_hold_it():
    with pytest.raises(ValueError, match=r"Unknown config key 'beta_2' in section 'optimizer'\. "
                                         r"Did you mean 'lamb\.beta_2' or 'adamw\.beta_2'\?"):
        config_lib.merge(BertExperimentConfig(), {"optimizer": {"beta_2": 0.99}})
    with pytest.raises(ValueError, match=r"Config key 'optimizer\.momentum' is a section of "
                                         r"settings, not a value \(got 0\.9\)\. Did you mean "
                                         r"'optimizer\.lars\.momentum' or "
                                         r"'optimizer\.momentum\.momentum'\?"):
        config_lib.merge(BertExperimentConfig(), {"optimizer": {"momentum": 0.9}})
