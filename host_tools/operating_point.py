"""The device's operating point: its recognizer settings swept over a recorded stream, scored by MLPerf Tiny's
streaming rules, and the choice for a target false-accept rate.

    record, seconds, device = record_stream(artifact, wav)            # the device pipeline, once
    points = sweep(core, record, keywords, seconds, settings_grid(detection, every_ms))
    chosen = choose(points, target_fa_per_hour=1.0, seconds=seconds)  # the lowest FRR within the target

Every point is the firmware's own C recognizer (host_tools.core.replay) over the recorded int8 outputs, so a
chosen point is what the board does with those settings. Training calibrates on the validation stream
(`training.train`), the benchmark reports its DET on the test stream; neither sees the other's audio.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from host_tools import scoring
from training.config import DetectionConfig

THRESHOLDS = tuple(float(t) for t in np.round(np.arange(0.05, 1.0, 0.025), 3))
# Recognizer settings tried by the calibration: averaging over 2 to 5 inferences (at one every 200 ms),
# detecting once 1 to 3 results are in, staying quiet 1 or 1.5 s (MLPerf debounces false alarms over 1 s).
AVERAGE_WINDOWS_MS = (400, 600, 800, 1000)
MINIMUM_COUNTS = (1, 2, 3)
SUPPRESSIONS_MS = (1000, 1500)


class CalibrationError(ValueError):
    """No setting meets what was asked, said with the closest one."""


def settings_grid(base: DetectionConfig, inference_period_ms: int, thresholds=THRESHOLDS) -> list[DetectionConfig]:
    """Every combination of window, minimum count, suppression and threshold a recognizer window can hold
    (minimum_count results must fit in the window at the inference cadence)."""
    grid = []
    for window, count, suppression, threshold in itertools.product(AVERAGE_WINDOWS_MS, MINIMUM_COUNTS,
                                                                   SUPPRESSIONS_MS, thresholds):
        if (count - 1) * inference_period_ms <= window:
            grid.append(replace(base, average_window_ms=window, minimum_count=count, suppression_ms=suppression,
                                detection_threshold=threshold))
    return grid


def replayed(core, record: list, keywords: list[scoring.Keyword], seconds: float, detection: DetectionConfig
             ) -> scoring.Score:
    """The recorded inferences replayed through the C recognizer at `detection`, scored."""
    from host_tools.core import replay

    labels = core.manifest.labels
    return scoring.score([(t, labels[k]) for t, k in replay(core, record, detection)], keywords, seconds)


def sweep(core, record: list, keywords: list[scoring.Keyword], seconds: float,
          settings: list[DetectionConfig]) -> list[dict]:
    """One DET point per setting: the recorded inferences replayed through the C recognizer and scored."""
    points = []
    for detection in settings:
        result = replayed(core, record, keywords, seconds, detection)
        frr, fa_per_hour = scoring.det_point(result, seconds)
        points.append({**asdict(detection), **result.summary(), "frr": frr, "fa_per_hour": fa_per_hour})
    return points


def allowed_false_accepts(target_fa_per_hour: float, seconds: float) -> int:
    """The most false accepts `seconds` of stream may hold at the target rate."""
    return math.floor(target_fa_per_hour * seconds / 3600 + 1e-9)


def choose(points: list[dict], target_fa_per_hour: float, seconds: float) -> dict:
    """The point with the lowest false-reject rate among those within the target false-accept rate; among
    equals, fewer false accepts, then the higher threshold (margin for audio the stream did not hold), then
    the longer window. CalibrationError, naming the closest point, when none is within the target."""
    allowed = allowed_false_accepts(target_fa_per_hour, seconds)
    within = [p for p in points if p["false_alarms"] <= allowed]
    if not within:
        closest = min(points, key=lambda p: (p["false_alarms"], p["frr"]))
        raise CalibrationError(f"no recognizer setting keeps to {target_fa_per_hour:g} false accepts per hour "
                               f"({allowed} in {seconds / 60:.1f} min of stream); the fewest is "
                               f"{closest['false_alarms']} at {describe(closest)}")
    return min(within, key=lambda p: (p["frr"], p["false_alarms"], -p["detection_threshold"],
                                      -p["average_window_ms"], p["minimum_count"], -p["suppression_ms"]))


def describe(point: dict) -> str:
    return (f"threshold {point['detection_threshold']:g}, window {point['average_window_ms']} ms, minimum count "
            f"{point['minimum_count']}, suppression {point['suppression_ms']} ms")


def record_stream(artifact, audio: list[Path], device_log: Path | None = None, gap_s: float = 0.0,
                  skip_bad_audio: bool = False):
    """The model artifact over audio files through the device simulator (the core built for it, TFLM's
    runtime): (every inference's (device ms, int8 outputs), the simulator's figures, the device's detections as
    (s, label)). The serial output goes to `device_log` when given."""
    from host_tools import simulate
    from host_tools.protocol import Detection, parse_line
    from host_tools.pty_port import Outputs

    record: list = []
    lines: list[bytes] = []

    class Collect(Outputs):
        def line(self, text: bytes) -> None:
            lines.append(text)
            super().line(text)

    outputs = Collect(device_log, False, None)
    figures = simulate.simulate(artifact, list(audio), outputs,
                                simulate.StreamOptions(gap_s=gap_s, skip_bad_audio=skip_bad_audio), record)
    outputs.close()
    detections = [(r.time_ms / 1000, r.label) for r in map(parse_line, map(bytes.decode, lines))
                  if isinstance(r, Detection)]
    return record, figures, detections
