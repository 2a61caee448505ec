"""The start of a training run in a model_dir that may hold an earlier run's: the checks a
resume must pass before anything is written or restored, the task's records (e.g. the vocab)
kept beside the checkpoints, and the restore of the checkpoint to go on from."""

import os

from absl import logging

from trainers import checkpointing
from trainers import distribution
from trainers import storage


def check(task, experiment, model_dir, params, cluster):
    """Refuses to resume checkpoints this run cannot continue; returns the task's training
    stream (`Task.train_stream`), to be recorded.

    Every worker checks, before anything is written or restored: a refusal on the chief alone
    would leave the other workers waiting for it in collectives.
    """
    resuming = bool(checkpointing.checkpoint_steps(model_dir))
    if resuming:
        params.check_compatible(experiment)
        params.check_same_cluster(cluster)
        check_records(task, model_dir)
    stream = task.train_stream()
    if resuming:
        params.check_same_stream(stream)
    return stream


def check_records(task, model_dir):
    """Refuses to resume if the task's model_dir records differ from this run's."""
    for name, text in task.model_dir_records().items():
        path = os.path.join(model_dir, name)
        recorded = storage.read_text(path)
        if recorded is not None and recorded != text:
            raise ValueError(
                f"{path} records what the checkpoints in {model_dir} were trained with, and "
                f"this run's {name} differs; resume with the same, or pass another "
                "--model_dir (with --init_checkpoint to start from these weights).")


def write_records(task, model_dir):
    """The task's model_dir records: what a later user of the checkpoints needs and the config
    only points to. The chief writes them."""
    for name, text in task.model_dir_records().items():
        storage.write_text(os.path.join(model_dir, name), text)


def check_same_step_everywhere(strategy, num_workers, latest):
    """Stops the cluster if its workers found different checkpoints to resume from."""
    if num_workers > 1:
        resume_step = checkpointing.step_of(latest) if latest else 0
        distribution.check_same_on_every_worker(
            strategy, "the checkpoint step to resume from", lambda _: resume_step)


def restore(checkpoint, latest, model_dir):
    """Model, optimizer, step and dropout generators from the checkpoint `latest`."""
    try:
        storage.retrying(lambda: checkpoint.restore(latest).assert_existing_objects_matched(),
                         f"the checkpoint {latest}")
    except (ValueError, AssertionError) as e:
        raise ValueError(
            f"The checkpoint {latest} in model_dir does not fit this model: {e} "
            "Use another --model_dir, or the config that wrote it "
            f"({os.path.join(model_dir, checkpointing.PARAMS_FILE)}).") from None


def already_trained(model_dir, step, num_train_steps):
    """True, saying so, if the run resumed at or past num_train_steps."""
    if step < num_train_steps:
        return False
    logging.info("model_dir %s is already at step %d (num_train_steps=%d): nothing to train.",
                 model_dir, step, num_train_steps)
    print(f"Already trained: step {step} of num_train_steps={num_train_steps} in {model_dir}.")
    return True
