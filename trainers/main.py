"""The command-line entry shared by the trainers: flags -> config -> runner -> printed result."""

import sys

from absl import flags, logging

from trainers import cli
from trainers import distribution
from trainers import flags as trainer_flags
from trainers import model_dir_lock
from trainers import peers
from trainers import preemption
from trainers import recovery
from trainers import runner
from trainers import storage


def run_from_flags(experiment, make_task, adjust=None):
    """Resolves `experiment` from the flags, runs it, and exits with a readable error on bad
    input. `adjust(experiment)` applies task-specific flags after the shared ones."""
    try:
        experiment = trainer_flags.resolve(experiment)
        if adjust:
            adjust(experiment)
    except (ValueError, FileNotFoundError) as e:
        cli.user_error(e)
    model_dir = trainer_flags.model_dir()
    logging.info("model_dir: %s (TensorBoard: tensorboard --logdir=%s)", model_dir, model_dir)
    try:
        results = runner.run(make_task(experiment.task), experiment, model_dir, flags.FLAGS.mode)
    except (ValueError, FileNotFoundError, runner.NonFiniteLossError,
            recovery.LossSpikeError, distribution.DeviceUnavailableError,
            peers.ClusterStartupError, storage.StorageUnavailableError,
            storage.StorageAccessError, distribution.WorkersDisagreeError,
            model_dir_lock.LeaseLostError) as e:
        cli.user_error(e)
    except peers.PeerWaitInterrupted as e:
        print(f"{e}: stopped while waiting for cluster peers; nothing was trained, so nothing "
              "to save.", file=sys.stderr)
        sys.exit(preemption.exit_code_for(e.signum))
    if results:
        print("eval: " + "  ".join(f"{k}={v:.4f}" for k, v in results.items()))
    print(f"model_dir: {model_dir}  (tensorboard --logdir={model_dir})")
