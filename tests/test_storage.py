"""Storage that misbehaves: transient read errors, non-finite state, retention across resumes,
remote (ram://) model_dirs and their lease, exports that must not destroy, glob characters."""

import errno
import os
import re
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from tests import bert_runs
from trainers import checkpointing, health, model_dir_lock, runner, storage, train_actions
from trainers.bert import export
from trainers.bert.task import BertPretrainingTask


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bert_runs.make_data(str(tmp_path_factory.mktemp("storage")))


@pytest.fixture(autouse=True)
def _fast_retries_and_leases(monkeypatch):
    monkeypatch.setattr(storage, "RETRY_DELAYS_SECONDS", (0, 0, 0))
    monkeypatch.setattr(model_dir_lock, "LEASE_RENEW_SECONDS", 0.05)
    # Renewed every 0.05 s, but with room for a loaded 2-core machine (other pytest workers
    # beside these tests): a lease has gone unrenewed for 6 s there, and a claim's read and
    # write have taken longer than 0.2 s. The tests of those timings shorten them
    # (_short_leases).
    monkeypatch.setattr(model_dir_lock, "LEASE_STALE_SECONDS", 40.0)
    monkeypatch.setattr(model_dir_lock, "LEASE_DEADLINE_SECONDS", 30.0, raising=False)
    monkeypatch.setattr(model_dir_lock, "LEASE_SETTLE_SECONDS", 1.0, raising=False)


def _short_leases(monkeypatch):
    """Deadline, staleness and settling short enough to be waited out in a test."""
    monkeypatch.setattr(model_dir_lock, "LEASE_STALE_SECONDS", 2.0)
    monkeypatch.setattr(model_dir_lock, "LEASE_DEADLINE_SECONDS", 1.5)
    monkeypatch.setattr(model_dir_lock, "LEASE_SETTLE_SECONDS", 0.2)


def train(data_dir, model_dir, steps=4, task_class=BertPretrainingTask, task_args=(),
          **sections):
    sections.setdefault("trainer", {})
    sections["trainer"] = dict({"num_train_steps": steps}, **sections["trainer"])
    experiment = bert_runs.experiment(data_dir, **sections)
    runner.run(task_class(experiment.task, *task_args), experiment, str(model_dir), "train")


@pytest.fixture(scope="module")
def four_steps(data_dir, tmp_path_factory):
    """The model_dir of `train(data_dir, ..., steps=4)`, for tests to copy or read."""
    model_dir = tmp_path_factory.mktemp("four_steps")
    train(data_dir, model_dir, steps=4)
    return str(model_dir)


@pytest.fixture(scope="module")
def two_steps(data_dir, tmp_path_factory):
    """The model_dir of `train(data_dir, ..., steps=2)`, for tests to copy."""
    model_dir = tmp_path_factory.mktemp("two_steps")
    train(data_dir, model_dir, steps=2)
    return str(model_dir)


def listing(directory):
    return sorted(os.path.relpath(os.path.join(root, name), directory)
                  for root, _, names in os.walk(directory) for name in names
                  if name != "run.lock")


def failing_restore(monkeypatch, failures):
    """tf.raw_ops.RestoreV2 raising UnavailableError on its first `failures` calls."""
    real, calls = tf.raw_ops.RestoreV2, []

    def restore(**kwargs):
        calls.append(kwargs["prefix"])
        if len(calls) <= failures:
            raise tf.errors.UnavailableError(None, None, "injected: storage did not answer")
        return real(**kwargs)

    monkeypatch.setattr(tf.raw_ops, "RestoreV2", restore)
    return calls


# ------------------------------------------------------------------- transient is not broken
def test_one_transient_read_error_leaves_the_newest_checkpoint_and_resumes_from_it(
        data_dir, tmp_path, four_steps, monkeypatch, capfd, caplog):
    bert_runs.copy_run(four_steps, tmp_path)
    calls = failing_restore(monkeypatch, failures=1)
    capfd.readouterr()
    caplog.set_level("INFO")
    train(data_dir, tmp_path, steps=6)
    assert calls[0].endswith("ckpt-4")  # the failed read was of the newest checkpoint
    assert "Skipping checkpoint" not in capfd.readouterr().err
    assert not (tmp_path / checkpointing.BROKEN_DIR).exists()
    assert f"Resumed from {tmp_path}/ckpt-4 at step 4." in caplog.messages
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [2, 4, 6]


def test_persistent_transient_errors_stop_the_run_naming_them_and_move_nothing(
        data_dir, tmp_path, four_steps, monkeypatch):
    bert_runs.copy_run(four_steps, tmp_path)
    before = listing(tmp_path)
    failing_restore(monkeypatch, failures=10 ** 6)
    with pytest.raises(storage.StorageUnavailableError,
                       match=r"Reading the checkpoint .*ckpt-4 failed 4 times over 0 s with "
                             r"UnavailableError \(injected: storage did not answer\)\. This is "
                             r"not damage, so nothing was moved"):
        train(data_dir, tmp_path, steps=6)
    assert listing(tmp_path) == before


def test_damage_is_still_skipped_at_once(data_dir, tmp_path, four_steps, monkeypatch):
    bert_runs.copy_run(four_steps, tmp_path)
    (tmp_path / "ckpt-4.index").write_bytes(b"not an index")
    calls = failing_restore(monkeypatch, failures=0)
    train(data_dir, tmp_path, steps=4)
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [2, 4]  # ckpt-4 remade
    assert "ckpt-4.index" in os.listdir(tmp_path / checkpointing.BROKEN_DIR)
    assert calls  # the damaged index was not retried: reading went on to ckpt-2


def test_permission_denied_stops_at_once_naming_access_not_availability(
        data_dir, tmp_path, two_steps, monkeypatch):
    bert_runs.copy_run(two_steps, tmp_path)
    real, calls = tf.raw_ops.RestoreV2, []

    def restore(**kwargs):
        calls.append(kwargs["prefix"])
        raise tf.errors.PermissionDeniedError(None, None, "injected: 403 Forbidden")

    monkeypatch.setattr(tf.raw_ops, "RestoreV2", restore)
    monkeypatch.setattr(storage, "RETRY_DELAYS_SECONDS", (0.1,) * 3)
    with pytest.raises(storage.StorageAccessError,
                       match=r"^Reading the checkpoint .*ckpt-2 was refused: PermissionDeniedError "
                             r"\(injected: 403 Forbidden\)\. Give this job's account access to "
                             r"it \(or fix its credentials\), then rerun\.$"):
        train(data_dir, tmp_path, steps=4)
    assert len(calls) == 1  # not retried


def test_transient_errors_while_saving_are_retried_and_the_run_goes_on(data_dir, monkeypatch):
    model_dir = "ram://storage_test/flaky_writes"
    failed = []
    real_write, real_rename = tf.train.Checkpoint.write, tf.io.gfile.rename

    def flaky(what, real):
        def call(*args, **kwargs):
            if what not in failed:
                failed.append(what)
                raise tf.errors.UnavailableError(None, None, f"injected: {what} failed")
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(tf.train.Checkpoint, "write", flaky("checkpoint", real_write))
    rename = flaky("params.yaml", real_rename)
    monkeypatch.setattr(tf.io.gfile, "rename", lambda src, dst, overwrite=False: (
        rename if dst.endswith("params.yaml") else real_rename)(src, dst, overwrite))
    train(data_dir, model_dir, steps=4)
    assert failed == ["params.yaml", "checkpoint"]
    assert sorted(checkpointing.checkpoint_steps(model_dir)) == [2, 4]
    assert tf.io.gfile.exists(f"{model_dir}/params.yaml")


def _failing_once(monkeypatch, operation, path):
    """`operation` ("listdir" or "read") of exactly `path` raising UnavailableError
    once; returns the list of paths it failed on."""
    failed = []

    def fails(name):
        if name != path or failed:
            return False
        failed.append(name)
        return True

    def injected():
        return tf.errors.UnavailableError(None, None, f"injected: {operation} of {path}")

    if operation == "read":
        real = tf.io.gfile.GFile.read

        def read(self, *args, **kwargs):
            if fails(self.name):
                raise injected()
            return real(self, *args, **kwargs)

        monkeypatch.setattr(tf.io.gfile.GFile, "read", read)
    else:
        real = getattr(tf.io.gfile, operation)

        def call(name, *args, **kwargs):
            if fails(str(name).rstrip("/")):
                raise injected()
            return real(name, *args, **kwargs)

        monkeypatch.setattr(tf.io.gfile, operation, call)
    return failed


RESUME_START_READS = {  # what a resume reads before its first step: (operation, file)
    "the checkpoint listing": ("listdir", ""),
    "the records check": ("read", "vocab.txt"),
    "remove_interrupted_writes": ("listdir", checkpointing.DATA_POSITION_DIR),
    "the health record": ("read", health.START_NORMS_FILE),
}


def test_one_transient_error_at_each_of_a_resumes_start_reads_is_retried(
        data_dir, tmp_path, two_steps, monkeypatch, caplog):
    # One resume meets them all (the patches of one operation wrap each other): a read that
    # is not retried stops it, naming the injected failure.
    bert_runs.copy_run(two_steps, tmp_path)
    failures = {}
    for read, (operation, name) in RESUME_START_READS.items():
        path = os.path.join(str(tmp_path), name) if name else str(tmp_path)
        failures[read] = (path, _failing_once(monkeypatch, operation, path))
    caplog.set_level("INFO")
    train(data_dir, tmp_path, steps=4)
    assert {read: failed for read, (_, failed) in failures.items()} == {
        read: [path] for read, (path, _) in failures.items()}
    assert f"Resumed from {tmp_path}/ckpt-2 at step 2." in caplog.messages
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [2, 4]


def test_write_text_on_a_local_disk_syncs_the_file_and_its_folder(tmp_path, monkeypatch):
    synced, real_fsync = [], os.fsync

    def fsync(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "params.yaml"
    storage.write_text(str(target), "a: 1\n")
    assert target.read_text() == "a: 1\n"
    assert synced == [str(target) + ".partial", str(tmp_path)]
    assert os.listdir(tmp_path) == ["params.yaml"]


# ------------------------------------------------------------- no poisoned "last good" save
@tf.custom_gradient
def _scale_gradient(value, scale):
    return tf.identity(value), lambda upstream: (upstream * scale, tf.zeros_like(scale))


class InfGradientTask(BertPretrainingTask):
    """Training batch number `bad` (from 0) gets an Inf gradient and a finite loss."""

    def __init__(self, task_config, bad):
        super().__init__(task_config)
        self.bad = bad

    def input_fn(self, mode, global_batch_size, input_context, seed=None, after=None):
        dataset = super().input_fn(mode, global_batch_size, input_context, seed, after)
        if mode != "train":
            return dataset

        def mark(index, features):
            scale = tf.where(index == self.bad, float("inf"), 1.0)
            return dict(features, gradient_scale=tf.fill(
                [tf.shape(features["masked_lm_ids"])[0]], scale))

        return dataset.enumerate().map(mark)

    def loss_sums(self, features, outputs):
        scale = tf.reduce_max(features["gradient_scale"])
        return {k: _scale_gradient(v, scale)
                for k, v in super().loss_sums(features, outputs).items()}


def all_saved_values_finite(model_dir):
    for prefix in checkpointing.checkpoint_steps(str(model_dir)).values():
        for name, value in bert_runs.model_weights(prefix).items():
            if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
                return False
    return True


def test_an_inf_gradient_with_a_finite_loss_on_a_loops_last_step_is_never_saved(
        data_dir, tmp_path):
    # Batch 3 is step 4's, the last of the loop of steps 3-4, which ends with a save.
    with pytest.raises(runner.NonFiniteLossError,
                       match=r"became NaN or Inf at step 4\. Nothing was saved after it; the "
                             r"last good checkpoint is .*ckpt-2\."):
        train(data_dir, tmp_path, steps=8, task_class=InfGradientTask, task_args=(3,))
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [2]
    assert all_saved_values_finite(tmp_path)


def test_spike_recovery_rolls_back_past_an_inf_gradient_to_a_finite_checkpoint(
        data_dir, tmp_path):
    train(data_dir, tmp_path, steps=8, task_class=InfGradientTask, task_args=(3,),
          trainer={"recovery_max_trials": 1})
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path)))[-1] == 8
    assert all_saved_values_finite(tmp_path)


def test_non_finite_weights_are_never_saved(data_dir, tmp_path, monkeypatch):
    real_check = train_actions.SavableCheck.__call__

    def poisoning_check(self, step, *args):
        if step == 4:  # as a NaN update that the loop's checks missed would
            variable = self._model.trainable_variables[0]
            variable.assign(tf.fill(variable.shape, float("nan")))
        return real_check(self, step, *args)

    monkeypatch.setattr(train_actions.SavableCheck, "__call__", poisoning_check)
    with pytest.raises(runner.NonFiniteLossError, match=r"At step 4 the weights hold NaN or "
                                                        r"Inf, or the optimizer state NaN; "
                                                        r"nothing was saved\. The last good "
                                                        r"checkpoint is .*ckpt-2\."):
        train(data_dir, tmp_path, steps=6)
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [2]


# -------------------------------------------------------------- nothing leaks across resumes
def test_retention_stays_at_keep_checkpoint_max_however_often_a_run_resumes(data_dir, tmp_path):
    trainer = {"keep_checkpoint_max": 2, "iterations_per_loop": 2, "save_checkpoints_steps": 2}
    for resumes in range(4):
        train(data_dir, tmp_path, steps=4 + 2 * resumes, trainer=trainer)
    assert sorted(checkpointing.checkpoint_steps(str(tmp_path))) == [8, 10]
    data_dir_0 = checkpointing.data_position_dir(str(tmp_path), 0)
    assert sorted(checkpointing.checkpoint_steps(data_dir_0)) == [8, 10]
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [p.rsplit("/", 1)[1] for p in state.all_model_checkpoint_paths] == ["ckpt-8",
                                                                               "ckpt-10"]


# ---------------------------------------------------------------------- remote model_dirs
def test_a_run_with_a_remote_model_dir_resumes_and_writes_nothing_locally(
        data_dir, tmp_path, four_steps, monkeypatch):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    remote_dir = "ram://storage_test/run"
    train(data_dir, remote_dir, steps=2)
    train(data_dir, remote_dir, steps=4)  # resumes from ram://.../ckpt-2
    assert sorted(checkpointing.checkpoint_steps(remote_dir)) == [2, 4]
    bert_runs.assert_same_weights(f"{remote_dir}/ckpt-4", os.path.join(four_steps, "ckpt-4"))
    assert tf.io.gfile.exists(f"{remote_dir}/params.yaml")
    assert not tf.io.gfile.exists(f"{remote_dir}/{model_dir_lock.LEASE_FILE}")  # released
    assert os.listdir(workdir) == []


def _hold_lease(model_dir):
    """A live holder in a thread: takes the lease, renews it, releases it when told."""
    taken, release = threading.Event(), threading.Event()

    def hold():
        with model_dir_lock.ModelDirLock(model_dir):
            taken.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(30)
    return release, thread


def test_a_second_run_on_a_remote_model_dir_with_a_live_lease_is_refused(data_dir):
    model_dir = "ram://storage_test/leased"
    release, thread = _hold_lease(model_dir)
    try:
        with pytest.raises(ValueError, match=rf"model_dir {re.escape(model_dir)} is in use by "
                                             rf"pid {os.getpid()} on .*its lease .* is being "
                                             r"renewed"):
            train(data_dir, model_dir, steps=2)
        assert not checkpointing.checkpoint_steps(model_dir)
    finally:
        release.set()
        thread.join()
    train(data_dir, model_dir, steps=2)  # released: the next run goes ahead


def test_a_stale_lease_of_a_killed_run_is_taken_over(monkeypatch):
    _short_leases(monkeypatch)
    model_dir = "ram://storage_test/stale"
    tf.io.gfile.makedirs(model_dir)
    with tf.io.gfile.GFile(f"{model_dir}/{model_dir_lock.LEASE_FILE}", "w") as f:
        f.write("pid 1 on elsewhere since 2026-01-01T00:00:00\ntoken dead\nrenewal 7\n")
    with model_dir_lock.ModelDirLock(model_dir):
        with tf.io.gfile.GFile(f"{model_dir}/{model_dir_lock.LEASE_FILE}") as f:
            assert f.read().startswith(f"pid {os.getpid()} on ")


def _lease_text(model_dir):
    with tf.io.gfile.GFile(f"{model_dir}/{model_dir_lock.LEASE_FILE}") as f:
        return f.read()


def _pausing_at_step(monkeypatch, step, action):
    """Runs `action()` once, after the training loop that ends at `step` and before its save."""
    real_write = train_actions.TrainSummaries.write

    def write(self, writer, loop_end_step, *args):
        if loop_end_step == step:
            action()
        return real_write(self, writer, loop_end_step, *args)

    monkeypatch.setattr(train_actions.TrainSummaries, "write", write)


def test_a_run_whose_lease_was_taken_over_stops_before_its_next_save(data_dir, monkeypatch):
    model_dir = "ram://storage_test/taken_over"

    def successor_takes_over():  # as a newcomer that wrongly found the lease stale would
        storage.write_text(f"{model_dir}/{model_dir_lock.LEASE_FILE}",
                           "pid 1 on successor since now\ntoken theirs\nrenewal 1\n")
        time.sleep(0.3)  # several renewal periods

    _pausing_at_step(monkeypatch, 4, successor_takes_over)
    with pytest.raises(model_dir_lock.LeaseLostError,
                       match=r"no longer holds model_dir .* \(its lease .*run\.lease was taken "
                             r"over \(it now reads 'pid 1 on successor since now'\)\), so it "
                             r"stops without saving"):
        train(data_dir, model_dir, steps=6)
    assert sorted(checkpointing.checkpoint_steps(model_dir)) == [2]
    assert _lease_text(model_dir).startswith("pid 1 on successor")  # the successor's, kept


def _outlast_a_short_deadline(monkeypatch):
    """Called once the lease can no longer be renewed: the deadline drops to 1.5 s and is
    waited out."""
    monkeypatch.setattr(model_dir_lock, "LEASE_DEADLINE_SECONDS", 1.5)
    time.sleep(1.8)


def _lease_renewals_fail_while(monkeypatch):
    """Two Events: while the first is set, every write of the lease file fails as an outage
    would; the second is set once one has."""
    real_write_text, outage, refused = storage.write_text, threading.Event(), threading.Event()

    def write_text(path, *args, **kwargs):
        if path.endswith(model_dir_lock.LEASE_FILE) and outage.is_set():
            refused.set()
            raise tf.errors.UnavailableError(None, None, "injected: storage did not answer")
        return real_write_text(path, *args, **kwargs)

    monkeypatch.setattr(storage, "write_text", write_text)
    return outage, refused


def test_a_run_that_cannot_renew_its_lease_in_time_stops_before_its_next_save(
        data_dir, monkeypatch):
    model_dir = "ram://storage_test/unrenewable"
    failing, refused = _lease_renewals_fail_while(monkeypatch)

    def outage():
        failing.set()
        # A renewal tried and failed within the 10 s (whose failure the error must name);
        # from then on none can succeed, so 1.5 s is as good and ends the wait sooner.
        assert refused.wait(10)
        _outlast_a_short_deadline(monkeypatch)

    # Until step 4 the renewals must keep the lease: 10 s for a loaded machine.
    monkeypatch.setattr(model_dir_lock, "LEASE_DEADLINE_SECONDS", 10.0)
    _pausing_at_step(monkeypatch, 4, outage)
    with pytest.raises(model_dir_lock.LeaseLostError,
                       match=r"its lease .*run\.lease was last renewed \d+ s ago, over the 1\.5 s "
                             r"deadline: UnavailableError: injected: storage did not answer\), "
                             r"so it stops without saving"):
        train(data_dir, model_dir, steps=6)
    assert sorted(checkpointing.checkpoint_steps(model_dir)) == [2]


def test_a_save_retried_past_the_lease_deadline_neither_finishes_nor_deletes(
        data_dir, monkeypatch):
    # An outage fails the save's first part and the lease's renewals alike; the part's retries
    # outlast the deadline, after which a successor may resume from ckpt-2.
    model_dir = "ram://storage_test/save_past_deadline"
    real_checkpoint_write = tf.train.Checkpoint.write
    outage, _ = _lease_renewals_fail_while(monkeypatch)

    def checkpoint_write(self, prefix, *args, **kwargs):
        if (f"/{checkpointing.DATA_POSITION_DIR}/" in prefix and prefix.endswith("/ckpt-4")
                and not outage.is_set()):
            outage.set()
            _outlast_a_short_deadline(monkeypatch)
            raise tf.errors.UnavailableError(None, None, "injected: storage did not answer")
        return real_checkpoint_write(self, prefix, *args, **kwargs)

    monkeypatch.setattr(tf.train.Checkpoint, "write", checkpoint_write)
    # Until step 4 the renewals must keep the lease: 10 s for a loaded machine.
    monkeypatch.setattr(model_dir_lock, "LEASE_DEADLINE_SECONDS", 10.0)
    with pytest.raises(model_dir_lock.LeaseLostError,
                       match=r"was last renewed \d+ s ago, over the 1\.5 s deadline"):
        train(data_dir, model_dir, steps=4, trainer={"keep_checkpoint_max": 1})
    assert outage.is_set()
    assert sorted(checkpointing.checkpoint_steps(model_dir)) == [2]
    data_positions = checkpointing.data_position_dir(model_dir, 0)
    assert sorted(checkpointing.checkpoint_steps(data_positions)) == [2]
    state = tf.train.get_checkpoint_state(model_dir)
    assert state.model_checkpoint_path.endswith("/ckpt-2")


def test_a_listing_retried_inside_a_save_past_the_lease_deadline_deletes_nothing(
        data_dir, monkeypatch):
    # The save's "Deleting old checkpoints" part lists model_dir through storage.listing, which
    # retries on its own: an outage there outlasts the deadline, and the lease check must reach
    # those nested retries before ckpt-2, which a successor may resume from, is deleted.
    model_dir = "ram://storage_test/listing_past_deadline"
    real_listdir = tf.io.gfile.listdir
    outage, _ = _lease_renewals_fail_while(monkeypatch)

    def listdir(path):
        if (str(path).rstrip("/") == model_dir and not outage.is_set()
                and tf.io.gfile.exists(f"{model_dir}/ckpt-4.index")):
            outage.set()
            _outlast_a_short_deadline(monkeypatch)
            raise tf.errors.UnavailableError(None, None, "injected: storage did not answer")
        return real_listdir(path)

    monkeypatch.setattr(tf.io.gfile, "listdir", listdir)
    # Until step 4 the renewals must keep the lease: 10 s for a loaded machine.
    monkeypatch.setattr(model_dir_lock, "LEASE_DEADLINE_SECONDS", 10.0)
    with pytest.raises(model_dir_lock.LeaseLostError,
                       match=r"was last renewed \d+ s ago, over the 1\.5 s deadline"):
        train(data_dir, model_dir, steps=4, trainer={"keep_checkpoint_max": 1})
    assert outage.is_set()
    assert sorted(checkpointing.checkpoint_steps(model_dir)) == [2, 4]
    state = tf.train.get_checkpoint_state(model_dir)
    assert state.model_checkpoint_path.endswith("/ckpt-2")  # not rewritten past the deadline


def test_the_lease_renewal_survives_any_exception(monkeypatch):
    model_dir = "ram://storage_test/renewal_survives"
    real_write, raised = storage.write_text, []

    def write(path, *args, **kwargs):
        if not raised and "renewal 3 " in args[0]:
            raised.append(path)
            raise RuntimeError("injected: not an OpError")
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(storage, "write_text", write)
    with model_dir_lock.ModelDirLock(model_dir) as lock:
        time.sleep(0.5)  # ten renewal periods
        renewal = int(re.search(r"renewal (\d+)", _lease_text(model_dir)).group(1))
        assert raised and renewal > 4
        lock.check()


def test_transient_errors_reading_a_lease_are_retried(monkeypatch):
    model_dir = "ram://storage_test/lease_read_retried"
    real_gfile, failures = tf.io.gfile.GFile, []

    def gfile(path, mode="r"):
        if path.endswith(model_dir_lock.LEASE_FILE) and mode == "r" and not failures:
            failures.append(path)
            raise tf.errors.UnavailableError(None, None, "injected: storage did not answer")
        return real_gfile(path, mode)

    monkeypatch.setattr(tf.io.gfile, "GFile", gfile)
    with model_dir_lock.ModelDirLock(model_dir):
        assert failures
        assert _lease_text(model_dir).startswith(f"pid {os.getpid()} on ")


def _outage(monkeypatch, model_dir, failures, makedirs=True):
    """Writing `model_dir`'s lease (and creating model_dir, if `makedirs`) fail with
    UnavailableError, the first `failures` times each (None: always); returns the counts of
    failed calls."""
    real_makedirs, real_write = tf.io.gfile.makedirs, storage._write_remote
    failed = {"makedirs": 0, "write": 0}

    def failing(kind, real):
        def call(path, *args):
            if path.startswith(model_dir) and (failures is None or failed[kind] < failures):
                failed[kind] += 1
                raise tf.errors.UnavailableError(None, None, "injected: storage did not answer")
            return real(path, *args)
        return call

    if makedirs:
        monkeypatch.setattr(tf.io.gfile, "makedirs", failing("makedirs", real_makedirs))
    monkeypatch.setattr(storage, "_write_remote", failing("write", real_write))
    return failed


def test_a_transient_outage_while_taking_a_lease_is_waited_out(monkeypatch):
    # Waits of 0.6 s: two failed writes retried inside one claim would take it past the 1 s
    # within which a racing starter is ruled out, and the run would be refused.
    monkeypatch.setattr(storage, "RETRY_DELAYS_SECONDS", (0.6, 0.6, 0.6))
    model_dir = "ram://storage_test/lease_outage_passes"
    failed = _outage(monkeypatch, model_dir, failures=2)
    with model_dir_lock.ModelDirLock(model_dir):
        assert failed == {"makedirs": 2, "write": 2}
        assert _lease_text(model_dir).startswith(f"pid {os.getpid()} on ")


def test_an_outage_while_taking_a_lease_is_named_as_one(monkeypatch):
    model_dir = "ram://storage_test/lease_outage"
    _outage(monkeypatch, model_dir, failures=None, makedirs=False)
    with pytest.raises(storage.StorageUnavailableError,
                       match=r"Taking the lease .*run\.lease failed 4 times over 0 s with "
                             r"UnavailableError \(injected: storage did not answer\)\. The "
                             r"storage is unavailable, not unwritable"):
        with model_dir_lock.ModelDirLock(model_dir):
            pass
    assert not tf.io.gfile.exists(f"{model_dir}/{model_dir_lock.LEASE_FILE}")


def _holder_and_successor(model_dir, during_holders_trouble):
    """A holder whose renewals run into `during_holders_trouble` (set up once it holds the
    lease), a successor that watches its lease go stale and takes over; both, once the
    holder's late renewal (if any) would have landed."""
    tf.io.gfile.makedirs(model_dir)
    holder = model_dir_lock._Lease(model_dir)
    holder.acquire()
    during_holders_trouble(holder)
    successor = model_dir_lock._Lease(model_dir)
    successor.acquire()  # watches LEASE_STALE_SECONDS (2 s), then takes over
    time.sleep(1.5)  # past the holder's late renewal, ~3 s after its trouble began
    return holder, successor


def _assert_successor_kept_its_lease(model_dir, holder, successor):
    try:
        assert f"\ntoken {successor._token}\n" in _lease_text(model_dir)
        successor.check()  # not stopped: the lease it took over is still its own
        with pytest.raises(model_dir_lock.LeaseLostError, match=r"over the 1\.5 s deadline"):
            holder.check()
    finally:
        holder.release()
        successor.release()


def test_a_renewal_failing_past_the_deadline_never_lands_over_a_successors_lease(monkeypatch):
    """Storage fails the holder's renewals for 2.6 s. A renewal retried through
    storage.retrying (1 s waits here) began inside the deadline and landed at ~3 s, after the
    successor had taken over: it replaced the successor's lease and both runs stopped."""
    _short_leases(monkeypatch)
    model_dir = "ram://storage_test/renewal_retried_late"
    monkeypatch.setattr(storage, "RETRY_DELAYS_SECONDS", (1.0, 1.0, 1.0))
    real_write, outage = storage._write_remote, {"until": 0.0}

    def write(path, text, temporary):
        if outage["token"] in temporary and time.monotonic() < outage["until"]:
            raise tf.errors.UnavailableError(None, None, "injected: storage did not answer")
        return real_write(path, text, temporary)

    def outage_for(holder):
        outage.update(token=holder._token, until=time.monotonic() + 2.6)

    outage["token"] = "nobody"
    monkeypatch.setattr(storage, "_write_remote", write)
    holder, successor = _holder_and_successor(model_dir, outage_for)
    _assert_successor_kept_its_lease(model_dir, holder, successor)


def test_a_renewal_whose_read_answers_past_the_deadline_does_not_write(monkeypatch):
    """The holder's renewal reads its own lease, but the answer arrives 2.6 s later, after the
    successor took over: writing then would replace the successor's lease."""
    _short_leases(monkeypatch)
    model_dir = "ram://storage_test/renewal_read_late"
    real_gfile, slowed = tf.io.gfile.GFile, {"thread": None, "done": False}

    class SlowAnswer:
        def __init__(self, path, mode):
            self._file = real_gfile(path, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._file.close()

        def read(self):
            text = self._file.read()  # read now, answered late
            time.sleep(2.6)
            return text

    def gfile(path, mode="r"):
        if (threading.current_thread() is slowed["thread"] and mode == "r"
                and not slowed["done"]):
            slowed["done"] = True
            return SlowAnswer(path, mode)
        return real_gfile(path, mode)

    monkeypatch.setattr(tf.io.gfile, "GFile", gfile)
    holder, successor = _holder_and_successor(
        model_dir, lambda holder: slowed.update(thread=holder._thread))
    assert slowed["done"]
    _assert_successor_kept_its_lease(model_dir, holder, successor)


def test_a_deletion_that_succeeded_but_reported_a_transient_error_counts_as_done(
        tmp_path, monkeypatch):
    """A non-chief removes its worker_tmp copy after each save. The delete is done on the
    server but answers Unavailable; its retry then finds nothing (NotFoundError), which
    storage.retrying takes for damage and raised as a traceback."""
    checkpoint = tf.train.Checkpoint(weights=tf.Variable([1.0, 2.0]))
    saves = checkpointing.RunCheckpoints(
        str(tmp_path), checkpoint, tf.Variable(0, dtype=tf.int64),
        tf.Variable(3, dtype=tf.int64), keep=2, num_pipelines=1, pipeline_id=0, worker_id=1)
    real_rmtree, calls = tf.io.gfile.rmtree, []

    def rmtree(path):
        real_rmtree(path)
        calls.append(path)
        if len(calls) == 1:
            raise tf.errors.UnavailableError(None, None, "injected: deleted, then timed out")

    monkeypatch.setattr(tf.io.gfile, "rmtree", rmtree)
    saves.save()
    assert len(calls) == 1  # the retry found it gone: done, nothing more to delete
    own_dir = os.path.join(str(tmp_path), checkpointing.WORKER_COPIES_DIR, "1")
    assert not tf.io.gfile.exists(own_dir)
    assert saves.latest == os.path.join(str(tmp_path), "ckpt-3")


def test_two_starters_within_one_read_then_write_window_do_not_both_go_on(monkeypatch):
    """Both starters read the lease absent; the slow one's claim lands after the fast one has
    read its own back. The slow one must not go on too."""
    _short_leases(monkeypatch)
    model_dir = "ram://storage_test/racing"
    real_write, both_read = storage.write_text, threading.Barrier(2)

    def write(path, *args, **kwargs):
        if "renewal 1 " in args[0]:  # a claim
            both_read.wait(5)
            if threading.current_thread().name == "slow":
                time.sleep(0.35)
        return real_write(path, *args, **kwargs)

    monkeypatch.setattr(storage, "write_text", write)
    outcomes = {}

    def start():
        try:
            with model_dir_lock.ModelDirLock(model_dir):
                outcomes[threading.current_thread().name] = "went on"
                time.sleep(0.6)
        except ValueError as e:
            outcomes[threading.current_thread().name] = str(e)

    threads = [threading.Thread(target=start, name=name) for name in ("fast", "slow")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert list(outcomes.values()).count("went on") == 1, outcomes
    assert re.match(r"Claiming the lease .*run\.lease took 0\.\d s, over the 0\.2 s within "
                    r"which a run starting at the same time is ruled out", outcomes["slow"])


def test_a_local_lock_that_the_filesystem_cannot_take_is_named_as_such(tmp_path, monkeypatch):
    import fcntl

    def flock(*_):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.raises(ValueError, match=rf"model_dir {re.escape(str(tmp_path))} cannot be "
                                         r"locked \(No locks available: its filesystem does not "
                                         r"support file locks"):
        with model_dir_lock.ModelDirLock(str(tmp_path)):
            pass


# -------------------------------------------------------------------- export never destroys
@pytest.fixture(scope="module")
def trained_dir(two_steps, tmp_path_factory):
    root = tmp_path_factory.mktemp("export_safety")
    bert_runs.copy_run(two_steps, root / "run")
    return root


@pytest.mark.parametrize("where", ["the model_dir", "its parent"])
def test_export_refuses_an_output_dir_holding_the_model_dir(trained_dir, where):
    model_dir = str(trained_dir / "run")
    output_dir = model_dir if where == "the model_dir" else str(trained_dir)
    before = listing(trained_dir)
    with pytest.raises(ValueError, match=r"--output_dir .* (is|contains) the --model_dir"):
        export.export(model_dir, output_dir, overwrite=True)
    assert listing(trained_dir) == before


def test_a_failed_export_leaves_the_previous_export_whole(trained_dir, tmp_path, monkeypatch):
    model_dir, output_dir = str(trained_dir / "run"), str(tmp_path / "exported")
    export.export(model_dir, output_dir)
    before = listing(output_dir)

    def fail(*args, **kwargs):
        raise tf.errors.ResourceExhaustedError(None, None, "injected: disk full")

    monkeypatch.setattr(tf.saved_model, "save", fail)
    with pytest.raises(tf.errors.ResourceExhaustedError):
        export.export(model_dir, output_dir, overwrite=True)
    assert listing(output_dir) == before
    assert sorted(os.listdir(tmp_path)) == ["exported"]  # no temporary folder left behind
    monkeypatch.undo()
    export.export(model_dir, output_dir, overwrite=True)  # and a good one replaces it
    assert listing(output_dir) == before


# ------------------------------------------------------------------------ glob characters
def test_a_model_dir_with_glob_characters_is_refused_before_anything_is_written(
        data_dir, tmp_path):
    model_dir = tmp_path / "run[1]"
    with pytest.raises(ValueError, match=r"model_dir '.*run\[1\]' contains \[: TensorFlow reads "
                                         r"checkpoint paths as glob patterns"):
        train(data_dir, model_dir, steps=2)
    assert not model_dir.exists()


def test_an_init_checkpoint_with_glob_characters_is_refused(data_dir, tmp_path):
    with pytest.raises(ValueError, match=r"init_checkpoint '.*w\*' contains \*"):
        train(data_dir, tmp_path / "run", steps=2,
              trainer={"init_checkpoint": str(tmp_path / "w*")})
