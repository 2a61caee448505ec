"""A progress line for long work: a bar on a terminal, a log line every 10% otherwise."""

import sys
import threading
import time


class Progress:

    def __init__(self, total, description, stream=None):
        self.total = max(1, total)
        self.description = description
        self.stream = stream or sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.monotonic()
        self._last_decile = -1

    def update(self, done):
        fraction = min(1.0, done / self.total)
        elapsed = time.monotonic() - self.start
        remaining = elapsed / fraction - elapsed if fraction > 0 else float("nan")
        if self.interactive:
            bar = "#" * int(fraction * 30)
            self.stream.write(f"\r{self.description} [{bar:<30}] {fraction:6.1%} "
                              f"{elapsed:5.0f}s elapsed, ~{remaining:4.0f}s left")
            self.stream.flush()
        elif int(fraction * 10) > self._last_decile:
            self._last_decile = int(fraction * 10)
            self.stream.write(f"{self.description}: {fraction:.0%} after {elapsed:.0f}s\n")
            self.stream.flush()

    def close(self):
        self.update(self.total)
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()


class Heartbeat:
    """`with Heartbeat("learning the vocab"):` a line every `every` seconds for work that
    cannot count its own progress, and one when it ends."""

    def __init__(self, description, every=10.0, stream=None):
        self.description = description
        self.every = every
        self.stream = stream or sys.stderr
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)

    def _write(self, text):
        self.stream.write(f"{self.description}: {text}\n")
        self.stream.flush()

    def _beat(self):
        start = time.monotonic()
        while not self._done.wait(self.every):
            self._write(f"still working after {time.monotonic() - start:.0f}s")

    def __enter__(self):
        self._start = time.monotonic()
        self._write("started")
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()
        if exc[0] is None:
            self._write(f"done after {time.monotonic() - self._start:.0f}s")
