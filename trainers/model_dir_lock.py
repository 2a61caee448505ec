"""One live training run per model_dir: a lock on a local disk, a lease on remote storage.

A restarted job overlapping its predecessor (a scheduler's retry, a second launch) would
otherwise have two writers of one model_dir: each deletes the other's half-written saves and
both write checkpoints in turn.

- Local folders: `fcntl.flock`, which the kernel releases when its process dies, so a killed run
  never leaves the directory stuck.
- Remote paths (gs://, ram://, ...), which have no lock: a lease file renewed through tf.io.gfile
  every LEASE_RENEW_SECONDS, one try each (a retried write could land after a successor took over,
  and replace its lease), never written once past the deadline. A newcomer that finds one watches
  it: renewed while it watches means a live holder, and the newcomer is refused; not renewed for
  LEASE_STALE_SECONDS (by the newcomer's own clock, so clock skew between hosts does not matter)
  means a dead holder, and the newcomer takes over. The holder stops acting first: `check()` fails
  once its last successful renewal began LEASE_DEADLINE_SECONDS ago (shorter than
  LEASE_STALE_SECONDS, as in Kubernetes' leader election), or once it found the lease in other
  hands; the runner checks before every save.
- Object stores have no create-if-absent through gfile, so starters claim the lease as in
  Fischer's mutual exclusion: read it, write their own, wait LEASE_SETTLE_SECONDS, read it back.
  Two starters cannot both read back their own as long as each one's read-then-write takes less
  than LEASE_SETTLE_SECONDS; a starter that measures its own took longer refuses to go on.
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
# A holder whose last successful renewal began this long ago stops: the 30 s left to
# LEASE_STALE_SECONDS are the margin for a save already under way.
LEASE_DEADLINE_SECONDS = 60.0
# A starter's wait before reading its claim back, and the bound on its own read-then-write.
LEASE_SETTLE_SECONDS = 5.0
_IN_USE_ERRNOS = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def _holder():
    return (f"pid {os.getpid()} on {socket.gethostname()} since "
            f"{datetime.datetime.now().isoformat(timespec='seconds')}")


def _in_use(model_dir, holder):
    return ValueError(f"model_dir {model_dir} is in use by {holder}. Wait for that run to end, "
                      "stop it, or pass another --model_dir.")


class LeaseLostError(RuntimeError):
    """The run can no longer prove that it holds its model_dir's lease, so it stops writing."""


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
        remote = "://" in self.model_dir
        try:
            if remote:  # a blip is retried, and an outage named as one (StorageUnavailableError)
                storage.retrying(lambda: tf.io.gfile.makedirs(self.model_dir), self.model_dir,
                                 doing="Creating")
            else:
                tf.io.gfile.makedirs(self.model_dir)
        except (OSError, tf.errors.OpError, storage.StorageAccessError) as e:
            raise _unwritable(self.model_dir, e) from None
        self._owner = (_Lease if remote else _FileLock)(self.model_dir)
        self._owner.acquire()
        return self

    def check(self):
        """Raises LeaseLostError once this run can no longer prove it holds model_dir (a local
        lock, held by the kernel until the process dies, cannot be lost)."""
        if self._owner is not None:
            self._owner.check()

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

    def check(self):
        pass

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
        # Monotonic time at which the last renewal that proved the lease ours began.
        self._proven_at = None
        self._lost = None  # why the lease is known to be in other hands
        self._last_failure = None

    def _read(self, retry=True):
        def read():
            try:
                with tf.io.gfile.GFile(self.path) as f:
                    return f.read()
            except tf.errors.NotFoundError:
                return None
        return storage.retrying(read, f"the lease {self.path}") if retry else read()

    def _ours(self, text):
        return text is not None and f"\ntoken {self._token}\n" in text

    def _write(self, retry=True):
        self._renewals += 1
        # A temporary file of our own: two starters sharing one would write into each other's.
        storage.write_text(self.path, f"{self._holder}\ntoken {self._token}\nrenewal "
                           f"{self._renewals} at "
                           f"{datetime.datetime.now().isoformat(timespec='seconds')}\n",
                           temporary=f"{self.path}.{self._token}.partial", retry=retry)

    def acquire(self):
        """Claims the lease. A transient error while claiming abandons the claim and starts
        over after a wait (storage.RETRY_DELAYS_SECONDS); StorageUnavailableError, naming the
        outage, once those are used up. A refusal means model_dir cannot be written."""
        for delay in storage.RETRY_DELAYS_SECONDS + (None,):
            try:
                return self._claim()
            except tf.errors.OpError as e:
                if isinstance(e, storage.REFUSED) or storage.is_damage(e):
                    raise _unwritable(self.model_dir, e) from None
                if delay is None:
                    self._remove_if_ours()
                    raise storage.StorageUnavailableError(
                        f"Taking the lease {self.path} failed "
                        f"{len(storage.RETRY_DELAYS_SECONDS) + 1} times over "
                        f"{sum(storage.RETRY_DELAYS_SECONDS)} s with {type(e).__name__} "
                        f"({storage.short(e)}). The storage is unavailable, not unwritable, "
                        "and nothing was written to model_dir; rerun when it answers "
                        "again.") from None
                logging.warning("Taking the lease %s: %s (%s); starting over in %s s.",
                                self.path, type(e).__name__, storage.short(e), delay)
                self._abandon_claim()
                time.sleep(delay)
            except storage.StorageAccessError as e:
                raise _unwritable(self.model_dir, e) from None

    def _claim(self):
        """One try at the claim; every read and write in it is tried once, so that a failure
        abandons it (acquire) instead of a retried write landing after a racing starter read
        its own claim back. Watching a holder's lease (its reads retried) is not bounded so."""
        seen = self._read(retry=False)
        # Ours: an abandoned claim whose write landed after all; no other run's to watch.
        if seen is not None and not self._ours(seen):
            self._wait_until_stale(seen)
        claim_started = time.monotonic()
        current = self._read(retry=False)
        if current is not None and current != seen:
            raise _in_use(self.model_dir, _first_line(current))
        self._write(retry=False)
        claim_seconds = time.monotonic() - claim_started
        if claim_seconds >= LEASE_SETTLE_SECONDS:
            self._remove_if_ours()
            raise ValueError(
                f"Claiming the lease {self.path} took {claim_seconds:.1f} s, over the "
                f"{LEASE_SETTLE_SECONDS:g} s within which a run starting at the same time is "
                "ruled out; this run stops before touching model_dir. Rerun it.")
        time.sleep(LEASE_SETTLE_SECONDS)  # a starter racing us has written its claim by now
        current = self._read(retry=False)
        if not self._ours(current):
            raise _in_use(self.model_dir, _first_line(current or "another run"))
        self._proven_at = claim_started
        self._thread = threading.Thread(target=self._renew, daemon=True, name="model_dir lease")
        self._thread.start()

    def _wait_until_stale(self, seen):
        holder = _first_line(seen)
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
                raise _in_use(self.model_dir,
                              f"{_first_line(current)} (its lease {self.path} is being renewed)")
        logging.warning("The lease of %s was not renewed for %.0f s: its run is gone; taking "
                        "over.", holder, LEASE_STALE_SECONDS)

    def _past_deadline(self):
        return time.monotonic() - self._proven_at > LEASE_DEADLINE_SECONDS

    def _renew(self):
        # One try per tick, never storage.retrying: its waits (31 s) would let a write begun
        # inside the deadline land after a successor took the lease over, replacing its claim.
        # A failed tick is tried again at the next one; the deadline decides when to stop.
        while not self._stop.wait(LEASE_RENEW_SECONDS):
            if self._past_deadline():
                return  # past the deadline a successor may write the lease: never overwrite it
            started = time.monotonic()
            # Any exception: the deadline, not this thread's survival, decides when to stop.
            try:
                current = self._read(retry=False)
                if not self._ours(current):
                    self._lost = (f"it now reads {_first_line(current)!r}" if current else
                                  "it was removed")
                    logging.error("The lease %s is no longer this run's (%s): this run stops "
                                  "before its next save.", self.path, self._lost)
                    return
                # Checked again right before writing: a read that answered slowly may have
                # carried us past the deadline, after which the lease may be a successor's.
                if self._past_deadline():
                    return
                self._write(retry=False)
                self._proven_at = started
                self._last_failure = None
            except Exception as e:  # pylint: disable=broad-except
                self._last_failure = f"{type(e).__name__}: {storage.short(e)}"
                logging.warning("Renewing the lease %s failed (%s); trying again in %.0f s.",
                                self.path, self._last_failure, LEASE_RENEW_SECONDS)

    def check(self):
        if self._lost is not None:
            reason = f"its lease {self.path} was taken over ({self._lost})"
        else:
            age = time.monotonic() - self._proven_at
            if age <= LEASE_DEADLINE_SECONDS:
                return
            failure = f": {self._last_failure}" if self._last_failure else ""
            reason = (f"its lease {self.path} was last renewed {age:.0f} s ago, over the "
                      f"{LEASE_DEADLINE_SECONDS:g} s deadline{failure}")
        raise LeaseLostError(
            f"This run no longer holds model_dir {self.model_dir} ({reason}), so it stops "
            "without saving: another run may take it over. Rerun the same command to resume "
            "from the last checkpoint once no other run uses model_dir.")

    def _abandon_claim(self):
        """Removes a claim of ours that may have landed, in one try: the next claim starts by
        reading the lease anyway."""
        try:
            if self._ours(self._read(retry=False)):
                tf.io.gfile.remove(self.path)
        except tf.errors.OpError:
            pass

    def _remove_if_ours(self):
        try:
            if self._ours(self._read()):
                tf.io.gfile.remove(self.path)
                return True
        except (tf.errors.OpError, storage.StorageUnavailableError,
                storage.StorageAccessError) as e:
            logging.warning("Could not remove the lease %s (%s); the next run waits %.0f s "
                            "for it to go stale.", self.path, storage.short(e),
                            LEASE_STALE_SECONDS)
        return False

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._remove_if_ours()


def _first_line(text):
    return text.split("\n")[0] or "another run"
