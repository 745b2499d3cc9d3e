"""Resident memory of a process and all its descendants, sampled from /proc (Linux).

Why anonymous memory is the figure that matters: anonymous pages (the heap, numpy arrays, TensorFlow
tensors) have no file behind them and, without swap, can only live in RAM; when they run out the
kernel kills a process. Pages of a memory-mapped file (an audio or feature cache, shared libraries)
are counted in VmRSS too, but they are clean copies of a file: under pressure the kernel drops them
and reads them back later, so a 3 GB memory-mapped cache does not need 3 GB of free RAM. Shared
memory (RssShmem: /dev/shm, tmpfs) cannot be dropped either, so `anon_shmem` is the unreclaimable
total. RssAnon counts a page shared copy-on-write by forked processes once per process (an
over-estimate for a tree of forks); `pss_anon` (smaps_rollup) splits such pages between them.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
STATUS_FIELDS = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "RssShmem": "shmem"}
FIGURES = ("rss", "anon", "file", "shmem", "anon_shmem", "pss_anon")


def children_map() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process visible in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir(PROC):
        if not entry.name.isdigit():
            continue
        try:
            stat = (PROC / entry.name / "stat").read_text()
        except OSError:  # the process ended while we looked
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may hold spaces and ')'
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def process_tree(root: int) -> list[int]:
    """`root` and every descendant still alive."""
    children, tree, todo = children_map(), [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def process_memory(pid: int, pss: bool = True) -> dict[str, int] | None:
    """Bytes of VmRSS, RssAnon, RssFile, RssShmem (and Pss_Anon) of one process; None if it is gone."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except OSError:
        return None
    figures = dict.fromkeys(STATUS_FIELDS.values(), 0)
    for line in lines:
        key, _, value = line.partition(":")
        if key in STATUS_FIELDS:
            figures[STATUS_FIELDS[key]] = int(value.split()[0]) * 1024
    figures["anon_shmem"] = figures["anon"] + figures["shmem"]
    figures["pss_anon"] = figures["anon"]  # where smaps_rollup is missing, the RssAnon over-estimate
    if pss:
        try:
            for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss_Anon:"):
                    figures["pss_anon"] = int(line.split()[1]) * 1024
        except OSError:
            pass
    return figures


def tree_memory(root: int, pss: bool = True) -> tuple[dict[str, int], int]:
    """Summed figures over the tree of `root`, and how many processes it has."""
    total, count = dict.fromkeys(FIGURES, 0), 0
    for pid in process_tree(root):
        figures = process_memory(pid, pss)
        if figures is None:
            continue
        count += 1
        for key in FIGURES:
            total[key] += figures[key]
    return total, count


@dataclass
class TreeSampler:
    """Samples `tree_memory(root)` every `interval` seconds on a thread; keeps peaks and a timeline."""

    root: int
    interval: float = 0.5
    pss: bool = True
    peaks: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))
    peak_processes: int = 0
    peak_anon_at: float = 0.0
    timeline: list[tuple[float, dict[str, int], int]] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def sample(self) -> None:
        figures, count = tree_memory(self.root, self.pss)
        if count == 0:
            return
        now = time.monotonic() - self.started
        self.timeline.append((now, figures, count))
        if figures["anon"] > self.peaks["anon"]:
            self.peak_anon_at = now
        for key in FIGURES:
            self.peaks[key] = max(self.peaks[key], figures[key])
        self.peak_processes = max(self.peak_processes, count)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self) -> "TreeSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def write_csv(self, path: Path) -> None:
        with open(path, "w") as f:
            f.write("seconds,processes," + ",".join(f"{key}_bytes" for key in FIGURES) + "\n")
            for t, figures, count in self.timeline:
                f.write(f"{t:.2f},{count}," + ",".join(str(figures[key]) for key in FIGURES) + "\n")
