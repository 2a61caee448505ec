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


def test_wrong_types_are_named():
    with pytest.raises(ValueError, match=re.escape(
            "Config key 'trainer.train_batch_size' expects an integer, got 'big'.")):
        config_lib.merge(BertExperimentConfig(), {"trainer": {"train_batch_size": "big"}})


def test_files_then_overrides_then_flags_each_win_in_turn(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text("trainer: {train_batch_size: 8, num_train_steps: 10}\n"
                     "optimizer: {name: lars, exclude_from_weight_decay: [bias]}\n")
    second = tmp_path / "b.yaml"
    second.write_text("trainer: {num_train_steps: 20}\n")
    values = absl_flags.FlagValues()
    trainer_flags.define_flags(values)
    values([
        "prog", f"--config_file={first}", f"--config_file={second}",
        "--params_override=trainer.num_train_steps=30,optimizer.learning_rate=0.5,"
        "optimizer.exclude_from_layer_adaptation=[LayerNorm, bias]",
        "--learning_rate=0.25"])
    experiment = trainer_flags.resolve(BertExperimentConfig(), values)
    assert experiment.trainer.train_batch_size == 8          # first file
    assert experiment.trainer.num_train_steps == 30          # override beats second file
    assert experiment.optimizer.learning_rate == 0.25        # explicit flag beats override
    assert experiment.optimizer.name == "lars"
    assert experiment.optimizer.exclude_from_layer_adaptation == ["LayerNorm", "bias"]
    assert trainer_flags.model_dir(values) == os.path.join("runs", "a")
    dumped = config_lib.dump_yaml(experiment)
    again = config_lib.merge(BertExperimentConfig(), __import__("yaml").safe_load(dumped))
    assert again == experiment
