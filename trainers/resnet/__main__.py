r"""ResNet training with LARS or LAMB:  python -m trainers.resnet --config_file=configs/resnet/X.yaml

The same runner and flags as trainers.bert (see its --help); `--use_synthetic_data` measures
throughput with no data.
"""

import shutil
import tempfile

from absl import flags

from trainers import cli
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
    cli.no_arguments(argv)
    if not (flags.FLAGS.use_synthetic_data and flags.FLAGS.model_dir is None):
        run_from_flags(ResNetExperimentConfig(), ResNetTask, _synthetic_flag)
        return
    # A throughput measurement starts from nothing each time and leaves nothing behind.
    flags.FLAGS.model_dir = tempfile.mkdtemp(prefix="resnet_synthetic_")
    try:
        run_from_flags(ResNetExperimentConfig(), ResNetTask, _synthetic_flag)
    finally:
        shutil.rmtree(flags.FLAGS.model_dir, ignore_errors=True)


if __name__ == "__main__":
    cli.run(main)
