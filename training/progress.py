"""Progress of a long stage: one line per interval in a log, rewritten in place on a terminal; one per epoch."""
from __future__ import annotations

import sys
import time

import numpy as np


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


def progress_callback(keras, epochs: int, seconds: list[float]):
    """One line per epoch: its time, validation accuracy and the time left."""
    starts: list[float] = []

    def end(epoch, logs):
        seconds.append(time.monotonic() - starts[-1])
        left = np.mean(seconds[-5:]) * (epochs - epoch - 1)
        print(f"epoch {epoch + 1}/{epochs}: {seconds[-1]:.1f} s, validation accuracy {logs.get('val_accuracy', 0):.4f}, "
              f"about {left / 60:.1f} min left", flush=True)

    return keras.callbacks.LambdaCallback(on_epoch_begin=lambda *_: starts.append(time.monotonic()), on_epoch_end=end)
