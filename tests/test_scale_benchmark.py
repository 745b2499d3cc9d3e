"""The full-size stand-in builder and the process-tree memory sampler of host_tools/scale_benchmark.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from host_tools.proc_memory import TreeSampler, tree_memory
from host_tools.scale_benchmark import build_standin, run_measured, standin_marker
from training.data import list_words, read_list, speaker_of, split_of

MB = 1 << 20


def _original(name: str) -> str:
    """The source clip of a stand-in copy: '<speaker>r<k>_nohash_<n>.wav' -> '<speaker>_nohash_<n>.wav'."""
    speaker, rest = name.split("_nohash_", 1)
    return f"{speaker.rsplit('r', 1)[0]}_nohash_{rest}"


def test_standin_keeps_every_copy_in_its_clips_split_and_speakers_disjoint(mini_set, tmp_path):
    marker = build_standin(mini_set, tmp_path / "standin", copies=3)
    source_words = list_words(mini_set)
    standin = tmp_path / "standin"
    words = list_words(standin)
    assert marker["clips"] == 3 * sum(len(f) for f in source_words.values()) == sum(len(f) for f in words.values())
    assert {w: len(f) for w, f in words.items()} == {w: 3 * len(f) for w, f in source_words.items()}
    src_val, src_test = read_list(mini_set / "validation_list.txt"), read_list(mini_set / "testing_list.txt")
    val, test = read_list(standin / "validation_list.txt"), read_list(standin / "testing_list.txt")
    assert len(val) == 3 * len(src_val) and len(test) == 3 * len(src_test)
    speakers: dict[str, set[str]] = {"training": set(), "validation": set(), "testing": set()}
    for word, files in words.items():
        for path in files:
            rel = f"{word}/{path.name}"
            split = split_of(rel, val, test)
            assert split == split_of(f"{word}/{_original(path.name)}", src_val, src_test), rel
            assert path.resolve() == (mini_set / word / _original(path.name)).resolve()
            speakers[split].add(speaker_of(rel))
    assert not speakers["training"] & speakers["validation"]
    assert not speakers["training"] & speakers["testing"]
    assert not speakers["validation"] & speakers["testing"]
    assert (standin / "_background_noise_").is_dir() and "STAND-IN" in marker["what"]
    assert "accuracy on it means nothing" in (standin / "README.md").read_text()


def test_standin_is_reused_when_complete_and_rebuilt_when_not(mini_set, tmp_path, capsys):
    dest = tmp_path / "standin"
    build_standin(mini_set, dest, copies=1)
    marker_file = dest / "STANDIN.json"
    first = marker_file.stat().st_mtime_ns
    started = time.monotonic()
    build_standin(mini_set, dest, copies=1)  # complete: reused, not rewritten
    assert marker_file.stat().st_mtime_ns == first and time.monotonic() - started < 5
    victim = next((dest / "yes").iterdir())
    victim.unlink()  # an incomplete stand-in
    build_standin(mini_set, dest, copies=1)
    assert "rebuilding" in capsys.readouterr().err and victim.is_symlink()
    build_standin(mini_set, dest, copies=2)  # other settings: rebuilt too
    assert standin_marker(dest)["copies"] == 2 and not list(tmp_path.glob("standin.tmp-*"))


CHILD = """
import mmap, subprocess, sys, time
anon = b"\\x01" * (200 << 20)  # written, so every page is resident and anonymous
grandchild = subprocess.Popen([sys.executable, "-c", '''
import mmap, sys, time
with open(sys.argv[1], "rb") as f:
    mapped = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    total = sum(mapped[i] for i in range(0, len(mapped), 4096))  # touch every page: resident, file-backed
    print("mapped", flush=True)
    time.sleep(60)
''', sys.argv[1]], stdout=sys.stdout)
time.sleep(60)
"""


def test_memory_sampler_reads_a_real_process_tree(tmp_path):
    mapped = tmp_path / "mapped.bin"
    with open(mapped, "wb") as f:
        f.write(os.urandom(MB) * 200)
    # its own process group, so the test ends exactly the two processes it started
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(mapped)], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert child.stdout.readline().strip() == "mapped"
        time.sleep(0.3)
        sampler = TreeSampler(child.pid, interval=0.1).start()
        time.sleep(0.5)
        sampler.stop()
        figures, count = tree_memory(child.pid)
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    assert count == 2 and sampler.peak_processes == 2
    assert 200 * MB <= figures["anon"] < 200 * MB + 120 * MB  # the 200 MB of bytes, plus two interpreters
    assert figures["file"] >= 200 * MB  # the mapped file is resident but file-backed: not anonymous
    assert figures["rss"] >= figures["anon"] + 200 * MB
    assert sampler.peaks["anon"] >= 200 * MB and sampler.peaks["file"] >= 200 * MB
    assert figures["pss_anon"] <= figures["anon"]


FAKE_TRAINER = """
import time
print("loading", flush=True); time.sleep(0.6)
print("training dscnn: 2 epochs of 1,234 rows in 13 batches", flush=True)
for k in (1, 2):
    time.sleep(0.4)
    print(f"epoch {k}/2: 0.4 s, validation accuracy 0.5000, about 0.0 min left", flush=True)
time.sleep(0.3)
"""


def test_run_measured_times_the_first_epoch_and_each_epoch(tmp_path):
    """The timings come from training.train's own progress lines (here printed by a stand-in process)."""
    run = run_measured([sys.executable, "-c", FAKE_TRAINER], tmp_path / "log.txt", interval=0.1, echo=open(os.devnull, "w"))
    run["sampler"].stop()
    assert run["exit_code"] == 0 and run["epochs_done"] == 2 and run["planned_epochs"] == 2
    assert run["rows_per_epoch"] == 1234 and 0.5 < run["time_to_first_epoch_seconds"] < 3
    assert run["epoch_wall_seconds"] == [0.4, 0.4] and 0.2 < run["after_last_epoch_seconds"] < 2
    assert "epoch 2/2" in (tmp_path / "log.txt").read_text()
