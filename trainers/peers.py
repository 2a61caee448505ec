"""Waiting for the other tasks of a TF_CONFIG cluster, with a timeout and a way out.

TensorFlow's own rendezvous (inside `MultiWorkerMirroredStrategy()`) waits without end for an
absent peer, holding the GIL and with SIGTERM taken by its preemption notifier, so neither a
timeout nor a scheduler's SIGTERM can end it. This wait runs first, in Python: each task
listens on its own address and connects to every peer's until all answer. A peer counts as up
once its port accepts connections, here or already in TensorFlow's server, so tasks that
start minutes apart still meet.
"""

import signal
import socket
import time

from absl import logging

_TASK_JOBS = ("chief", "worker")  # the tasks that train; evaluators and ps do not meet here
_POLL_SECONDS = 0.2


class ClusterStartupError(RuntimeError):
    """A peer did not come up in time, or this task's port is taken: deployment, not a bug."""


class PeerWaitInterrupted(Exception):
    """SIGTERM or Ctrl-C arrived while waiting; nothing has been trained, so nothing to save."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _address(address):
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def training_tasks(tf_config):
    """[(job, index, "host:port")] of the tasks that train together, in cluster order."""
    cluster = tf_config.get("cluster", {})
    return [(job, index, address) for job in _TASK_JOBS
            for index, address in enumerate(cluster.get(job, []))]


def _reachable(address):
    try:
        with socket.create_connection(_address(address), timeout=1.0):
            return True
    except OSError:
        return False


def wait(tf_config, timeout_seconds):
    """Returns once every training task of `tf_config` answers; raises ClusterStartupError naming
    the missing ones after `timeout_seconds`, or PeerWaitInterrupted on SIGTERM / SIGINT."""
    task = tf_config.get("task", {})
    me = (task.get("type"), task.get("index", 0))
    tasks = training_tasks(tf_config)
    mine = [address for job, index, address in tasks if (job, index) == me]
    if not mine or len(tasks) < 2:
        return
    signals = []
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[signum] = signal.signal(signum, lambda s, frame: signals.append(s))
        except ValueError:  # not the main thread: signals keep their handlers
            pass
    listener = socket.socket(socket.AF_INET6 if ":" in _address(mine[0])[0] else socket.AF_INET)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            listener.bind(("", _address(mine[0])[1]))
        except OSError as e:
            raise ClusterStartupError(f"this task's TF_CONFIG address {mine[0]} cannot be used "
                                   f"({e.strerror}): another process holds the port; stop it "
                                   "or give this task another port.") from None
        listener.listen(len(tasks) * 4)
        missing = [(job, index, address) for job, index, address in tasks
                   if (job, index) != me]
        deadline = time.monotonic() + timeout_seconds
        logged = False
        while True:
            missing = [t for t in missing if not _reachable(t[2])]
            if not missing:
                return
            if signals:
                raise PeerWaitInterrupted(signals[0])
            if time.monotonic() > deadline:
                names = ", ".join(f"{job} {index} ({address})" for job, index, address in missing)
                raise ClusterStartupError(
                    f"cluster task(s) {names} did not come up within {timeout_seconds} s "
                    "(runtime.peer_timeout_seconds). Start them with the same TF_CONFIG "
                    "cluster, check that the addresses are reachable from here, or raise the "
                    "timeout.")
            if not logged:
                logging.info("Waiting up to %d s for cluster task(s): %s", timeout_seconds,
                             ", ".join(f"{job} {index}" for job, index, _ in missing))
                logged = True
            time.sleep(_POLL_SECONDS)
    finally:
        listener.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
