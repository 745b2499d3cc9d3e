"""The wake word's operating point, chosen on a validation stream, never on the test stream.

The validation audio is built like the benchmark's (host_tools/stream.py, host_tools/benchmark.py) from
validation-split keyword clips, validation-split other words and the validation share of the negatives
folders (training.data.negatives_split), audio neither training nor the benchmark uses: a stream of keywords
among negatives, and every validation negative once, one after another. Each candidate model (the
best-validation-accuracy checkpoint and the last epoch's weights, both full int8) runs over both once through
the device pipeline (host_tools/simulate.py); its recorded outputs are replayed through the firmware's C
recognizer at every setting of host_tools.operating_point.settings_grid. False accepts count over both,
misses over the stream's keywords, and the candidate and setting with the lowest false-reject rate within
the target false-accept rate win.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from host_tools import scoring
from host_tools.operating_point import CalibrationError, choose, describe, record_stream, replayed, settings_grid, sweep
from training.artifact import Artifact

VALIDATION_MINUTES = 30.0  # long enough to tell a few false accepts an hour from none
KEYWORDS_PER_MINUTE = 2.5  # as the benchmark's 50 in 20 minutes
NEGATIVE_GAP_S = 0.5  # between the validation negatives played one after another


@dataclass
class ValidationAudio:
    """The validation stream (keywords among negatives) and every validation negative once, one after another,
    as the benchmark has a stream and a negatives-only pass over its test audio."""

    wav: Path
    reference: Path
    negatives: list[Path]
    description: dict


def validation_audio(data_dir: Path, keywords: list[str], negatives: list[Path], out_dir: Path, seed: int,
                     minutes: float = VALIDATION_MINUTES, keyword_clips: list[Path] | None = None) -> ValidationAudio:
    """validation_stream.wav and .csv in `out_dir`, and the list of validation negatives. The stream's keywords
    are `keyword_clips` (training's validation split: recordings, synthetic clips or both) or the recordings."""
    from host_tools.stream import build_stream, split_clips
    from training.data import split_negatives

    stream = build_stream(data_dir, keywords[0], negatives, minutes * 60, max(1, round(minutes * KEYWORDS_PER_MINUTE)),
                          seed=seed, skip_bad=True, split="validation", keywords=tuple(keywords),
                          keyword_clips=keyword_clips)
    wav, reference = out_dir / "validation_stream.wav", out_dir / "validation_stream.csv"
    stream.write(wav, reference)
    words = split_clips(data_dir, "validation")
    files = [*(p for folder in negatives for p in split_negatives(folder, "validation")),
             *(p for word, paths in sorted(words.items()) if word not in keywords for p in paths)]
    kinds: dict[str, int] = {}
    for event in stream.events:
        kinds[event.kind] = kinds.get(event.kind, 0) + 1
    return ValidationAudio(wav, reference, files, {"seconds": stream.seconds, "keywords": len(stream.keywords()),
                                                   "events": kinds, "negative_files": len(files),
                                                   "skipped_files": stream.skipped})


def validation_points(artifact: Artifact, audio: ValidationAudio) -> tuple[list[dict], float]:
    """Every recognizer setting's hits and misses on the validation stream, and its false accepts there and over
    the validation negatives; (points, seconds of audio in all)."""
    from host_tools.core import load_core

    core = load_core(artifact)
    app, features = artifact.manifest.app, artifact.manifest.features
    period_ms = app.inference_every_hops * features.hop_samples * 1000 // features.sample_rate
    settings = settings_grid(artifact.manifest.detection, period_ms)
    record, figures, _ = record_stream(artifact, [audio.wav])
    points = sweep(core, record, scoring.read_reference(audio.reference), figures["audio_s"], settings)
    negatives, negative_figures, _ = record_stream(artifact, audio.negatives, None, NEGATIVE_GAP_S, skip_bad_audio=True)
    seconds = figures["audio_s"] + negative_figures["audio_s"]
    for point, detection in zip(points, settings):
        alarms = replayed(core, negatives, [], negative_figures["audio_s"], detection).false_alarms
        point.update(stream_false_alarms=point["false_alarms"], negatives_false_alarms=len(alarms),
                     false_alarms=point["false_alarms"] + len(alarms))
        point["fa_per_hour"] = point["false_alarms"] * 3600 / seconds
    return points, seconds


def calibrate(candidates: dict[str, Artifact], audio: ValidationAudio, target_fa_per_hour: float) -> dict:
    """The best candidate and recognizer setting for the target: {"candidate", "point", "described", "met", "det",
    "candidates", ...}. When no setting of any candidate keeps to the target, the one with the fewest false
    accepts (then the lowest FRR) is taken, and "met" says it falls short."""
    results = {}
    for name, artifact in candidates.items():
        points, seconds = validation_points(artifact, audio)
        try:
            chosen, met = choose(points, target_fa_per_hour, seconds), True
        except CalibrationError:
            chosen, met = min(points, key=lambda p: (p["false_alarms"], p["frr"], -p["detection_threshold"])), False
        results[name] = (chosen, met, points, seconds)
    name = min(results, key=lambda n: (not results[n][1], results[n][0]["frr"] if results[n][1] else
                                       results[n][0]["false_alarms"], results[n][0]["false_alarms"]))
    chosen, met, points, seconds = results[name]
    same_recognizer = [p for p in points if all(p[k] == chosen[k] for k in
                                                 ("average_window_ms", "minimum_count", "suppression_ms"))]
    return {"candidate": name, "point": chosen, "described": describe(chosen), "met": met, "seconds": seconds,
            "det": sorted(same_recognizer, key=lambda p: p["detection_threshold"]),
            "candidates": {n: {**r[0], "met": r[1], "described": describe(r[0])} for n, r in results.items()}}


def detection_of(point: dict, base) -> object:
    """The DetectionConfig of a sweep point."""
    from dataclasses import replace

    return replace(base, **{k: point[k] for k in asdict(base)})
