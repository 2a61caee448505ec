"""The trainer as users run it: killed and resumed, preempted, and on two worker processes."""

import json
import os
import random
import re
import signal
import socket
import time

import pytest
import tensorflow as tf

from tests import bert_runs


# On one pytest-xdist worker: the uninterrupted reference run is made once, not on each.
pytestmark = pytest.mark.xdist_group("runner_processes")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bert_runs.make_data(str(tmp_path_factory.mktemp("processes")))


def wait_for_checkpoint(model_dir, process, after=0, timeout=240):
    """Until `process` has saved a checkpoint of a step past `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(step > after for step in steps_of(model_dir)):
            return
        if process.poll() is not None:
            raise AssertionError(f"the run ended before a checkpoint past step {after}:\n"
                                 f"{process.stdout.read()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no checkpoint appeared")


def steps_of(model_dir):
    return sorted(int(p.rsplit("-", 1)[1].split(".")[0])
                  for p in tf.io.gfile.glob(os.path.join(model_dir, "ckpt-*.index")))


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
    """A 12-step run with dropout on, whose checkpoint the interrupted runs must reproduce."""
    root = tmp_path_factory.mktemp("uninterrupted")
    config = bert_runs.write_config(
        str(root / "config.yaml"), data_dir,
        task={"model": {"dropout_rate": 0.1, "attention_dropout_rate": 0.1}},
        trainer={"num_train_steps": 12, "iterations_per_loop": 1, "save_checkpoints_steps": 1})
    code, output = bert_runs.run_cli(f"--config_file={config}", f"--model_dir={root / 'run'}")
    assert code == 0, output
    return config, tf.train.latest_checkpoint(str(root / "run"))


# The resume after the save is the same whichever signal asked for it: SIGTERM's case runs it,
# and that resume is then SIGKILLed, which no handler sees, and resumed by the same command.
@pytest.mark.parametrize("signum, exit_code, resume", [(signal.SIGTERM, 143, True),
                                                       (signal.SIGINT, 130, False)])
def test_sigterm_or_ctrl_c_saves_a_checkpoint_then_a_sigkill_loses_nothing_past_the_last(
        uninterrupted, tmp_path, signum, exit_code, resume):
    config, reference = uninterrupted
    model_dir = str(tmp_path / "run")
    args = (f"--config_file={config}", f"--model_dir={model_dir}",
            "--save_checkpoints_steps=100")  # only SIGTERM and the end save
    process = bert_runs.cli(*args)
    deadline = time.monotonic() + 240
    while "step 1/12" not in (line := process.stdout.readline()):
        assert line and time.monotonic() < deadline, "the run did not start training"
    process.send_signal(signum)
    output = process.stdout.read()
    assert process.wait() == exit_code, output
    assert f"{signal.Signals(signum).name}: checkpoint saved at step" in output
    saved = steps_of(model_dir)
    assert len(saved) == 1 and 1 <= saved[0] < 12
    if not resume:
        return
    # Resumed with the fixture's save at every step, and killed once it saved one of its own.
    args = (f"--config_file={config}", f"--model_dir={model_dir}")
    process = bert_runs.cli(*args)
    wait_for_checkpoint(model_dir, process, after=saved[0])
    process.send_signal(signal.SIGKILL)
    output = process.communicate()[0]
    assert f"Resumed from {model_dir}/ckpt-{saved[0]} at step {saved[0]}" in output
    killed_at = steps_of(model_dir)[-1]
    assert saved[0] < killed_at < 12, output
    code, output = bert_runs.run_cli(*args)
    assert code == 0, output
    assert f"Resumed from {model_dir}/ckpt-{killed_at} at step {killed_at}" in output
    # Bit for bit: the same data position, dropout generator state and optimizer state.
    bert_runs.assert_same_weights(tf.train.latest_checkpoint(model_dir), reference)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_workers(config, model_dir, *extra, count=2, started=None, chief=False):
    """`count` MultiWorkerMirrored tasks on localhost (the first one a `chief` job's, as on
    Vertex AI and Kubeflow, if `chief`); only the first `started` launched."""
    ports = free_ports(count)
    tasks = [("chief", 0)] if chief else []
    tasks += [("worker", i) for i in range(count - len(tasks))]
    cluster = {"worker": [f"localhost:{port}" for port in ports[1 if chief else 0:]]}
    if chief:
        cluster["chief"] = [f"localhost:{ports[0]}"]
    processes = []
    for task_type, index in tasks[:started]:
        tf_config = json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})
        processes.append(bert_runs.cli(
            f"--config_file={config}", f"--model_dir={model_dir}",
            "--distribution_strategy=multi_worker_mirrored", *extra,
            env={"TF_CONFIG": tf_config}))
    return processes, cluster


def run_two_workers(config, model_dir, *extra, chief=False):
    processes, _ = start_workers(config, model_dir, *extra, chief=chief)
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output
    return outputs


@pytest.fixture(scope="module")
def one_file_dir(tmp_path_factory):
    # One file and no shuffling: the two workers' records of a step are then exactly the
    # records of the one-process global batch, so the updates must agree.
    return bert_runs.make_data(str(tmp_path_factory.mktemp("one_file")), num_output_files=1)


@pytest.fixture(scope="module")
def preemption_run(one_file_dir, tmp_path_factory):
    """(config, model_dir of the one-process run) of the 40-step preemption tests."""
    tmp_path = tmp_path_factory.mktemp("preemption")
    config = bert_runs.write_config(
        str(tmp_path / "config.yaml"), one_file_dir,
        task={"train_data": {"shuffle_buffer_size": 1}},
        # Enough steps that the notice (TensorFlow polls for it each second) arrives in time;
        # loops of 2, so that the workers' collectives also run inside a multi-step loop.
        trainer={"num_train_steps": 40, "iterations_per_loop": 2,
                 "save_checkpoints_steps": 100})  # only the preemption and the end save
    single_dir = str(tmp_path / "single")
    code, output = bert_runs.run_cli(f"--config_file={config}", f"--model_dir={single_dir}")
    assert code == 0, output
    return config, single_dir


def sigterm_after_step(processes, signalled, step):
    """SIGTERM to processes[signalled] once it logs `step`; every process's output."""
    deadline = time.monotonic() + 240
    while f"step {step}/40" not in (line := processes[signalled].stdout.readline()):
        assert line and time.monotonic() < deadline, "the cluster did not start training"
    processes[signalled].send_signal(signal.SIGTERM)
    return [p.communicate(timeout=240)[0] for p in processes]


def test_sigterm_to_one_of_two_workers_stops_both_at_the_same_step_and_resumes(
        preemption_run, tmp_path):
    config, single_dir = preemption_run
    rng = random.Random()
    signalled, after_step = rng.randrange(2), 2 * rng.randrange(1, 3)  # a loop's last step
    workers_dir = str(tmp_path / "workers")
    processes, _ = start_workers(config, workers_dir)
    outputs = sigterm_after_step(processes, signalled, after_step)
    context = f"SIGTERM to worker {signalled} after step {after_step}"
    assert [p.returncode for p in processes] == [143, 143], (context, outputs)
    saved = [re.search(r"checkpoint saved at step (\d+)", o) for o in outputs]
    assert all(saved), (context, outputs)
    steps = {int(m.group(1)) for m in saved}
    assert len(steps) == 1 and steps == set(steps_of(workers_dir)), (context, outputs)
    stopped_at = steps.pop()
    assert after_step <= stopped_at < 40, context

    outputs = run_two_workers(config, workers_dir)
    # Each resumes from the step both saved; starting over would also end at the same weights,
    # so this is also the check that two workers train as one process does.
    resumed = f"Resumed from {workers_dir}/ckpt-{stopped_at} at step {stopped_at}"
    assert all(resumed in output for output in outputs), (context, outputs)
    bert_runs.assert_same_weights(tf.train.latest_checkpoint(workers_dir),
                                  tf.train.latest_checkpoint(single_dir), rtol=1e-4, atol=2e-6)
    # Worker 1 saves into a scratch directory of its own, removed after each save.
    assert not tf.io.gfile.exists(os.path.join(workers_dir, "worker_tmp", "1", "checkpoint"))


def test_an_absent_peer_times_out_naming_it_and_sigterm_ends_the_wait(data_dir, tmp_path):
    config = bert_runs.write_config(str(tmp_path / "config.yaml"), data_dir)
    processes, cluster = start_workers(config, str(tmp_path / "timeout"),
                                       "--params_override=runtime.peer_timeout_seconds=2",
                                       started=1)
    output = processes[0].communicate(timeout=120)[0]
    assert processes[0].returncode == 1, output
    assert (f"error: cluster task(s) worker 1 ({cluster['worker'][1]}) did not come up within "
            "2 s (runtime.peer_timeout_seconds)") in output
    assert "Traceback" not in output

    processes, _ = start_workers(config, str(tmp_path / "sigterm"), started=1)
    deadline = time.monotonic() + 120
    while "Waiting up to 900 s for cluster task(s): worker 1" not in (
            line := processes[0].stdout.readline()):
        assert line and time.monotonic() < deadline, "the worker did not start waiting"
    processes[0].send_signal(signal.SIGTERM)
    output = processes[0].communicate(timeout=30)[0]
    assert processes[0].returncode == 143, output
    assert "SIGTERM: stopped while waiting for cluster peers" in output


def writer_pids(model_dir):
    """The process ids in the names of the summary files (events.out.tfevents.T.HOST.PID...)."""
    return {int(re.search(r"\.(\d+)\.\d+\.v2$", name).group(1)) for sub in ("train", "eval")
            if os.path.isdir(os.path.join(model_dir, sub))
            for name in os.listdir(os.path.join(model_dir, sub))}


def test_a_chief_and_a_worker_have_one_writer_survive_sigterm_and_match_one_process(
        preemption_run, tmp_path):
    config, single_dir = preemption_run
    workers_dir = str(tmp_path / "workers")
    processes, _ = start_workers(config, workers_dir, chief=True)
    chief = processes[0]
    outputs = sigterm_after_step(processes, 0, 2)
    assert [p.returncode for p in processes] == [143, 143], outputs
    [stopped_at] = steps_of(workers_dir)
    # The chief wrote the summaries; worker 0, whom our own guess took for a chief, none.
    assert writer_pids(workers_dir) == {chief.pid}
    assert not os.path.exists(os.path.join(workers_dir, "worker_tmp", "0", "checkpoint"))

    processes, _ = start_workers(config, workers_dir, chief=True)
    outputs = [p.communicate(timeout=300)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    resumed = f"Resumed from {workers_dir}/ckpt-{stopped_at} at step {stopped_at}"
    assert all(resumed in output for output in outputs), outputs
    assert writer_pids(workers_dir) == {chief.pid, processes[0].pid}
    bert_runs.assert_same_weights(tf.train.latest_checkpoint(workers_dir),
                                  tf.train.latest_checkpoint(single_dir), rtol=1e-4, atol=2e-6)
