r"""BERT pretraining with LAMB:  python -m trainers.bert --config_file=configs/bert/<recipe>.yaml

On a TPU VM add --tpu=local --distribution_strategy=tpu --model_dir=gs://...; on a GPU box
--distribution_strategy=mirrored --num_gpus=8. Run `tensorboard --logdir=<model_dir>` to watch.
"""

from absl import flags

from trainers import cli
from trainers import flags as trainer_flags
from trainers.bert.config import BertExperimentConfig
from trainers.bert.task import BertPretrainingTask
from trainers.main import run_from_flags

trainer_flags.define_flags()
flags.adopt_module_key_flags(trainer_flags)  # so that --help lists them


def main(argv):
    cli.no_arguments(argv)
    run_from_flags(BertExperimentConfig(), BertPretrainingTask)


if __name__ == "__main__":
    cli.run(main)
