"""Training at full scale: time and memory of `python -m training.train` on a full-size stand-in.

    python -m host_tools.scale_benchmark [--data-dir DIR] [--copies 30] [--out build/scale] [-- TRAIN ARGS]
    make scale-benchmark [SCALE_DATA=DIR] [SCALE_COPIES=30] [TRAIN_ARGS="--epochs 2"]

The stand-in links every clip of a Speech Commands folder (the mini set by default) under `copies`
new speaker ids (3,324 x 30 = 99,720 clips, about the size of v0.02), with the split lists rewritten
so each copy stays in its clip's split. It is the same audio repeated: it measures time and memory,
and accuracy on it means nothing. The run's output streams to the terminal and OUT/train.log;
figures go to OUT/report.json (memory timeline in OUT/memory.csv) and a Markdown section is printed.
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from host_tools.proc_memory import TreeSampler
from training.config import TrainConfig
from training.data import AUDIO_SUFFIXES, DataError, list_words, read_list
from training.run_folder import remove_abandoned

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKER = "STANDIN.json"
LISTS = ("validation_list.txt", "testing_list.txt")
# training.train's progress lines: "training dscnn: 38 epochs of 79,170 rows in 792 batches" just before the
# first epoch, then "epoch 3/38: 31.2 s, validation accuracy ..., about 18.3 min left" as each epoch ends.
START_LINE = re.compile(r"^training \S+: (\d+) epochs of ([\d,]+) rows")
EPOCH_LINE = re.compile(r"^epoch (\d+)/(\d+): ([\d.]+) s")
GB = 1e9


# ---------------------------------------------------------------- the stand-in


def copy_name(name: str, copy: int, width: int) -> str:
    """The file name of copy `copy` of a clip: a new speaker id, so the speaker rule still holds."""
    if "_nohash_" in name:
        speaker, rest = name.split("_nohash_", 1)
        return f"{speaker}r{copy:0{width}d}_nohash_{rest}"
    return f"r{copy:0{width}d}_{name}"  # not the Speech Commands naming: each copy is its own speaker


def source_fingerprint(source: Path) -> dict:
    """What the stand-in is built from: its clips per word and its split lists."""
    words = list_words(source)
    lists = {name: sorted(read_list(source / name)) for name in LISTS}
    noise = source / "_background_noise_"
    if not noise.is_dir():
        raise DataError(f"{noise} is missing: training cuts silence and noise from it")
    return {"words": {w: [p.name for p in files] for w, files in words.items()}, "lists": lists}


def _write_standin(tmp: Path, source: Path, fingerprint: dict, copies: int) -> dict:
    width = len(str(copies - 1))
    counts = {}
    for word, names in fingerprint["words"].items():
        folder = tmp / word
        folder.mkdir(parents=True)
        for name in names:
            target = (source / word / name).resolve()
            for copy in range(copies):
                os.symlink(target, folder / copy_name(name, copy, width))
        counts[word] = len(names) * copies
    for list_name, entries in fingerprint["lists"].items():
        lines = [f"{rel.rsplit('/', 1)[0]}/{copy_name(rel.rsplit('/', 1)[-1], c, width)}" for rel in entries for c in range(copies)]
        (tmp / list_name).write_text("".join(line + "\n" for line in lines))
    os.symlink((source / "_background_noise_").resolve(), tmp / "_background_noise_")
    return counts


def build_standin(source: Path, dest: Path, copies: int = 30, out=None) -> dict:
    """The stand-in folder at `dest` (built, or reused when complete and made from the same source); its marker."""
    out = out or sys.stderr
    if copies < 1:
        raise ValueError(f"--copies must be at least 1, not {copies}")
    source, dest = Path(source).resolve(), Path(dest)
    fingerprint = source_fingerprint(source)
    wanted = {"source": str(source), "copies": copies, "source_fingerprint": _digest(fingerprint)}
    marker = standin_marker(dest)
    if marker is not None and {k: marker.get(k) for k in wanted} == wanted and _complete(dest, marker):
        return marker
    if dest.exists():
        out.write(f"stand-in {dest} is incomplete or from other data: rebuilding it\n")
        shutil.rmtree(dest)
    remove_abandoned(dest.parent, [f"{glob.escape(dest.name)}.tmp-*"])  # left by a build that was killed
    tmp = dest.parent / f"{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started = time.monotonic()
    counts = _write_standin(tmp, source, fingerprint, copies)
    marker = {
        **wanted,
        "what": "a full-size STAND-IN, not a dataset: the same clips repeated under new speaker ids",
        "clips": sum(counts.values()),
        "clips_per_word": counts,
        "listed": {name: len(entries) * copies for name, entries in fingerprint["lists"].items()},
    }
    (tmp / "README.md").write_text(
        f"# Full-size stand-in (not a dataset)\n\nEvery clip of `{source}` linked {copies} times under new speaker ids "
        f"({marker['clips']:,} clips), split lists rewritten so each copy stays in its clip's split.\n"
        "The same audio repeated: use it to measure training time and memory; accuracy on it means nothing.\n"
        "Made by `python -m host_tools.scale_benchmark`.\n")
    (tmp / MARKER).write_text(json.dumps(marker, indent=2))  # written last: its presence means complete
    tmp.rename(dest)
    out.write(f"stand-in {dest}: {marker['clips']:,} clips linked in {time.monotonic() - started:.1f} s\n")
    return marker


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def standin_marker(dest: Path) -> dict | None:
    try:
        return json.loads((Path(dest) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _complete(dest: Path, marker: dict) -> bool:
    """Every word folder holds as many clips as the marker says (a cheap check against tampering)."""
    for word, count in marker.get("clips_per_word", {}).items():
        folder = dest / word
        if not folder.is_dir() or sum(1 for e in os.scandir(folder) if e.name.lower().endswith(AUDIO_SUFFIXES)) != count:
            return False
    return all((dest / name).is_file() for name in LISTS) and (dest / "_background_noise_").is_dir()


# ---------------------------------------------------------------- the measured run


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    total = re.search(r"MemTotal:\s+(\d+) kB", meminfo)
    model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text()) if Path("/proc/cpuinfo").exists() else None
    return {
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "ram_bytes": int(total.group(1)) * 1024 if total else None,
        "cpu": model.group(1).strip() if model else platform.processor(),
        "load_average_at_start": list(os.getloadavg()),
        "python": platform.python_version(),
    }


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under `path` (links not followed)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def option_value(args: list[str], option: str) -> str | None:
    """The last value of `--option V` or `--option=V` in an argument list (argparse's rule: the last wins)."""
    value = None
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
    return value


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(command: list[str], log: Path, interval: float = 0.5, echo=None) -> dict:
    """Run `command`, streaming its output to `log` and `echo`; time its epochs and sample its tree's memory."""
    echo = echo or sys.stdout
    cpu_before = _children_cpu()
    started = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # lines arrive when printed, so their times are right
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    sampler = TreeSampler(proc.pid, interval).start()
    first_epoch, planned, epoch_seconds, last_epoch, interrupted = None, None, [], None, False
    try:
        with open(log, "wb") as f:
            for raw in proc.stdout:
                now = time.monotonic() - started
                f.write(raw)
                f.flush()
                echo.write(raw.decode(errors="replace"))
                echo.flush()
                line = raw.decode(errors="replace")
                if match := START_LINE.match(line):
                    first_epoch, planned = now, (int(match.group(1)), int(match.group(2).replace(",", "")))
                elif match := EPOCH_LINE.match(line):
                    epoch_seconds.append(float(match.group(3)))
                    last_epoch = now
        proc.wait()
    except KeyboardInterrupt:
        interrupted = True
        proc.terminate()
        proc.wait()
    finally:
        sampler.stop()
    total = time.monotonic() - started
    return {
        "exit_code": proc.returncode, "interrupted": interrupted, "total_seconds": total,
        "time_to_first_epoch_seconds": first_epoch, "planned_epochs": planned[0] if planned else None,
        "rows_per_epoch": planned[1] if planned else None,
        "epochs_done": len(epoch_seconds), "epoch_wall_seconds": epoch_seconds,
        "after_last_epoch_seconds": total - last_epoch if last_epoch else None,
        "sampler": sampler,
        # CPU of the run and the descendants it waited for: CPU / wall shows how much of the machine it got
        "cpu_seconds": _children_cpu() - cpu_before,
        "max_rss_largest_process_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def _median(values: list[float]) -> float | None:
    if not values:
        return None
    ordered, middle = sorted(values), len(values) // 2
    return ordered[middle] if len(values) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summarize(run: dict, train_args: list[str]) -> dict:
    """The report's figures, including the total extrapolated to the recipe's default epochs."""
    sampler = run.pop("sampler")
    walls = run["epoch_wall_seconds"]
    per_epoch = _median(walls[1:] if len(walls) > 1 else walls)  # the first epoch also traces the graph
    figures = {**run, "seconds_per_epoch": per_epoch, "memory_samples": len(sampler.timeline),
               "memory_sample_interval_seconds": sampler.interval, "peak_processes": sampler.peak_processes,
               "peak_anon_at_seconds": sampler.peak_anon_at, **{f"peak_{k}_bytes": v for k, v in sampler.peaks.items()}}
    epochs = run["epochs_done"]
    figures["epochs"] = epochs
    default = TrainConfig().epochs_for(run["rows_per_epoch"]) if run["rows_per_epoch"] else None
    if (per_epoch and default and run["time_to_first_epoch_seconds"] is not None
            and run["after_last_epoch_seconds"] is not None and epochs != default):
        figures["estimated_total_seconds_at_default_epochs"] = (
            run["time_to_first_epoch_seconds"] + default * per_epoch + run["after_last_epoch_seconds"])
    figures["default_epochs"] = default
    return figures


def _gb(value) -> str:
    return f"{value / GB:.2f} GB" if value is not None else "n/a"


def _seconds(value) -> str:
    return f"{value:,.0f} s ({value / 60:.1f} min)" if value is not None else "n/a"


def markdown(report: dict) -> str:
    """A short README section with the run's figures."""
    f, m, s = report["figures"], report["machine"], report["standin"]
    warm = "warm (cache present at start)" if report["cache_bytes_before"] else "cold (empty cache)"
    per_epoch = f["seconds_per_epoch"]
    rows = [
        ("time to first epoch", f"{_seconds(f['time_to_first_epoch_seconds'])}, cache {warm}"),
        ("seconds per epoch", f"{per_epoch:,.1f} (median of epochs 2 on, all: "
                              f"{', '.join(f'{x:.1f}' for x in f['epoch_wall_seconds'])})" if per_epoch else "n/a"),
        (f"total ({f['epochs']} epochs)", f"{_seconds(f['total_seconds'])}, {f['cpu_seconds']:,.0f} CPU-s "
                                          f"({f['cpu_seconds'] / f['total_seconds']:.2f} cores busy on average)"),
    ]
    if "estimated_total_seconds_at_default_epochs" in f:
        rows.append((f"total at the default {f['default_epochs']} epochs (estimate)",
                     _seconds(f["estimated_total_seconds_at_default_epochs"])))
    rows += [
        ("peak anonymous memory, process tree (PSS: pages shared by forks counted once)", _gb(f["peak_pss_anon_bytes"])),
        ("peak anonymous memory, process tree (sum of RssAnon: shared pages once per process)", _gb(f["peak_anon_bytes"])),
        ("peak anonymous + shared memory (RssAnon + RssShmem)", _gb(f["peak_anon_shmem_bytes"])),
        ("peak resident memory (VmRSS), process tree", _gb(f["peak_rss_bytes"])),
        ("largest single process' max RSS (kernel)", _gb(f["max_rss_largest_process_bytes"])),
        ("cache size (--cache-dir) after the run", _gb(report["cache_bytes_after"])),
    ]
    lines = [
        "### Training at full scale (`make scale-benchmark`)",
        "",
        f"`{report['command_line']}` on a stand-in of {s['clips']:,} clips ({s['copies']} copies of each clip of "
        f"`{s['source']}` under new speaker ids: the same audio repeated, so accuracy on it means nothing), "
        f"{m['cores']} cores, {m['ram_bytes'] / GB:.0f} GB RAM, load average {m['load_average_at_start'][0]:.1f} at the start.",
        "",
        "| figure | measured |",
        "|---|---|",
        *[f"| {name} | {value} |" for name, value in rows],
        "",
        f"Exit code {f['exit_code']}. Memory sampled every {f['memory_sample_interval_seconds']} s over the whole "
        "process tree (/proc/PID/status); anonymous memory is what must fit in RAM, memory-mapped files are not.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    train_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("KWS_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    p.add_argument("--data-dir", type=Path, default=shared / "speech_commands_v0.02_mini",
                   help="Speech Commands folder to repeat (default: the mini set in $KWS_SHARED_DATA or ../shared/data)")
    p.add_argument("--copies", type=int, default=30, help="copies of each clip (30: 99,720 clips from the mini set)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "scale", help="stand-in, cache, run, log and report")
    p.add_argument("--cold", action="store_true", help="empty the cache directory first (time to first epoch from scratch)")
    p.add_argument("--standin-only", action="store_true", help="build the stand-in and stop")
    p.add_argument("--interval", type=float, default=0.5, help="memory sampling interval, seconds")
    args = p.parse_args(own)
    if args.copies < 1:
        p.error("--copies must be at least 1")
    if args.interval <= 0:
        p.error("--interval must be positive")
    return args, train_args


def train_command(standin: Path, out: Path, train_args: list[str]) -> list[str]:
    """The shipped recipe (kws12, default epochs) on the stand-in, never exporting into the firmware."""
    defaults = ["--data-dir", str(standin), "--cache-dir", str(out / "cache"), "--out", str(out / "run"), "--no-export"]
    if option_value(train_args, "--preset") is None:
        defaults += ["--preset", "kws12"]
    return [sys.executable, "-m", "training.train", *defaults, *train_args]


def main(argv: list[str] | None = None) -> int:
    args, train_args = parse_args(argv)
    try:
        standin = args.out / f"standin-{args.data_dir.resolve().name}-x{args.copies}"
        marker = build_standin(args.data_dir, standin, args.copies)
    except (DataError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.standin_only:
        print(f"stand-in: {standin} ({marker['clips']:,} clips)")
        return 0
    command = train_command(standin, args.out, train_args)
    cache_dir = Path(option_value(command, "--cache-dir"))
    if args.cold:
        shutil.rmtree(cache_dir, ignore_errors=True)
    before = dir_bytes(cache_dir)
    report = {"command": command, "command_line": shlex.join(["python", *command[1:]]), "machine": machine(),
              "standin": {"path": str(standin), **{k: marker[k] for k in ("source", "copies", "clips", "listed")}},
              "cache_dir": str(cache_dir), "cache_bytes_before": before}
    run = run_measured(command, args.out / "train.log", args.interval)
    sampler = run["sampler"]
    sampler.write_csv(args.out / "memory.csv")
    report["figures"] = summarize(run, command)
    report["cache_bytes_after"] = dir_bytes(cache_dir)
    report["machine"]["load_average_at_end"] = list(os.getloadavg())
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    section = markdown(report)
    (args.out / "report.md").write_text(section)
    print("\n" + section + f"\nreport: {args.out / 'report.json'}, log: {args.out / 'train.log'}")
    return 0 if report["figures"]["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
