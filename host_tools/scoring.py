"""Scoring of a stream's detections: against a reference track (MLPerf Tiny's streaming wake-word rules)
and as false triggers per hour with an exact Poisson interval. Shared by listen.py and the benchmarks.

Reference track: a CSV file with the header `start_s,end_s,label`, one keyword utterance a row, times in
seconds from the start of the track. Detections are (device time in seconds, label); the caller maps
device time to track time (track time = device time - offset).

The rules are those of MLPerf Tiny's streaming wake-word benchmark (github.com/mlcommons/tiny,
benchmark/training/streaming_wakeword/str_ww_util.py: get_true_and_false_detections, debounce_detections):
  * hit: a keyword [start, end] is detected when a detection falls in [start, end + 0.5 s)
    (true_pos_max_delay_sec = 0.5); otherwise it is a miss;
  * detections in [start, end + 1.0 s) of a keyword are never false alarms (false_pos_suppresion_delay_sec
    = 1.0): a second detection of one utterance is neither a hit nor a false alarm;
  * every other detection is a false alarm, debounced: one counts, and the detections in the 1.0 s after
    it (debounce_time = 1.0) are folded into it; a detection 1.0 s or more later counts again, so a
    5-second burst is about five false alarms.
Interpretations, where MLPerf has one wake word and a sampled detection signal: a detection matches only
keywords of its own label (another label during a keyword is a false alarm: the wrong command ran); a
keyword whose hit window [start, end + 0.5 s) is not wholly inside the time listened to (`covered_s`) is
neither hit nor miss but "not covered", and detections outside it are not counted.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

HIT_WINDOW_S = 0.5        # MLPerf Tiny true_pos_max_delay_sec
NOT_FALSE_WINDOW_S = 1.0  # MLPerf Tiny false_pos_suppresion_delay_sec
DEBOUNCE_S = 1.0          # MLPerf Tiny debounce_time
COLUMNS = ["start_s", "end_s", "label"]


class ReferenceError(ValueError):
    """A reference track file that cannot be used, with the file and line."""


@dataclass(frozen=True)
class Keyword:
    start_s: float
    end_s: float
    label: str


@dataclass
class Score:
    hits: list[Keyword] = field(default_factory=list)
    misses: list[Keyword] = field(default_factory=list)
    not_covered: list[Keyword] = field(default_factory=list)
    false_alarms: list[tuple[float, str]] = field(default_factory=list)  # the debounced, counted ones
    absorbed: int = 0  # detections in a keyword's [start, end + 1 s) that are not its hit: repeats, late ones

    def summary(self) -> dict:
        return {"hits": len(self.hits), "misses": len(self.misses), "false_alarms": len(self.false_alarms),
                "not_covered": len(self.not_covered), "absorbed": self.absorbed}


def read_reference(path: Path) -> list[Keyword]:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as error:
        raise ReferenceError(f"{path}: cannot read the reference track: {error}") from None
    if not rows or [cell.strip() for cell in rows[0]] != COLUMNS:
        raise ReferenceError(f"{path}: the first line must be the header {','.join(COLUMNS)}")
    keywords = []
    for number, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        try:
            start, end, label = row
            keyword = Keyword(float(start), float(end), label.strip())
        except ValueError:
            raise ReferenceError(f"{path}:{number}: expected start_s,end_s,label with times in seconds, "
                                 f"got {','.join(row)!r}") from None
        if not 0 <= keyword.start_s < keyword.end_s or not keyword.label:
            raise ReferenceError(f"{path}:{number}: needs 0 <= start_s < end_s and a label, got {','.join(row)!r}")
        keywords.append(keyword)
    return sorted(keywords, key=lambda k: k.start_s)


def score(detections: list[tuple[float, str]], reference: list[Keyword], covered_s: float) -> Score:
    """Hits, misses and debounced false alarms of `detections` (track seconds, label) listened to over
    [0, covered_s) of the track."""
    result = Score()
    detections = sorted((t, label) for t, label in detections if 0 <= t < covered_s)
    explained = set()  # detections inside some keyword's not-false window
    for keyword in reference:
        same = [i for i, (t, label) in enumerate(detections) if label == keyword.label]
        inside = {i for i in same if keyword.start_s <= detections[i][0] < keyword.end_s + NOT_FALSE_WINDOW_S}
        if keyword.end_s + HIT_WINDOW_S > covered_s:  # its detections are still not false alarms
            result.not_covered.append(keyword)
            explained |= inside
            continue
        in_hit = [i for i in same if keyword.start_s <= detections[i][0] < keyword.end_s + HIT_WINDOW_S]
        (result.hits if in_hit else result.misses).append(keyword)
        result.absorbed += max(0, len(inside - explained) - (1 if in_hit else 0))
        explained |= inside
    last = None
    for i, (t, label) in enumerate(detections):
        if i in explained:
            continue
        if last is None or t - last >= DEBOUNCE_S:
            result.false_alarms.append((t, label))
            last = t
    return result


def poisson_interval(count: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) confidence interval of a Poisson mean from `count` events, via chi-square
    quantiles: [chi2(a/2; 2k) / 2, chi2(1 - a/2; 2k + 2) / 2], lower bound 0 when k = 0."""
    from scipy.stats import chi2

    alpha = 1 - confidence
    low = chi2.ppf(alpha / 2, 2 * count) / 2 if count > 0 else 0.0
    return float(low), float(chi2.ppf(1 - alpha / 2, 2 * count + 2) / 2)


def rate_per_hour(count: int, seconds: float, confidence: float = 0.95) -> tuple[float, float, float]:
    """(events per hour, lower, upper) over `seconds` of listening."""
    hours = seconds / 3600
    low, high = poisson_interval(count, confidence)
    return count / hours, low / hours, high / hours


# ---------------------------------------------------------------- streaming benchmark figures

# MLPerf Tiny's streaming wake-word pass criterion, on its 20-minute stream with 50 wake words:
# at most 8 false rejects and at most 8 false accepts.
MLPERF_MAX_FALSE_REJECTS = 8
MLPERF_MAX_FALSE_ACCEPTS = 8


def resolvable_rate_per_hour(seconds: float) -> float:
    """The lowest non-zero false-accept rate `seconds` of audio can show: one event over all of it.
    Zero events there means a rate below about this (95% upper bound: poisson_interval(0)[1] times it)."""
    return 3600 / seconds


def mlperf_verdict(result: Score) -> dict:
    """Whether a score meets MLPerf Tiny's criterion, and by how many events it misses each side."""
    rejects, accepts = len(result.misses), len(result.false_alarms)
    return {"false_rejects": rejects, "false_accepts": accepts,
            "passes": rejects <= MLPERF_MAX_FALSE_REJECTS and accepts <= MLPERF_MAX_FALSE_ACCEPTS,
            "false_rejects_over": max(0, rejects - MLPERF_MAX_FALSE_REJECTS),
            "false_accepts_over": max(0, accepts - MLPERF_MAX_FALSE_ACCEPTS)}


def det_point(result: Score, seconds: float) -> tuple[float, float]:
    """(false-reject rate, false accepts per hour) of a score over `seconds` of audio."""
    scored = len(result.hits) + len(result.misses)
    return len(result.misses) / scored if scored else float("nan"), len(result.false_alarms) * 3600 / seconds


def frr_at(points: list[tuple[float, float]], fa_per_hour: float, seconds: float) -> dict:
    """The false-reject rate at a false-accept rate, from (frr, fa/h) points of a threshold sweep.

    Below the resolvable rate (one event in `seconds`) the audio cannot tell the target from zero: stated
    as such, never read off a 0/h point. Otherwise the lowest FRR among points at or below the target,
    linearly interpolated (in FA/h) towards the next point above it; "not reached" when no point is at
    or below the target."""
    if fa_per_hour < resolvable_rate_per_hour(seconds):
        return {"status": "not resolvable", "frr": None,
                "why": f"{fa_per_hour:g} FA/h is below one event in {seconds / 3600:.2f} h "
                       f"({resolvable_rate_per_hour(seconds):.2f}/h)"}
    below = [p for p in points if p[1] <= fa_per_hour]
    if not below:
        return {"status": "not reached", "frr": None,
                "why": f"every threshold gives more than {fa_per_hour:g} FA/h"}
    frr, fa = min(below, key=lambda p: (p[0], -p[1]))
    above = sorted((p for p in points if p[1] > fa_per_hour), key=lambda p: p[1])
    if above and above[0][0] < frr and fa < fa_per_hour:  # a lower FRR beyond the target: interpolate to it
        next_frr, next_fa = above[0]
        frr += (next_frr - frr) * (fa_per_hour - fa) / (next_fa - fa)
        return {"status": "interpolated", "frr": frr}
    return {"status": "measured", "frr": frr}
