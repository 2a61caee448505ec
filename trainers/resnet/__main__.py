r"""ResNet training with LARS or LAMB:  python -m trainers.resnet --config_file=configs/resnet/X.yaml

The same runner and flags as trainers.bert (see its --help); `--use_synthetic_data` measures
throughput with no data.
"""

from absl import app, flags

from trainers import flags as trainer_flags
from trainers.main import run_from_flags
from trainers.resnet.config import ResNetExperimentConfig
from trainers.resnet.task import ResNetTask

trainer_flags.define_flags()
flags.adopt_module_key_flags(trainer_flags)  # so that --help lists them
flags.DEFINE_bool("use_synthetic_data", None, "Train on one fixed random batch (throughput).")


def _synthetic_flag(experiment):
    if flags.FLAGS.use_synthetic_data is not None:
        experiment.task.use_synthetic_data = flags.FLAGS.use_synthetic_data


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    run_from_flags(ResNetExperimentConfig(), ResNetTask, _synthetic_flag)


if __name__ == "__main__":
    app.run(main)
