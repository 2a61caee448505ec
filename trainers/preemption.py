"""Stopping on SIGTERM (preemption) or Ctrl-C at a step the whole cluster agrees on.

One process is its own cluster: the signal is remembered, and after the loop in flight the
runner saves and exits. With several MultiWorkerMirrored workers a signal often reaches only
one of them, and a worker that stopped alone would leave the others waiting in a collective;
TensorFlow's `PreemptionCheckpointHandler` (what Orbit's `SaveCheckpointIfPreempted` wraps)
carries the notice through the coordination service, so that every worker saves at the same
loop and exits with the preemption code.
"""

import os
import signal
import tempfile

import tensorflow as tf
from absl import logging
from tensorflow.python.distribute.failure_handling import failure_handling_util

from trainers import distribution

PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM: schedulers restart the job, which then resumes
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT (Ctrl-C), after saving like SIGTERM

def exit_code_for(signum):
    """143 after SIGTERM (or a peer's), 130 after Ctrl-C: 128 + the signal's number."""
    return INTERRUPTED_EXIT_CODE if signum == signal.SIGINT else PREEMPTED_EXIT_CODE


# TensorFlow disables its handler on these (its own warning says so).
_UNSUPPORTED_PLATFORMS = (failure_handling_util.PlatformDevice.GCE_CPU,
                          failure_handling_util.PlatformDevice.GCE_TPU)


class Preemption:
    """`with Preemption(strategy) as p:` around the loop; `p.save_and_exit_if_requested(save)`
    after every loop, on every worker. A second Ctrl-C exits at once, without saving."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, strategy):
        self.signal = None
        self._strategy = strategy
        self._previous = {}
        self._handler = None
        self._save = None
        self._saved_step = None

    @property
    def exit_code(self):
        # A worker stopped by a peer's notice exits as preempted too.
        return exit_code_for(self.signal)

    def __enter__(self):
        for signum in self.SIGNALS:
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        if distribution.worker_count(self._strategy) > 1:
            self._handler = self._cluster_handler()
        return self

    def _cluster_handler(self):
        platform = failure_handling_util.detect_platform()
        if platform in _UNSUPPORTED_PLATFORMS:
            logging.warning(
                "TensorFlow's PreemptionCheckpointHandler does not run on %s: a SIGTERM saves "
                "only on the worker that receives it, and the others stop at their next "
                "collective. Resume then starts from the last periodic checkpoint.",
                platform.name)
            return None
        # The handler's own checkpoint is left empty: the runner saves model and data position
        # itself (save_fn), and each start agrees on loop counts from zero again.
        bookkeeping = tf.train.CheckpointManager(tf.train.Checkpoint(), tempfile.mkdtemp(),
                                                 max_to_keep=1)
        return tf.distribute.experimental.PreemptionCheckpointHandler(
            self._strategy.cluster_resolver, bookkeeping,
            termination_config=tf.distribute.experimental.TerminationConfig(
                termination_watcher_fn=lambda: self.signal is not None,
                exit_fn=self._exit, save_fn=lambda: self._save(), grace_period=0))

    def _handle(self, signum, frame):
        del frame
        if signum == signal.SIGINT and self.signal == signal.SIGINT:
            logging.warning("Second Ctrl-C: exiting without saving.")
            os._exit(INTERRUPTED_EXIT_CODE)
        self.signal = signal.Signals(signum)
        hint = " (Ctrl-C again to exit at once)" if signum == signal.SIGINT else ""
        where = "at a loop all workers agree on" if self._handler else "after the current loop"
        logging.warning("%s received: saving a checkpoint %s%s.", self.signal.name, where, hint)

    def save_and_exit_if_requested(self, save):
        """Calls `save()` (which returns the step saved) and raises SystemExit if a signal
        asks for it, here or on a peer."""
        self._save = lambda: setattr(self, "_saved_step", save())
        if self._handler is not None:
            self._handler.save_checkpoint_if_preempted()
        elif self.signal is not None:
            self._save()
            self._exit()

    def _exit(self):
        name = self.signal.name if self.signal else "A peer's SIGTERM"
        logging.warning("%s: checkpoint saved at step %s; rerun the same command to resume.",
                        name, self._saved_step)
        self._stop_handler()
        raise SystemExit(self.exit_code)

    def _stop_handler(self):
        # TensorFlow has no public close; its destructor runs these, but the handler's
        # threads keep it alive, so a finished run would leave a peer's watcher waiting.
        if self._handler is not None:
            self._handler._stop_poll_termination_signal_thread()  # pylint: disable=protected-access
            self._handler._stop_cluster_wise_termination_watcher_thread()  # pylint: disable=protected-access
            self._handler = None

    def __exit__(self, *exc):
        self._stop_handler()
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous = {}
