"""Benchmarks, side by side with published figures: keyword-spotting accuracy and size of the three models,
the streaming wake-word benchmark (MLPerf Tiny's rules) through the device pipeline, and host speed.

    python -m host_tools.benchmark --data-dir DIR [--test-set DIR] [--negatives DIR ...] [--librispeech]
    make benchmark DATA_DIR=DIR NEGATIVES=DIR

1. Accuracy and size: `dscnn`, `mlperf_dscnn` and `tiny_conv` trained by `python -m training.train --preset
   kws12` on the same data with the same settings; float, int8 and TFLM accuracy of each, its size and an
   estimated Cortex-M4F latency (host_tools.footprint's cycle model).
2. Streaming wake word: a `wakeword` dscnn for one keyword (--keyword, default "yes"), a labelled stream
   (host_tools.stream) run once through host_tools.simulate (the firmware's C pipeline, TFLM's runtime),
   every inference's int8 output recorded; the threshold swept by replaying them through the firmware's C
   recognizer; each threshold scored by host_tools.scoring (MLPerf Tiny's rules): the DET curve.
3. Host speed: MFCC clips per second, the simulator as a multiple of real time, training seconds per epoch.

Runs are kept under OUT/runs/<preset>-<arch>[-<keyword>]-<hash of data, settings, seed and epochs>/ and
reused when their report.json exists, so a second benchmark trains nothing. Writes OUT/report.md,
OUT/report.json, OUT/det.png, OUT/stream.wav and OUT/stream.csv (play them to a board:
python host_tools/listen.py PORT --play OUT/stream.wav --reference OUT/stream.csv).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from host_tools import scoring
from host_tools.stream import build_stream

REPO_ROOT = Path(__file__).resolve().parent.parent
ARCHS = ("dscnn", "mlperf_dscnn", "tiny_conv")
# 40 epochs of all four models (about 22 s an epoch together on the 3,000 clips of the mini set, 2 cores)
# keep the whole benchmark within 30 minutes; `make train` uses 120.
DEFAULT_EPOCHS = 40
# The wake-word model hears every other word's training clip as a negative (unknown is capped by what
# there is): a stream is mostly not the keyword. With a share of 1.0 it accepted ten times as many.
WAKEWORD_TRAIN_ARGS = ("--unknown-share", "8.0", "--silence-share", "0.5")
THRESHOLDS = np.round(np.arange(0.05, 1.0, 0.025), 3)
TARGET_FA_PER_HOUR = {"openWakeWord": 0.5, "Picovoice": 0.1}

# Published figures, quoted as published (other data, other training): never measured here.
PUBLISHED = [
    {"model": "MLPerf Tiny KWS reference (DS-CNN, 64 ch)", "data": "Speech Commands v2, 12 classes",
     "accuracy": "~92% int8 (quality target 90%)", "size": "kws_ref_model.tflite 53.9 KB int8",
     "source": "Banbury et al., MLPerf Tiny Benchmark (NeurIPS 2021); github.com/mlcommons/tiny "
               "benchmark/training/keyword_spotting"},
    {"model": "Hello Edge DS-CNN S", "data": "Speech Commands v1, 12 classes",
     "accuracy": "94.4% float (8-bit: about the same)", "size": "38.6 K parameters, 5.4 M ops",
     "source": "Zhang et al., Hello Edge: Keyword Spotting on Microcontrollers, arXiv:1711.07128, Table 7"},
    {"model": "TFLM micro_speech tiny_conv", "data": "Speech Commands, yes/no + silence/unknown",
     "accuracy": "not comparable (4 classes)", "size": "18,712 B int8 .tflite (18.8 KB)",
     "source": "github.com/tensorflow/tflite-micro examples/micro_speech (micro_speech_quantized.tflite)"},
]


class BenchmarkError(Exception):
    """A problem with the inputs or a step, stated in the user's terms."""


# ---------------------------------------------------------------- training, cached


def train(out: Path, args, data_dir: Path, preset: str, arch: str, keyword: str | None = None) -> Path:
    """The run folder of `python -m training.train` with these settings: reused when it completed before."""
    extra = list(WAKEWORD_TRAIN_ARGS) if keyword else []
    settings = {"data_dir": str(data_dir.resolve()), "test_set": str(args.test_set.resolve()) if args.test_set else None,
                "preset": preset, "arch": arch, "keyword": keyword, "seed": args.seed, "epochs": args.epochs,
                "limit_per_label": args.limit_per_label, "extra": extra,
                # a change to the training code is a different run, not a cached one
                "code": hashlib.sha256(b"".join(p.read_bytes() for p in sorted((REPO_ROOT / "training").glob("*.py")))).hexdigest()}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    run = out / "runs" / f"{preset}-{arch}{'-' + keyword if keyword else ''}-{digest}"
    if (run / "report.json").is_file():  # train.py writes it last: the run completed
        print(f"  {run.name}: reused", flush=True)
        return run
    run.mkdir(parents=True, exist_ok=True)
    (run / "settings.json").write_text(json.dumps(settings, indent=2))
    command = [sys.executable, "-m", "training.train", "--data-dir", data_dir, "--preset", preset, "--arch", arch,
               "--epochs", args.epochs, "--seed", args.seed, "--out", run, *extra]
    command += ["--keywords", keyword, "--firmware-dir", run / "firmware"] if keyword else ["--no-export"]
    command += ["--test-set", args.test_set] if args.test_set else []
    command += ["--limit-per-label", args.limit_per_label] if args.limit_per_label else []
    print(f"  {run.name}: training ({args.epochs} epochs), log {run / 'train.log'}", flush=True)
    with open(run / "train.log", "w") as log:
        result = subprocess.run(list(map(str, command)), cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        tail = "".join((run / "train.log").read_text().splitlines(keepends=True)[-5:])
        raise BenchmarkError(f"training {run.name} failed (status {result.returncode}); {run / 'train.log'} ends:\n{tail}")
    return run


def accuracy_row(run: Path) -> dict:
    """A model's figures from its report.json, with the estimated Cortex-M4F latency."""
    from host_tools.footprint import CLOCK_HZ, CYCLES_PER_MAC

    def engines(result: dict | None) -> dict | None:
        return {e: r["accuracy"] for e, r in result["engines"].items()} if result else None

    report = json.loads((run / "report.json").read_text())
    model, macs = report["model"], report["model"]["multiply_accumulates"]
    return {"arch": report["arch"], "preset": report["preset"], "labels": report["labels"], "run": str(run),
            "test": engines(report["test"]), "test_n": report["test"]["n"],
            "test_set": engines(report["test_set"]), "test_set_n": report["test_set"]["n"] if report["test_set"] else None,
            "parameters": model["parameters"], "int8_weight_bytes": model["int8_weight_bytes"],
            "tflite_bytes": model["tflite_bytes"], "arena_bytes": report["arena_bytes"], "macs": macs,
            "latency_ms": {name: macs * cycles / CLOCK_HZ * 1e3 for name, cycles in zip(("low", "mid", "high"), CYCLES_PER_MAC)},
            "epochs": report["training"]["epochs"], "best_epoch": report["training"]["best_epoch"],
            "seconds_per_epoch": report["training"]["seconds_per_epoch"]}


# ---------------------------------------------------------------- the streaming wake-word benchmark


def replay(core, record: list, threshold: float | None = None) -> list[tuple[float, int]]:
    """Detections (s, label index) of the firmware's C recognizer fed the recorded (ms, int8 outputs) of every
    inference, with its exported settings and, if given, another detection threshold."""
    import ctypes

    from host_tools.firmware_core import Recognition

    config = core.recognizer_default_config()
    if threshold is not None:
        config.detection_threshold = threshold
    state, result = core.new("kws_recognizer"), Recognition()
    if core.recognizer_init(state, ctypes.byref(config)) != 0:
        raise BenchmarkError(f"the recognizer refused threshold {threshold}")
    detections = []
    for time_ms, scores in record:
        if core.recognizer_process(state, scores.tobytes(), time_ms, ctypes.byref(result)) != 0:
            raise BenchmarkError(f"the recognizer rejected the recorded inference at {time_ms} ms")
        if result.detected:
            detections.append((time_ms / 1000, result.label))
    return detections


def run_stream(run: Path, wav: Path, reference: Path, device_log: Path) -> dict:
    """The wake-word model over the stream through host_tools.simulate, then the threshold sweep. Runs in a
    process whose KWS_GENERATED_DIR is the run's export, so the core is built with that model's settings."""
    from host_tools import firmware_core, simulate
    from host_tools.protocol import Detection, parse_line

    args = simulate.parse_args([str(wav), "--gap", "0", "--model", str(run / "model_int8.tflite")])
    model, arena = simulate.load_model(args.model)
    record: list = []
    outputs = simulate.Outputs(device_log, False, None)
    started = time.perf_counter()
    figures = simulate.simulate(args, outputs, simulate.audio_paths(args.audio), model, arena, record)
    wall_s = time.perf_counter() - started
    outputs.close()
    labels = firmware_core.SETTINGS["KWS_LABELS"]
    device = [(r.time_ms / 1000, r.label) for r in map(parse_line, device_log.read_bytes().decode().split("\r\n")[:-1])
              if isinstance(r, Detection)]
    core = firmware_core.load_core()

    def named(detections: list[tuple[float, int]]) -> list[tuple[float, str]]:
        return [(t, labels[k]) for t, k in detections]

    keywords, seconds = scoring.read_reference(reference), figures["audio_s"]
    default = core.recognizer_default_config().detection_threshold
    sweep = []
    for threshold in sorted({*THRESHOLDS.tolist(), round(float(default), 3)}):
        result = scoring.score(named(replay(core, record, threshold)), keywords, seconds)
        frr, fa_per_hour = scoring.det_point(result, seconds)
        sweep.append({"threshold": threshold, **result.summary(), "frr": frr, "fa_per_hour": fa_per_hour})
    at_default = scoring.score(device, keywords, seconds)
    return {"labels": labels, "default_threshold": float(default), "inferences": len(record),
            "replay_equals_device": named(replay(core, record)) == device,
            "device": {**at_default.summary(), **scoring.mlperf_verdict(at_default),
                       "frr": scoring.det_point(at_default, seconds)[0],
                       "fa_per_hour": scoring.det_point(at_default, seconds)[1],
                       "false_alarm_times_s": [t for t, _ in at_default.false_alarms]},
            "sweep": sweep, "audio_s": seconds, "simulator_x_realtime": seconds / figures["run_s"],
            "simulator_x_realtime_with_reading": seconds / wall_s, "tflm_share": figures["invoke_s"] / figures["run_s"]}


def stream_in_process_of(run: Path, *stream_args) -> dict:
    """run_stream in a fresh process that builds the core against the run's exported settings."""
    previous = os.environ.get("KWS_GENERATED_DIR")
    os.environ["KWS_GENERATED_DIR"] = str(run / "firmware" / "src" / "generated")
    try:  # spawn: the child inherits this environment and imports host_tools.firmware_core afresh
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            return pool.submit(run_stream, run, *stream_args).result()
    finally:
        if previous is None:
            del os.environ["KWS_GENERATED_DIR"]
        else:
            os.environ["KWS_GENERATED_DIR"] = previous


# ---------------------------------------------------------------- host speed


def feature_speed(data_dir: Path, clips: int = 600) -> dict:
    """training.features.mfcc_parallel on real testing-split clips (every core), clips per second."""
    from host_tools.stream import split_testing_clips
    from training.config import FeatureConfig
    from training.data import read_clips, to_float
    from training.features import mfcc_parallel

    paths = sorted(p for paths in split_testing_clips(data_dir).values() for p in paths)[:clips]
    audio, _, _ = read_clips(paths, FeatureConfig())
    mfcc_parallel(to_float(audio[:64]))  # start the worker pool: its start-up is not a per-clip cost
    started, done = time.perf_counter(), 0
    while done == 0 or time.perf_counter() - started < 2.0:  # repeated: one pass of a small set takes 0.1 s
        mfcc_parallel(to_float(audio))
        done += len(audio)
    seconds = time.perf_counter() - started
    return {"clips": done, "seconds": seconds, "clips_per_second": done / seconds, "cores": os.cpu_count()}


# ---------------------------------------------------------------- report


def det_plot(sweep: list[dict], seconds: float, png: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([p["fa_per_hour"] for p in sweep], [100 * p["frr"] for p in sweep], "o-", ms=3)
    shown = set()
    for p in sweep:  # the lowest threshold of each distinct operating point
        if (p["fa_per_hour"], p["frr"]) not in shown:
            shown.add((p["fa_per_hour"], p["frr"]))
            ax.annotate(f"{p['threshold']:g}", (p["fa_per_hour"], 100 * p["frr"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.axvline(scoring.resolvable_rate_per_hour(seconds), color="grey", ls=":", label="one false accept in the stream")
    ax.set_xscale("symlog", linthresh=scoring.resolvable_rate_per_hour(seconds))  # 0/h stays on the axis
    ax.set_xlim(left=0)
    ax.set_xlabel("false accepts per hour")
    ax.set_ylabel("false-reject rate (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def percent(value) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def markdown(report: dict) -> str:
    lines = [f"# Benchmark report\n\n`{report['command']}`: {report['total_seconds'] / 60:.1f} min on {report['host']}.\n",
             f"Data: `{report['data_dir']}`; canonical test set: `{report['test_set'] or 'none'}`. Every model trained "
             f"by `python -m training.train` with seed {report['seed']} for {report['epochs']} epochs "
             "(`make train`: 120; the best-validation epoch is kept).\n",
             "## Accuracy and size (measured here)\n",
             "| model | test float / int8 / TFLM | canonical test set (TFLM) | parameters | int8 weights | .tflite | arena "
             "| MACs | est. Cortex-M4F 64 MHz | s/epoch |", "|---|---|---|---|---|---|---|---|---|---|"]
    for row in [*report["accuracy"], report["wakeword"]]:
        test = " / ".join(percent(row["test"][e]) for e in ("float", "int8", "tflm"))
        canonical = f"{percent(row['test_set']['tflm'])} (n={row['test_set_n']})" if row["test_set"] else "—"
        latency = row["latency_ms"]
        lines.append(f"| `{row['arch']}` ({row['preset']}) | {test} (n={row['test_n']}) | {canonical} | {row['parameters']:,} "
                     f"| {row['int8_weight_bytes']:,} B | {row['tflite_bytes']:,} B | {row['arena_bytes']:,} B | {row['macs']:,} "
                     f"| {latency['mid']:.0f} ms ({latency['low']:.0f}–{latency['high']:.0f}) | {row['seconds_per_epoch']:.1f} |")
    cycles = report["cycle_model"]
    lines += ["", f"Latency: an estimate, not a measurement: MACs × {cycles['mid']:g} cycles/MAC (range {cycles['low']:g}–"
              f"{cycles['high']:g}, CMSIS-NN int8 on Cortex-M4) at {cycles['clock_hz'] / 1e6:g} MHz "
              "(host_tools/footprint.py's cycle model).\n", "## Published figures (not measured here)\n",
              "| model | data | accuracy | size | source |", "|---|---|---|---|---|"]
    lines += [f"| {p['model']} | {p['data']} | {p['accuracy']} | {p['size']} | {p['source']} |" for p in PUBLISHED]
    s = report["stream"]
    device, resolvable = s["device"], scoring.resolvable_rate_per_hour(s["audio_s"])
    verdict = "it passes" if device["passes"] else (
        f"it fails, by {device['false_rejects_over']} false rejects and {device['false_accepts_over']} false accepts too many")
    lines += ["", "## Streaming wake word (MLPerf Tiny rules)\n",
              f"Model: `wakeword` preset, `dscnn`, keyword `{s['keyword']}` ({s['labels']}). Stream: {s['audio_s'] / 60:.1f} min, "
              f"{s['keywords']} keywords from the testing split ({s['keyword_clips']} distinct clips), "
              f"{s['negatives']} negatives ({', '.join(f'{k}: {v}' for k, v in s['negative_kinds'].items())}) at SNR "
              f"{', '.join(f'{x:g}' for x in s['snr_db'])} dB over background noise at {s['noise_dbfs']:g} dBFS "
              f"(`stream.wav`, `stream.csv`). {s['inferences']:,} inferences through the device pipeline "
              f"(host_tools/simulate.py); replaying them through the C recognizer gives the device's detections "
              f"exactly: {s['replay_equals_device']}."
              + (f" Unreadable negatives skipped: {len(s['skipped_files'])} (listed in report.json)." if s["skipped_files"] else "")
              + "\n",
              f"At the default threshold {s['default_threshold']:.2f}: {device['hits']} hits, {device['misses']} misses "
              f"(FRR {percent(device['frr'])}), {device['false_alarms']} false accepts ({device['fa_per_hour']:.1f}/h). "
              f"MLPerf Tiny's criterion (at most {scoring.MLPERF_MAX_FALSE_REJECTS} false rejects and "
              f"{scoring.MLPERF_MAX_FALSE_ACCEPTS} false accepts on its 20-minute, 50-keyword stream): on this stream "
              f"{verdict}.\n",
              f"Resolution: one false accept in this stream is {resolvable:.2f}/h; none means below about that "
              f"(95% upper bound {scoring.poisson_interval(0)[1] * resolvable:.1f}/h): 0/h here is not 0/h.\n"]
    for name, target in s["frr_at"].items():
        value = target["frr"]
        lines.append(f"* FRR at {target['fa_per_hour']:g} FA/h ({name}): "
                     + (f"{percent(value)} ({target['status']})" if value is not None else f"{target['status']}: {target['why']}"))
    lines += ["", "| threshold | hits | misses | false accepts | FRR | FA/h |", "|---|---|---|---|---|---|"]
    lines += [f"| {p['threshold']:.3f} | {p['hits']} | {p['misses']} | {p['false_alarms']} | {percent(p['frr'])} "
              f"| {p['fa_per_hour']:.1f} |" for p in s["sweep"]]
    speed = report["host_speed"]
    lines += ["", "DET curve: `det.png`.\n", "## Host speed\n",
              f"* features (training.features, librosa): {speed['features']['clips_per_second']:.0f} one-second clips/s "
              f"on {speed['features']['cores']} cores",
              f"* simulator (C pipeline + TFLM Python runtime): {s['simulator_x_realtime']:.0f}× real time "
              f"({s['simulator_x_realtime_with_reading']:.0f}× with reading the WAV; TFLM {100 * s['tflm_share']:.0f}% of it)",
              "* training: " + ", ".join(f"`{r['arch']}` ({r['preset']}) {r['seconds_per_epoch']:.1f} s/epoch"
                                         for r in [*report["accuracy"], report["wakeword"]])]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="Speech Commands in the official layout (default: $KWS_DATA_DIR, "
                   "else data/speech_commands_v0.02, downloaded when missing)")
    p.add_argument("--test-set", type=Path, help="also score every model on a canonical test set")
    p.add_argument("--negatives", type=Path, action="append", default=[], help="a folder of audio without the "
                   "keyword, mixed into the stream (repeatable)")
    p.add_argument("--librispeech", action="store_true", help="download LibriSpeech test-clean (347 MB) into "
                   "--cache-dir and add it to the negatives")
    p.add_argument("--skip-bad-audio", action="store_true", help="skip unreadable negatives and list them in the "
                   "report, instead of stopping")
    p.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "data", help="downloads (data/)")
    p.add_argument("--keyword", default="yes", help="the wake word of the stream benchmark (default yes)")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS, help="models of the accuracy table")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--limit-per-label", type=int, help="at most N keyword clips per label and split (quick runs)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stream-minutes", type=float, default=20.0, help="length of the stream (default 20, as MLPerf Tiny)")
    p.add_argument("--stream-keywords", type=int, default=50, help="keyword occurrences (default 50, as MLPerf Tiny)")
    p.add_argument("--snr-db", type=float, nargs="+", default=[20.0, 15.0, 10.0], help="SNRs, cycled (default 20 15 10)")
    p.add_argument("--noise-dbfs", type=float, default=-50.0, help="background noise level (default -50 dBFS RMS)")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "benchmark")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.stream_keywords < 1 or args.stream_minutes <= 0:
        p.error("--epochs, --stream-keywords and --stream-minutes must be positive")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from training.data import DataError, fetch, resolve_data_dir

    started = time.monotonic()
    command = "python -m host_tools.benchmark " + " ".join(sys.argv[1:] if argv is None else map(str, argv))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = resolve_data_dir(str(args.data_dir) if args.data_dir else None, cache_dir=args.cache_dir)
        negatives = [*args.negatives, *([fetch("librispeech-test-clean", args.cache_dir)] if args.librispeech else [])]
        print(f"stream: {args.stream_minutes:g} min, {args.stream_keywords} x {args.keyword!r}", flush=True)
        stream = build_stream(data_dir, args.keyword, negatives, args.stream_minutes * 60, args.stream_keywords,
                              tuple(args.snr_db), args.noise_dbfs, args.seed, args.skip_bad_audio)
        wav, reference = out / "stream.wav", out / "stream.csv"
        stream.write(wav, reference)
        print("models:", flush=True)
        runs = [train(out, args, data_dir, "kws12", arch) for arch in args.archs]
        wakeword_run = train(out, args, data_dir, "wakeword", "dscnn", args.keyword)
        print("streaming through the device pipeline", flush=True)
        streamed = stream_in_process_of(wakeword_run, wav, reference, out / "stream_device.txt")
        print("host speed", flush=True)
        features = feature_speed(data_dir)
    except (BenchmarkError, DataError) as error:
        print(f"benchmark: error: {error}", file=sys.stderr)
        return 2
    from host_tools.footprint import CLOCK_HZ, CYCLES_PER_MAC

    points = [(p["frr"], p["fa_per_hour"]) for p in streamed["sweep"]]
    kinds = {}  # negatives by source: other words, then each negatives folder
    for event in stream.events:
        if event.kind != "keyword":
            kind = "other words" if event.kind == "word" else event.label
            kinds[kind] = kinds.get(kind, 0) + 1
    report = {
        "command": command, "host": f"{os.cpu_count()} cores", "data_dir": str(data_dir),
        "test_set": str(args.test_set) if args.test_set else None, "seed": args.seed, "epochs": args.epochs,
        "accuracy": [accuracy_row(run) for run in runs], "wakeword": accuracy_row(wakeword_run),
        "cycle_model": {"clock_hz": CLOCK_HZ, **dict(zip(("low", "mid", "high"), CYCLES_PER_MAC))},
        "published": PUBLISHED,
        "stream": {**streamed, "keyword": args.keyword, "keywords": len(stream.keywords()),
                   "keyword_clips": len({e.source for e in stream.events if e.kind == "keyword"}),
                   "negatives": sum(kinds.values()), "negative_kinds": kinds, "skipped_files": stream.skipped,
                   "negative_seconds": stream.negative_seconds(), "snr_db": args.snr_db, "noise_dbfs": args.noise_dbfs,
                   "resolvable_fa_per_hour": scoring.resolvable_rate_per_hour(streamed["audio_s"]),
                   "frr_at": {name: {"fa_per_hour": target, **scoring.frr_at(points, target, streamed["audio_s"])}
                              for name, target in TARGET_FA_PER_HOUR.items()},
                   "wav": str(wav), "reference": str(reference)},
        "host_speed": {"features": features},
    }
    det_plot(streamed["sweep"], streamed["audio_s"], out / "det.png",
             f"{args.keyword!r}, dscnn: {streamed['audio_s'] / 60:.0f} min, {len(stream.keywords())} keywords")
    report["total_seconds"] = time.monotonic() - started
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'report.md'}, {out / 'report.json'}, {out / 'det.png'}, {wav}, {reference}")
    return 0 if streamed["replay_equals_device"] else 1


if __name__ == "__main__":
    sys.exit(main())
