r"""ResNet training with LARS or LAMB:  python -m trainers.resnet --config_file=configs/resnet/X.yaml

The same runner and flags as trainers.bert (see its --help); `--use_synthetic_data` measures
throughput with no data.
"""

import sys

from absl import app, flags, logging

from trainers import flags as trainer_flags
from trainers import runner
from trainers.resnet.config import ResNetExperimentConfig
from trainers.resnet.task import ResNetTask

trainer_flags.define_flags()
flags.DEFINE_bool("use_synthetic_data", None, "Train on one fixed random batch (throughput).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        experiment = trainer_flags.resolve(ResNetExperimentConfig())
        if FLAGS.use_synthetic_data is not None:
            experiment.task.use_synthetic_data = FLAGS.use_synthetic_data
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    model_dir = trainer_flags.model_dir()
    logging.info("model_dir: %s (TensorBoard: tensorboard --logdir=%s)", model_dir, model_dir)
    try:
        results = runner.run(ResNetTask(experiment.task), experiment, model_dir, FLAGS.mode)
    except (ValueError, FileNotFoundError, runner.NonFiniteLossError) as e:
        sys.exit(f"error: {e}")
    if results:
        print("eval: " + "  ".join(f"{k}={v:.4f}" for k, v in results.items()))
    print(f"model_dir: {model_dir}  (tensorboard --logdir={model_dir})")


if __name__ == "__main__":
    app.run(main)
