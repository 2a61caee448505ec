r"""BERT pretraining with LAMB:  python -m trainers.bert --config_file=configs/bert/<recipe>.yaml

On a TPU VM add --tpu=local --distribution_strategy=tpu --model_dir=gs://...; on a GPU box
--distribution_strategy=mirrored --num_gpus=8. Run `tensorboard --logdir=<model_dir>` to watch.
"""

import sys

from absl import app, flags, logging

from trainers import flags as trainer_flags
from trainers import runner
from trainers.bert.config import BertExperimentConfig
from trainers.bert.task import BertPretrainingTask

trainer_flags.define_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        experiment = trainer_flags.resolve(BertExperimentConfig())
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    model_dir = trainer_flags.model_dir()
    logging.info("model_dir: %s (TensorBoard: tensorboard --logdir=%s)", model_dir, model_dir)
    try:
        results = runner.run(BertPretrainingTask(experiment.task), experiment, model_dir,
                             FLAGS.mode)
    except (ValueError, FileNotFoundError, runner.NonFiniteLossError) as e:
        sys.exit(f"error: {e}")
    if results:
        print("eval: " + "  ".join(f"{k}={v:.4f}" for k, v in results.items()))
    print(f"model_dir: {model_dir}  (tensorboard --logdir={model_dir})")


if __name__ == "__main__":
    app.run(main)
