"""What each change to the wake word buys, measured on the same keyword, data and test audio (the README's table).

    python -m host_tools.ablation --data-dir DIR --negatives DIR [--seeds 1 2] [--variants NAME ...]
                                  [--synthetic-positives N [--near-misses N]] [--skip-bad-audio]
    make ablation DATA_DIR=DIR NEGATIVES=DIR [TEST_SET=DIR] [ABLATION_ARGS="--synthetic-positives 1000"]

Variants, each host_tools.benchmark's wake-word recipe with one thing taken away (runs cached with the
benchmark's, under OUT/runs/: with the same options, the recipe at seed 1 is the benchmark's own run):

    clip windows       --clip-training: whole clips as the kws12 preset trains (the word centred, +-100 ms)
    stream windows     --mining-rounds 0: windows as a stream shows them; the hard-negative slots hold random
                       windows of the same negatives instead of mined ones
    + hard negatives   the recipe: stream windows and hard negatives mined as training goes

and, with --synthetic-positives N (text-to-speech clips of the keyword: training/synthesize.py), the recipe with

    synthetic only     N synthetic clips of the keyword and no recording of it (--no-real-positives)
    synthetic only, other words      and N synthetic clips of other words as unknown (--synthetic-others N)
    synthetic only, dry              without the room and microphone (--dry-synthetic)
    + synthetic        the recordings and N synthetic clips

and, with --base RUN as well (a run of the same architecture trained on other words, without the keyword:
training.train's --init-from), each of "synthetic only", "synthetic only, other words" and "+ synthetic" started
from its weights ("..., from a base") and with its features kept but for the last block ("..., frozen base").

Test audio is always real recordings. Besides each calibrated point, the DET table gives every variant's
fewest misses at each number of false accepts in the test stream (a threshold sweep at its calibrated
window, count and suppression): the comparison at the same false-accept rate.

Each is scored at its calibrated operating point, and the clip model and the recipe also at the recognizer
the firmware had before calibration (training/config.py DetectionConfig's defaults, which the kws12 preset
still exports): the gain of calibrating. Every figure comes from the device pipeline (host_tools.simulate, the firmware's C
code and TFLM) over the benchmark's test stream (MLPerf Tiny's rules) and its negatives-only stream.
Writes OUT/ablation.json and OUT/ablation.md, which also list the recordings each variant missed at its calibrated
point and within MLPerf Tiny's false-accept limit (a wake word that fails one speaker fails every clip of theirs).

--stream-split validation builds the stream from the validation split instead (its recordings of the keyword and
its negatives): a second opinion on the synthetic variants from other speakers, none of whom they heard. The
recordings variants calibrate on those clips, which favours them. The negatives-only stream stays the test split's
(every model calibrates on the validation split's negatives). Same OUT: the same runs, rescored, written to
OUT/ablation-validation.{json,md} beside the test stream's.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from host_tools import benchmark, scoring
from training.config import DetectionConfig

VARIANTS = {"clip windows": ["--clip-training"], "stream windows": ["--mining-rounds", "0"], "+ hard negatives": []}
SYNTHETIC_VARIANTS = {"synthetic only": ["--no-real-positives"],
                      "synthetic only, other words": ["--no-real-positives", "--synthetic-others", None],
                      "synthetic only, dry": ["--no-real-positives", "--dry-synthetic"], "+ synthetic": []}
BASE_VARIANTS = {", from a base": [], ", frozen base": ["--freeze-loaded"]}  # after each of BASE_STARTS
BASE_STARTS = ("synthetic only", "synthetic only, other words", "+ synthetic")
DET_FALSE_ACCEPTS = (0, 1, 2, 3, 5, 8)  # false accepts in the 20-minute test stream (8: MLPerf Tiny's limit)


def variants(names: list[str] | None, synthetic_positives: int | None, base: Path | None = None,
             near_misses: int | None = None) -> dict[str, list[str]]:
    """The chosen variants' extra training options (all of them when `names` is None); `near_misses` is given to
    every synthetic variant (None: training.train's default)."""
    available = dict(VARIANTS)
    if synthetic_positives:
        near = [] if near_misses is None else ["--near-misses", str(near_misses)]
        available.update({name: ["--synthetic-positives", str(synthetic_positives), *near,
                                 *(str(synthetic_positives) if a is None else a for a in extra)]  # None: N
                          for name, extra in SYNTHETIC_VARIANTS.items()})
    if synthetic_positives and base:
        available.update({start + suffix: [*available[start], "--init-from", str(base), *extra]
                          for start in BASE_STARTS for suffix, extra in BASE_VARIANTS.items()})
    unknown = [n for n in names or [] if n not in available]
    if unknown:
        raise ValueError(f"unknown variant {', '.join(map(repr, unknown))}: choose from {', '.join(map(repr, available))}"
                         + ("" if synthetic_positives else " (the synthetic ones need --synthetic-positives N)"))
    return {name: extra for name, extra in available.items() if names is None or name in names}


def scored(artifact, stream_record: tuple, negatives_record: tuple, keywords: list, detection: DetectionConfig) -> dict:
    """One recognizer setting over both recorded streams (replayed through the C recognizer)."""
    from host_tools.core import load_core
    from host_tools.operating_point import replayed

    core = load_core(artifact)
    (record, seconds), (negatives, negative_seconds) = stream_record, negatives_record
    stream = replayed(core, record, keywords, seconds, detection)
    alarms = len(replayed(core, negatives, [], negative_seconds, detection).false_alarms)
    return {"detection": asdict(detection), **stream.summary(), **scoring.mlperf_verdict(stream),
            "missed": [keywords.index(k) for k in stream.misses],  # which occurrences, in the stream's order
            "negatives_false_accepts": alarms, "negatives_fa_per_hour": alarms * 3600 / negative_seconds}


def measure(run: Path, wav: Path, reference: Path, negative_files: list[Path], skip_bad: bool) -> dict:
    """The run at its calibrated point and the fixed one, its threshold sweep, and the occurrences it misses at
    the sweep's best point within MLPerf Tiny's false-accept limit (the DET table's last column)."""
    from host_tools.core import load_core
    from host_tools.operating_point import THRESHOLDS, record_stream, replayed
    from training.artifact import load_artifact

    artifact = load_artifact(run)
    record, figures, _ = record_stream(artifact, [wav])
    negatives, negative_figures, _ = record_stream(artifact, negative_files, None, benchmark.NEGATIVE_GAP_S, skip_bad)
    records = ((record, figures["audio_s"]), (negatives, negative_figures["audio_s"]))
    keywords, core = scoring.read_reference(reference), load_core(artifact)
    report = json.loads((run / "report.json").read_text())
    detection = artifact.manifest.detection
    sweep = {t: replayed(core, record, keywords, figures["audio_s"], replace(detection, detection_threshold=t))
             for t in THRESHOLDS}
    points = [{"detection_threshold": t, "misses": len(r.misses), "false_alarms": len(r.false_alarms)} for t, r in sweep.items()]
    quiet = [p for p in points if p["false_alarms"] <= DET_FALSE_ACCEPTS[-1]]  # else the quietest point
    limit = min(quiet, key=lambda p: (p["misses"], p["false_alarms"])) if quiet else min(points, key=lambda p: p["false_alarms"])
    return {"run": str(run), "validation_frr": report["calibration"]["point"]["frr"],
            "calibrated": scored(artifact, *records, keywords, detection),
            "uncalibrated": scored(artifact, *records, keywords, DetectionConfig()), "sweep": points,
            "det_limit": {**limit, "missed": [keywords.index(k) for k in sweep[limit["detection_threshold"]].misses]},
            "negatives_minutes": negative_figures["audio_s"] / 60}


def det_rows(results: dict) -> list[dict]:
    """Per variant and seed, the fewest misses at or below each number of stream false accepts (None: every
    threshold gives more)."""
    return [{"variant": variant, "seed": seed,
             "misses": [min((p["misses"] for p in r["sweep"] if p["false_alarms"] <= fa), default=None)
                        for fa in DET_FALSE_ACCEPTS]}
            for variant, by_seed in results.items() for seed, r in by_seed.items()]


def rows(results: dict) -> list[dict]:
    """The table: per variant (and recognizer), the mean over seeds and each seed's figures."""
    table = []
    for variant, by_seed in results.items():
        for point in ("uncalibrated", "calibrated"):
            if point == "uncalibrated" and variant not in ("clip windows", "+ hard negatives"):
                continue
            runs = [r[point] for r in by_seed.values()]
            table.append({"variant": variant, "recognizer": point, "seeds": list(by_seed),
                          "misses": [r["misses"] for r in runs], "false_alarms": [r["false_alarms"] for r in runs],
                          "passes": [r["passes"] for r in runs],
                          "negatives_fa_per_hour": [r["negatives_fa_per_hour"] for r in runs],
                          "validation_frr": [r["validation_frr"] for r in by_seed.values()]})
    return table


def missed_recordings(results: dict, sources: list[str], point: str) -> dict[str, list[tuple[str, int, int]]]:
    """Per variant, each recording missed at `point` ("calibrated" or "det_limit"): (recording, times missed,
    times heard), over the seeds, most missed first. `sources`: the recording of each keyword occurrence, in
    the stream's order."""
    out, heard = {}, Counter(sources)
    for variant, by_seed in results.items():
        missed = Counter(sources[i] for r in by_seed.values() for i in r[point]["missed"])
        out[variant] = sorted(((s, n, heard[s] * len(by_seed)) for s, n in missed.items()), key=lambda m: (-m[1], m[0]))
    return out


def markdown(table: list[dict], det: list[dict], keyword: str, minutes: float, missed: dict[str, dict],
             split: str = "testing") -> str:
    def mean(values) -> str:
        return f"{np.mean(values):.1f} ({', '.join(f'{v:.1f}' if isinstance(v, float) else str(v) for v in values)})"

    lines = [f"Wake word {keyword!r}; stream of the {split} split's recordings 20 min, 50 keywords (MLPerf Tiny: "
             f"passes with at most 8 misses and 8 false accepts); negatives-only stream {minutes:.1f} min"
             + ("" if split == "testing" else " (always the test split's negatives and other words: the validation "
                "split's negatives calibrate every model)") + ". Mean over seeds (each seed).", "",
             "| training | recognizer | misses of 50 | false accepts (stream) | MLPerf passes | negatives-only FA/h |",
             "|---|---|---|---|---|---|"]
    for row in table:
        fixed = DetectionConfig()
        recognizer = "calibrated" if row["recognizer"] == "calibrated" else (
            f"fixed: {fixed.average_window_ms} ms, {fixed.detection_threshold:g}, {fixed.minimum_count} results")
        lines.append(f"| {row['variant']} | {recognizer} | {mean(row['misses'])} | {mean(row['false_alarms'])} | "
                     f"{sum(row['passes'])} of {len(row['passes'])} | {mean(row['negatives_fa_per_hour'])} |")
    lines += ["", f"Misses of 50 at the same number of false accepts in the {split} stream (each variant's threshold "
              "swept at its calibrated window; —: no threshold gets that few):", "",
              "| training | seed | " + " | ".join(f"≤ {fa} FA" for fa in DET_FALSE_ACCEPTS) + " |",
              "|---|---|" + "---|" * len(DET_FALSE_ACCEPTS)]
    lines += [f"| {row['variant']} | {row['seed']} | " + " | ".join("—" if m is None else str(m) for m in row["misses"])
              + " |" for row in det]
    for point, where in (("calibrated", "at the calibrated point"),
                         ("det_limit", f"at the last column's threshold (≤ {DET_FALSE_ACCEPTS[-1]} FA; where no "
                                       "threshold gets that few, at the one with the fewest)")):
        lines += ["", f"Recordings missed {where} (times missed / times in the stream, over the seeds; a clip's "
                  "speaker is its name before `_nohash_`):", ""]
        lines += [f"- {variant}: " + (", ".join(f"`{name}` {n}/{heard}" for name, n, heard in clips) or "none")
                  for variant, clips in missed[point].items()]
    return "\n".join(lines) + "\n"


def split_suffix(split: str) -> str:
    """What the files of a stream of `split` add to their names: the test split's have the plain names."""
    return "" if split == "testing" else f"-{split}"


def write_report(results: dict, stream, out: Path, keyword: str, split: str) -> str:
    """OUT/ablation[-SPLIT].json and .md from the measured runs; returns the markdown."""
    table, det = rows(results), det_rows(results)
    sources = [f"{Path(e.source).parent.name}/{Path(e.source).name}"
               for e in sorted(stream.events, key=lambda e: e.start_s) if e.kind == "keyword"]
    missed = {point: missed_recordings(results, sources, point) for point in ("calibrated", "det_limit")}
    minutes = next(iter(next(iter(results.values())).values()))["negatives_minutes"]
    (out / f"ablation{split_suffix(split)}.json").write_text(json.dumps(
        {"stream_split": split, "results": results, "table": table, "det": det, "sources": sources, "missed": missed},
        indent=2))
    report = markdown(table, det, keyword, minutes, missed, split)
    (out / f"ablation{split_suffix(split)}.md").write_text(report)
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    p.add_argument("--variants", nargs="+", metavar="NAME", help="only these variants (names as in the table)")
    p.add_argument("--synthetic-positives", type=int, metavar="N", help="add the synthetic variants, N clips each")
    p.add_argument("--base", type=Path, metavar="RUN", help="with --synthetic-positives: add the variants started from "
                   "this run's weights (one trained without the keyword)")
    p.add_argument("--near-misses", type=int, metavar="N", help="with --synthetic-positives: N near misses in every "
                   "synthetic variant (training.train's --near-misses; default: its default)")
    p.add_argument("--stream-split", choices=("testing", "validation"), default="testing",
                   help="whose recordings and negatives the stream plays (default: the test split's)")
    args, rest = p.parse_known_args(argv)
    options = benchmark.parse_args(rest)
    if args.synthetic_positives is not None and args.synthetic_positives < 1:
        p.error(f"--synthetic-positives must be at least 1, not {args.synthetic_positives}")
    if args.near_misses is not None and (args.near_misses < 0 or not args.synthetic_positives):
        p.error(f"--near-misses {args.near_misses}: needs --synthetic-positives N and a count of at least 0")
    if args.base and not (args.synthetic_positives and (args.base / "model_float.keras").is_file()):
        p.error(f"--base {args.base}: needs --synthetic-positives N and a training run's folder (with model_float.keras)")
    try:
        chosen = variants(args.variants, args.synthetic_positives, args.base and args.base.resolve(), args.near_misses)
    except ValueError as error:
        p.error(str(error))
    from training.artifact import ArtifactError, load_artifact
    from training.data import DataError
    from training.download import resolve_data_dir

    try:
        data_dir = resolve_data_dir(str(options.data_dir) if options.data_dir else None, cache_dir=options.cache_dir)
        stream = benchmark.build_stream(data_dir, options.keyword, options.negatives, options.stream_minutes * 60,
                                        options.stream_keywords, tuple(options.snr_db), options.noise_dbfs,
                                        options.seed, options.skip_bad_audio, split=args.stream_split)
        options.out.mkdir(parents=True, exist_ok=True)
        suffix = split_suffix(args.stream_split)
        wav, reference = options.out / f"stream{suffix}.wav", options.out / f"stream{suffix}.csv"
        stream.write(wav, reference)
        results: dict = {}
        for variant, extra in chosen.items():
            for seed in args.seeds:
                settings = benchmark.Settings(data_dir, options.test_set, seed, options.limit_per_label, options.out)
                run = benchmark.train(settings, "wakeword", "dscnn", options.wakeword_epochs,
                                      [*benchmark.wakeword_args(options, options.negatives), *extra], options.keyword)
                files = benchmark.negative_files(data_dir, load_artifact(run), options.negatives)
                results.setdefault(variant, {})[seed] = measure(run, wav, reference, files, options.skip_bad_audio)
                print(f"{variant}, seed {seed}: {results[variant][seed]['calibrated']}", flush=True)
    except (benchmark.BenchmarkError, DataError, ArtifactError) as error:
        print(f"ablation: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ablation: interrupted; the runs that completed stay cached", file=sys.stderr)
        return 130
    print(write_report(results, stream, options.out, options.keyword, args.stream_split))
    return 0


if __name__ == "__main__":
    sys.exit(main())
