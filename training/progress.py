"""Progress of a long stage: one line per interval in a log, rewritten in place on a terminal."""
from __future__ import annotations

import sys
import time


class Progress:
    """One line per stage on stderr: count, rate and time left (rewritten in place on a terminal)."""

    def __init__(self, stage: str, total: int, out=None, every: float | None = None):
        out = out or sys.stderr  # looked up per call, so redirection (and pytest's capture) works
        self.stage, self.total, self.out, self.started, self.last = stage, total, out, time.monotonic(), 0.0
        self.done = 0
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.every = every if every is not None else (0.5 if self.tty else 15.0)

    def add(self, count: int) -> None:
        """`count` more done."""
        self.done += count
        self(self.done)

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < self.every:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-6)
        rate = done / elapsed
        left = (self.total - done) / rate if rate > 0 else float("inf")
        tail = f"in {elapsed:.1f} s" if final else f"ETA {left:.0f} s"
        line = f"{self.stage}: {done:,}/{self.total:,} clips  {rate:,.1f} clips/s  {tail}"
        self.out.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        self.out.flush()
