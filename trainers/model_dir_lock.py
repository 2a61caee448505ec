"""One live training run per model_dir: a lock on a local disk, a lease on remote storage.

A restarted job overlapping its predecessor (a scheduler's retry, a second launch) would
otherwise have two writers of one model_dir: each deletes the other's half-written saves and
both write checkpoints in turn.

- Local folders: `fcntl.flock`, which the kernel releases when its process dies, so a killed run
  never leaves the directory stuck.
- Remote paths (gs://, ram://, ...), which have no lock: a lease file renewed through tf.io.gfile
  every LEASE_RENEW_SECONDS. A newcomer that finds one watches it: renewed while it watches
  means a live holder, and the newcomer is refused; not renewed for LEASE_STALE_SECONDS (by the
  newcomer's own clock, so clock skew between hosts does not matter) means a dead holder, and
  the newcomer takes over. Object stores have no create-if-absent through gfile, so two
  newcomers starting within the same second could both write a lease; the one that reads back
  someone else's stops.
"""

import datetime
import errno
import os
import socket
import threading
import time
import uuid

import tensorflow as tf
from absl import logging

from trainers import storage

LOCK_FILE = "run.lock"
LEASE_FILE = "run.lease"
LEASE_RENEW_SECONDS = 20.0
LEASE_STALE_SECONDS = 90.0
_IN_USE_ERRNOS = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def _holder():
    return (f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}")


def _in_use(model_dir, holder):
    return ValueError(f"model_dir {model_dir} is in use by {holder}. Wait for that run to end, "
                      "stop it, or pass another --model_dir.")


def _unwritable(model_dir, error):
    return ValueError(f"model_dir {model_dir} cannot be written ({storage.short(error)}). "
                      "Pass a --model_dir you can write to.")


class ModelDirLock:
    """`with ModelDirLock(model_dir):` around a training run; a ValueError naming the holder
    if another live run has model_dir."""

    def __init__(self, model_dir):
        self.model_dir = model_dir
        self._owner = None

    def __enter__(self):
        try:
            tf.io.gfile.makedirs(self.model_dir)
        except (OSError, tf.errors.OpError) as e:
            raise _unwritable(self.model_dir, e) from None
        remote = "://" in self.model_dir
        self._owner = (_Lease if remote else _FileLock)(self.model_dir)
        self._owner.acquire()
        return self

    def __exit__(self, *exc):
        if self._owner is not None:
            self._owner.release()
            self._owner = None


class _FileLock:
    def __init__(self, model_dir):
        self.model_dir = model_dir
        self._file = None

    def acquire(self):
        import fcntl
        try:
            self._file = open(os.path.join(self.model_dir, LOCK_FILE), "a+")
        except OSError as e:
            raise _unwritable(self.model_dir, e) from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            self._file = None
            if e.errno in _IN_USE_ERRNOS:
                raise _in_use(self.model_dir, holder) from None
            raise ValueError(
                f"model_dir {self.model_dir} cannot be locked ({os.strerror(e.errno)}: "
                "its filesystem does not support file locks, as some NFS mounts do not). Use a "
                "local folder, or mount it with locking enabled.") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(_holder() + "\n")
        self._file.flush()

    def release(self):
        self._file.seek(0)
        self._file.truncate()
        self._file.close()  # closing releases the lock
        self._file = None


class _Lease:
    def __init__(self, model_dir):
        self.model_dir = model_dir
        self.path = os.path.join(model_dir, LEASE_FILE)
        self._token = uuid.uuid4().hex
        self._holder = _holder()
        self._renewals = 0
        self._stop = threading.Event()
        self._thread = None

    def _read(self):
        try:
            with tf.io.gfile.GFile(self.path) as f:
                return f.read()
        except tf.errors.NotFoundError:
            return None

    def _write(self):
        self._renewals += 1
        storage.write_text(self.path, f"{self._holder}\ntoken {self._token}\nrenewal "
                           f"{self._renewals} at "
                           f"{datetime.datetime.now().isoformat(timespec='seconds')}\n")

    def acquire(self):
        seen = self._read()
        if seen is not None:
            self._wait_until_stale(seen)
        try:
            self._write()
        except tf.errors.OpError as e:
            raise _unwritable(self.model_dir, e) from None
        time.sleep(min(1.0, LEASE_RENEW_SECONDS))  # let a newcomer racing us write its own
        current = self._read() or ""
        if self._token not in current:
            raise _in_use(self.model_dir, current.split("\n")[0] or "another run")
        self._thread = threading.Thread(target=self._renew, daemon=True, name="model_dir lease")
        self._thread.start()

    def _wait_until_stale(self, seen):
        holder = seen.split("\n")[0]
        logging.warning("model_dir %s has a lease (%s): watching it for up to %.0f s to see "
                        "whether that run is alive.", self.model_dir, holder,
                        LEASE_STALE_SECONDS)
        deadline = time.monotonic() + LEASE_STALE_SECONDS
        while time.monotonic() < deadline:
            time.sleep(min(LEASE_RENEW_SECONDS / 2, max(0.0, deadline - time.monotonic())))
            current = self._read()
            if current is None:
                return  # released meanwhile
            if current != seen:
                renewer = current.split("\n")[0]
                raise _in_use(self.model_dir,
                              f"{renewer} (its lease {self.path} is being renewed)")
        logging.warning("The lease of %s was not renewed for %.0f s: its run is gone; taking "
                        "over.", holder, LEASE_STALE_SECONDS)

    def _renew(self):
        while not self._stop.wait(LEASE_RENEW_SECONDS):
            try:
                current = self._read() or ""
                if self._token not in current:
                    logging.error("The lease %s was taken over by %s, which found it stale: "
                                  "two runs now write this model_dir. Stop one of them.",
                                  self.path, current.split("\n")[0])
                    return
                self._write()
            except tf.errors.OpError as e:
                logging.warning("Renewing the lease %s failed (%s); trying again in %.0f s.",
                                self.path, storage.short(e), LEASE_RENEW_SECONDS)

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            if self._token in (self._read() or ""):
                tf.io.gfile.remove(self.path)
        except tf.errors.OpError as e:
            logging.warning("Could not remove the lease %s (%s); the next run waits %.0f s "
                            "for it to go stale.", self.path, storage.short(e),
                            LEASE_STALE_SECONDS)
