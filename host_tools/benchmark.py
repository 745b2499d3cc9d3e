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
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np


from host_tools import scoring
from host_tools.benchmark_report import det_plot, markdown
from host_tools.stream import build_stream
from training.artifact import Artifact

REPO_ROOT = Path(__file__).resolve().parent.parent
ARCHS = ("dscnn", "mlperf_dscnn", "tiny_conv")
# 40 epochs of all four models (about 22 s an epoch together on the 3,000 clips of the mini set, 2 cores)
# keep the whole benchmark within 30 minutes; `make train` uses 120.
DEFAULT_EPOCHS = 40
# The wake-word model hears every other word's training clip as a negative (unknown is capped by what
# there is): a stream is mostly not the keyword. With a share of 1.0 it accepted ten times as many.
WAKEWORD_TRAIN_ARGS = ("--unknown-share", "8.0", "--silence-share", "0.5")


def wakeword_args(args, negatives: list[Path]) -> list:
    """training.train's options for the wake word: its keyword, the negatives folders (mining and calibration
    use their training and validation shares; the streams below, their test share) and the calibration."""
    return [*WAKEWORD_TRAIN_ARGS, "--keywords", args.keyword, *(a for n in negatives for a in ("--negatives", n)),
            "--target-fa-per-hour", args.target_fa_per_hour, "--validation-minutes", args.validation_minutes,
            *(["--skip-bad-audio"] if args.skip_bad_audio else [])]
NEGATIVE_GAP_S = 0.5  # silence between the files of the negatives-only stream
TARGET_FA_PER_HOUR = {"openWakeWord": 0.5, "Picovoice": 0.1}
NEGATIVES_TARGET_FA_PER_HOUR = 3.0  # what the shipped wake word must keep to over every test negative (issue 11)

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


@dataclass(frozen=True)
class Settings:
    """What every model of a benchmark is trained with and on."""

    data_dir: Path
    test_set: Path | None
    seed: int
    limit_per_label: int | None
    out: Path


STOP_WAIT_S = 60.0  # for an interrupted training to stop and clean up


def run_bound(command: list[str], log) -> int:
    """Run `command` (output to `log`) and return its status; it ends with us: when we stop by Ctrl-C, an error
    or a SIGTERM (as `kill` and CI cancellations send), it is interrupted as by Ctrl-C (a training then removes
    its scratch folder), and killed if it has not stopped within STOP_WAIT_S; never left training on alone."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda number, _: sys.exit(128 + number)) if in_main_thread else None
    try:
        # In its own session a terminal's Ctrl-C reaches it once, from us; it takes SIGINT as Ctrl-C even where
        # we were started with it ignored (`cmd &` in a script).
        with subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) as child:
            try:
                return child.wait()
            except BaseException as stop:
                child.send_signal(signal.SIGINT)
                try:
                    child.wait(timeout=STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                why = "interrupted" if isinstance(stop, (KeyboardInterrupt, SystemExit)) else f"error ({stop!r})"
                print(f"{why}: stopped the training it ran (its log: {getattr(log, 'name', log)})", file=sys.stderr)
                raise
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def train(settings: Settings, preset: str, arch: str, epochs: int | None, extra: list[str] = (), name: str = "") -> Path:
    """The run folder of `python -m training.train` with these settings (`epochs` None: the recipe's own),
    reused when it completed before (training.train moves a run folder into place only when complete)."""
    extra = list(map(str, extra))
    key = {"data_dir": str(settings.data_dir.resolve()), "preset": preset, "arch": arch,
           "test_set": str(settings.test_set.resolve()) if settings.test_set else None, "seed": settings.seed,
           "epochs": epochs, "limit_per_label": settings.limit_per_label, "extra": extra,
           # a change to the training code is a different run, not a cached one
           "code": hashlib.sha256(b"".join(p.read_bytes() for p in sorted((REPO_ROOT / "training").glob("*.py")))).hexdigest(),
           # and a run started from another run's weights is another run when those weights change
           **{"init_from": hashlib.sha256((Path(extra[i + 1]) / "model_float.keras").read_bytes()).hexdigest()
              for i, option in enumerate(extra) if option == "--init-from"}}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    run = settings.out / "runs" / f"{preset}-{arch}{'-' + name if name else ''}-{digest}"
    log_path = run.with_name(run.name + ".log")
    if (run / "report.json").is_file():
        print(f"  {run.name}: reused", flush=True)
        return run
    command = [sys.executable, "-m", "training.train", "--data-dir", settings.data_dir, "--preset", preset, "--arch", arch,
               "--seed", settings.seed, "--out", run, "--overwrite", "--no-export", *extra]
    command += ["--epochs", epochs] if epochs else []
    command += ["--test-set", settings.test_set] if settings.test_set else []
    command += ["--limit-per-label", settings.limit_per_label] if settings.limit_per_label else []
    print(f"  {run.name}: training ({epochs or 'the recipe'} epochs), log {log_path}", flush=True)
    run.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log:
        status = run_bound(list(map(str, command)), log)
    if status != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-5:])
        raise BenchmarkError(f"training {run.name} failed (status {status}); {log_path} ends:\n{tail}")
    return run


def accuracy_row(run: Path) -> dict:
    """A model's figures from its report.json, with the estimated Cortex-M4F latency."""
    from host_tools.footprint import CLOCK_HZ, CYCLES_PER_MAC

    def engines(result: dict | None) -> dict | None:
        return {e: r["accuracy"] for e, r in result["engines"].items()} if result else None

    report = json.loads((run / "report.json").read_text())
    model, macs = report["model"], report["model"]["multiply_accumulates"]
    return {"arch": report["arch"], "preset": report["preset"], "labels": report["manifest"]["labels"], "run": str(run),
            "test": engines(report["test"]), "test_n": report["test"]["n"],
            "test_set": engines(report["test_set"]), "test_set_n": report["test_set"]["n"] if report["test_set"] else None,
            "parameters": model["parameters"], "int8_weight_bytes": model["int8_weight_bytes"],
            "tflite_bytes": model["tflite_bytes"], "arena_bytes": report["manifest"]["arena_bytes"], "macs": macs,
            "latency_ms": {name: macs * cycles / CLOCK_HZ * 1e3 for name, cycles in zip(("low", "mid", "high"), CYCLES_PER_MAC)},
            "epochs": report["training"]["epochs"], "best_epoch": report["training"]["best_epoch"],
            "seconds_per_epoch": report["training"]["seconds_per_epoch"]}


# ---------------------------------------------------------------- the streaming wake-word benchmark


def run_stream(artifact: Artifact, wav: Path, reference: Path, device_log: Path) -> dict:
    """The wake-word model over the stream through the device simulator (host_tools/simulate.py, the core built
    for this artifact), then the threshold sweep: the recorded outputs replayed through the C recognizer."""
    from host_tools.core import load_core, replay
    from host_tools.operating_point import THRESHOLDS, record_stream, sweep

    started = time.perf_counter()
    record, figures, device = record_stream(artifact, [wav], device_log)
    wall_s = time.perf_counter() - started
    core, labels, detection = load_core(artifact), artifact.manifest.labels, artifact.manifest.detection
    keywords, seconds = scoring.read_reference(reference), figures["audio_s"]
    thresholds = sorted({*THRESHOLDS, round(detection.detection_threshold, 3)})
    points = sweep(core, record, keywords, seconds, [replace(detection, detection_threshold=t) for t in thresholds])
    at_default = scoring.score(device, keywords, seconds)
    return {"labels": list(labels), "detection": asdict(detection), "default_threshold": detection.detection_threshold,
            "inferences": len(record),
            "replay_equals_device": [(t, labels[k]) for t, k in replay(core, record, detection)] == device,
            "device": {**at_default.summary(), **scoring.mlperf_verdict(at_default),
                       "frr": scoring.det_point(at_default, seconds)[0],
                       "fa_per_hour": scoring.det_point(at_default, seconds)[1],
                       "false_alarm_times_s": [t for t, _ in at_default.false_alarms]},
            "sweep": points, "audio_s": seconds, "simulator_x_realtime": seconds / figures["run_s"],
            "simulator_x_realtime_with_reading": seconds / wall_s, "tflm_share": figures["invoke_s"] / figures["run_s"]}


def negative_files(data_dir: Path, artifact: Artifact, negatives: list[Path]) -> list[Path]:
    """The negatives-only stream: every testing-share file of the negatives folders (training.data.negatives_split:
    the other shares train and calibrate), then every testing-split clip of the words that are not keywords."""
    from host_tools.stream import split_clips
    from training.data import split_negatives

    words = split_clips(data_dir, "testing")
    return [*(p for folder in negatives for p in split_negatives(folder, "testing")),
            *(p for word, paths in sorted(words.items()) if word not in artifact.manifest.keywords for p in paths)]


def run_negatives(artifact: Artifact, files: list[Path], device_log: Path, skip_bad_audio: bool = False) -> dict:
    """Every negative file given, one after another (0.5 s of silence between), through the device pipeline:
    every detection is a false accept (debounced by MLPerf Tiny's 1 s rule), over all of that audio."""
    from host_tools.operating_point import record_stream

    _, figures, device = record_stream(artifact, files, device_log, NEGATIVE_GAP_S, skip_bad_audio)
    seconds = figures["audio_s"]
    result = scoring.score(device, [], seconds)
    rate, low, high = scoring.rate_per_hour(len(result.false_alarms), seconds)
    return {"files": len(files), "audio_s": seconds, "false_accepts": len(result.false_alarms),
            "detections": len(device), "fa_per_hour": rate, "fa_per_hour_95": [low, high],
            "resolvable_fa_per_hour": scoring.resolvable_rate_per_hour(seconds),
            "false_accept_times_s": [t for t, _ in result.false_alarms],
            "skipped_files": figures["skipped_files"]}


# ---------------------------------------------------------------- host speed


def feature_speed(data_dir: Path, clips: int = 600) -> dict:
    """One-second clips per second, on one core, of training.features.mfcc (the definition: clean features,
    cached) and mfcc_fast (training's augmented batches), on real testing-split clips."""
    from host_tools.stream import split_clips
    from training.config import FeatureConfig
    from training.data import fit_length, read_audio, to_float, to_int16
    from training.features import feature_tables, mfcc, mfcc_fast

    cfg = FeatureConfig()
    paths = sorted(p for paths in split_clips(data_dir, "testing").values() for p in paths)[:clips]
    audio = to_float(np.stack([to_int16(fit_length(read_audio(p, cfg.sample_rate), cfg.clip_samples)) for p in paths]))
    tables = feature_tables(cfg)
    figures = {}
    for name, compute in (("mfcc", lambda: mfcc(audio, cfg)), ("mfcc_fast", lambda: mfcc_fast(audio, cfg, tables))):
        started, done = time.perf_counter(), 0
        while done == 0 or time.perf_counter() - started < 2.0:  # repeated: one pass of a small set is short
            compute()
            done += len(audio)
        figures[name] = done / (time.perf_counter() - started)
    return {"clips": len(audio), "clips_per_second": figures["mfcc"], "fast_clips_per_second": figures["mfcc_fast"]}


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
    p.add_argument("--stop-on-bad-audio", dest="skip_bad_audio", action="store_false", help="stop at an unreadable "
                   "negative, naming it (by default it is skipped, and every skipped file is listed in the report)")
    p.add_argument("--cache-dir", type=Path, default=REPO_ROOT / "data", help="downloads (data/)")
    p.add_argument("--keyword", default="yes", help="the wake word of the stream benchmark (default yes)")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS, help="models of the accuracy table")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"training epochs of the kws12 models "
                   f"(default {DEFAULT_EPOCHS})")
    p.add_argument("--wakeword-epochs", type=int, help="training epochs of the wake word (default: the recipe's)")
    p.add_argument("--target-fa-per-hour", type=float, default=1.0, help="the wake word's calibration target (1/h)")
    p.add_argument("--validation-minutes", type=float, default=30.0, help="the wake word's validation stream (30)")
    p.add_argument("--export", action="store_true", help="export the wake word into firmware/ (what make flash flashes)")
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


def negative_kinds(stream) -> dict[str, int]:
    """Negatives of the stream by source: other words, then each negatives folder."""
    kinds: dict[str, int] = {}
    for event in stream.events:
        if event.kind != "keyword":
            kind = "other words" if event.kind == "word" else event.label
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def stream_report(args, stream, streamed: dict, wav: Path, reference: Path) -> dict:
    points = [(p["frr"], p["fa_per_hour"]) for p in streamed["sweep"]]
    kinds = negative_kinds(stream)
    return {**streamed, "keyword": args.keyword, "keywords": len(stream.keywords()),
            "keyword_clips": len({e.source for e in stream.events if e.kind == "keyword"}),
            "negatives": sum(kinds.values()), "negative_kinds": kinds, "skipped_files": stream.skipped,
            "negative_seconds": stream.negative_seconds(), "snr_db": args.snr_db, "noise_dbfs": args.noise_dbfs,
            "resolvable_fa_per_hour": scoring.resolvable_rate_per_hour(streamed["audio_s"]),
            "frr_at": {name: {"fa_per_hour": target, **scoring.frr_at(points, target, streamed["audio_s"])}
                       for name, target in TARGET_FA_PER_HOUR.items()},
            "wav": str(wav), "reference": str(reference)}


def run(args, command: str) -> dict:
    """Every step of the benchmark; returns the report."""
    from host_tools.footprint import CLOCK_HZ, CYCLES_PER_MAC
    from training.artifact import load_artifact
    from training.download import fetch, resolve_data_dir

    out = args.out
    data_dir = resolve_data_dir(str(args.data_dir) if args.data_dir else None, cache_dir=args.cache_dir)
    settings = Settings(data_dir, args.test_set, args.seed, args.limit_per_label, out)
    negatives = [*args.negatives, *([fetch("librispeech-test-clean", args.cache_dir)] if args.librispeech else [])]
    print(f"stream: {args.stream_minutes:g} min, {args.stream_keywords} x {args.keyword!r}", flush=True)
    stream = build_stream(data_dir, args.keyword, negatives, args.stream_minutes * 60, args.stream_keywords,
                          tuple(args.snr_db), args.noise_dbfs, args.seed, args.skip_bad_audio)
    wav, reference = out / "stream.wav", out / "stream.csv"
    stream.write(wav, reference)
    print("models:", flush=True)
    runs = [train(settings, "kws12", arch, args.epochs) for arch in args.archs]
    wakeword_run = train(settings, "wakeword", "dscnn", args.wakeword_epochs, wakeword_args(args, negatives), args.keyword)
    print("streaming through the device pipeline", flush=True)
    artifact = load_artifact(wakeword_run)
    streamed = run_stream(artifact, wav, reference, out / "stream_device.txt")
    print("negatives-only stream through the device pipeline", flush=True)
    negatives_only = run_negatives(artifact, negative_files(data_dir, artifact, negatives), out / "negatives_device.txt",
                                   args.skip_bad_audio)
    print("host speed", flush=True)
    return {
        "command": command, "host": f"{os.cpu_count()} cores", "data_dir": str(data_dir),
        "test_set": str(args.test_set) if args.test_set else None, "seed": args.seed, "epochs": args.epochs,
        "accuracy": [accuracy_row(run) for run in runs], "wakeword": accuracy_row(wakeword_run),
        "cycle_model": {"clock_hz": CLOCK_HZ, **dict(zip(("low", "mid", "high"), CYCLES_PER_MAC))},
        "published": PUBLISHED, "stream": stream_report(args, stream, streamed, wav, reference),
        "calibration": json.loads((wakeword_run / "report.json").read_text())["calibration"],
        "negatives_only": negatives_only, "negatives_target_fa_per_hour": NEGATIVES_TARGET_FA_PER_HOUR,
        "host_speed": {"features": feature_speed(data_dir)},
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    from training.artifact import ArtifactError
    from training.data import DataError

    started = time.monotonic()
    command = "python -m host_tools.benchmark " + " ".join(sys.argv[1:] if argv is None else map(str, argv))
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        report = run(args, command)
    except (BenchmarkError, DataError, ArtifactError) as error:
        print(f"benchmark: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("benchmark: interrupted; the runs that completed stay cached", file=sys.stderr)
        return 130
    stream = report["stream"]
    det_plot(stream["sweep"], stream["audio_s"], args.out / "det.png",
             f"{args.keyword!r}, dscnn: {stream['audio_s'] / 60:.0f} min, {stream['keywords']} keywords")
    report["total_seconds"] = time.monotonic() - started
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    (args.out / "report.md").write_text(markdown(report))
    if args.export:  # the wake word measured here becomes the firmware's (make flash)
        from training.train import export_run

        for path in export_run(Path(report["wakeword"]["run"]), REPO_ROOT / "firmware", command):
            print(f"exported {path}")
    print(markdown(report))
    print(f"wrote {args.out / 'report.md'}, {args.out / 'report.json'}, {args.out / 'det.png'}, {stream['wav']}, "
          f"{stream['reference']}")
    return 0 if stream["replay_equals_device"] else 1


if __name__ == "__main__":
    sys.exit(main())
