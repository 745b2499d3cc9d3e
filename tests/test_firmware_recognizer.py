"""The core's command recognizer against a Python reference of the same rules (command_recognizer.h)."""
import ctypes
from dataclasses import dataclass

import numpy as np
import pytest

from firmware_build import MANIFEST, core  # noqa: F401  (core is a fixture)
from host_tools.core import Recognition, RecognizerConfig

LABELS = list(MANIFEST.labels)
KEYWORDS = [i for i, keyword in enumerate(MANIFEST.keyword_mask) if keyword]
ZERO_POINT, SCALE = MANIFEST.output.zero_point, MANIFEST.output.scale
CAPACITY = 64  # KWS_RECOGNIZER_CAPACITY
KWS_OK, KWS_ERR_INVALID_ARGUMENT, KWS_ERR_TIME_WENT_BACKWARDS = 0, 1, 3
DEFAULTS = dict(average_window_ms=MANIFEST.detection.average_window_ms, detection_threshold=float(np.float32(MANIFEST.detection.detection_threshold)),
                suppression_ms=MANIFEST.detection.suppression_ms, minimum_count=MANIFEST.detection.minimum_count)


@dataclass
class Decision:
    status: int
    detected: bool = False
    label: int = -1
    score: float = 0.0


class ReferenceRecognizer:
    """The rules written independently in Python, float32 where the C code uses float."""

    def __init__(self, average_window_ms, detection_threshold, suppression_ms, minimum_count):
        self.window, self.threshold = average_window_ms, np.float32(detection_threshold)
        self.suppression, self.minimum = suppression_ms, minimum_count
        self.history: list[tuple[int, np.ndarray]] = []
        self.last_detection: int | None = None

    def process(self, scores, time_ms) -> Decision:
        if self.history and (time_ms - self.history[-1][0]) % 2**32 >= 2**31:  # went backwards
            self.history, self.last_detection = [], None
            return Decision(KWS_ERR_TIME_WENT_BACKWARDS)
        self.history = (self.history + [(time_ms, np.asarray(scores, np.int64))])[-CAPACITY:]
        self.history = [(t, s) for t, s in self.history if (time_ms - t) % 2**32 <= self.window]
        if len(self.history) < self.minimum:
            return Decision(KWS_OK)
        sums = np.sum([s for _, s in self.history], axis=0)
        label = max(KEYWORDS, key=lambda i: (sums[i], -i))
        mean = np.float32(sums[label]) / np.float32(len(self.history))
        score = (mean - np.float32(ZERO_POINT)) * np.float32(SCALE)
        suppressed = self.last_detection is not None and (time_ms - self.last_detection) % 2**32 < self.suppression
        detected = bool(not suppressed and score >= self.threshold)
        if detected:
            self.last_detection = time_ms
        return Decision(KWS_OK, detected, label, float(score))


class CRecognizer:
    def __init__(self, core, **config):
        self.core, self.state = core, core.new("kws_recognizer")
        status = core.recognizer_init(self.state, ctypes.byref(RecognizerConfig(**config)))
        assert status == KWS_OK, config

    def process(self, scores, time_ms) -> Decision:
        result = Recognition()
        status = self.core.recognizer_process(self.state, np.asarray(scores, np.int8).tobytes(), time_ms, ctypes.byref(result))
        return Decision(status, result.detected, result.label, result.score)


def run_both(core, sequence, **overrides):
    """Feeds (time_ms, scores) pairs to both; asserts identical decisions and returns them."""
    config = {**DEFAULTS, **overrides}
    ours, reference = CRecognizer(core, **config), ReferenceRecognizer(**config)
    decisions = []
    for time_ms, scores in sequence:
        got, expected = ours.process(scores, time_ms), reference.process(scores, time_ms)
        assert got == expected, f"at t={time_ms} with {config}"
        decisions.append(got)
    return decisions


def scores_with(label: int, q: int) -> np.ndarray:
    """Scores where `label` has quantized value q and everything else the minimum."""
    scores = np.full(len(LABELS), -128, np.int8)
    scores[label] = q
    return scores


def quantized(probability: float) -> int:
    return int(round(probability / SCALE)) + ZERO_POINT


def test_defaults_come_from_the_generated_settings(core):
    config = core.recognizer_default_config()
    assert {name: getattr(config, name) for name, _ in RecognizerConfig._fields_} == DEFAULTS


@pytest.mark.parametrize("bad", [dict(average_window_ms=0), dict(detection_threshold=0.0), dict(detection_threshold=1.5),
                                 dict(detection_threshold=float("nan")), dict(minimum_count=0), dict(minimum_count=CAPACITY + 1)])
def test_bad_settings_are_rejected(core, bad):
    config = RecognizerConfig(**{**DEFAULTS, **bad})
    assert core.recognizer_init(core.new("kws_recognizer"), ctypes.byref(config)) == KWS_ERR_INVALID_ARGUMENT


def test_random_sequences_and_settings_decide_identically(core):
    rng = np.random.default_rng(7)
    detections = 0
    for trial in range(60):
        config = dict(average_window_ms=int(rng.integers(50, 2000)), detection_threshold=float(rng.uniform(0.3, 1.0)),
                      suppression_ms=int(rng.integers(0, 2000)), minimum_count=int(rng.integers(1, 10)))
        keyword = int(rng.choice(KEYWORDS))
        time_ms = 2**32 - 10_000 if trial % 5 == 0 else 0  # some sequences wrap uint32
        sequence = []
        for _ in range(300):
            time_ms += int(rng.integers(0, 120))
            scores = rng.integers(-128, -60, len(LABELS))
            if rng.random() < 0.5:  # bursts of a confident keyword
                scores[keyword] = rng.integers(40, 128)
            sequence.append((time_ms % 2**32, scores.astype(np.int8)))
        detections += sum(d.detected for d in run_both(core, sequence, **config))
    assert detections > 20  # the sequences exercise detections, not only silence


def test_recorded_model_outputs_decide_identically(core, shared_data):
    """Outputs of the exported int8 model on a real stream of mini-set clips, one inference every 40 ms."""
    from firmware_build import model_outputs_on_stream

    outputs = model_outputs_on_stream(shared_data / "speech_commands_v0.02_mini", hop_frames=2)
    decisions = run_both(core, [(t, scores) for t, scores in outputs])
    detected = [LABELS[d.label] for d in decisions if d.detected]
    print(f"\n{len(outputs)} inferences, detections: {detected}")
    assert detected


def test_exactly_at_threshold_detects_one_step_below_does_not(core):
    keyword = KEYWORDS[0]
    q = quantized(0.8)
    at = float(np.float32((q - ZERO_POINT) * SCALE))  # representable: the average is exactly this
    decisions = run_both(core, [(t * 100, scores_with(keyword, q)) for t in range(3)], detection_threshold=at,
                         minimum_count=3)
    assert [d.detected for d in decisions] == [False, False, True]
    below = run_both(core, [(t * 100, scores_with(keyword, q - 1)) for t in range(3)], detection_threshold=at,
                     minimum_count=3)
    assert not any(d.detected for d in below) and below[-1].score < at


def test_suppression_ends_exactly_after_suppression_ms(core):
    times = [0, 1499, 1500, 1600, 3000]  # detections at 0, then exactly 1500 ms later, twice
    decisions = run_both(core, [(t, scores_with(KEYWORDS[-1], 127)) for t in times], suppression_ms=1500, minimum_count=1)
    assert [d.detected for d in decisions] == [True, False, True, False, True]


def test_results_fall_out_of_the_window(core):
    keyword = KEYWORDS[0]
    loud, quiet = scores_with(keyword, 127), scores_with(keyword, -128)
    # Three loud results, then quiet ones push the average down as the loud ones leave the window.
    sequence = [(0, loud), (10, loud), (20, loud), (1010, quiet), (1011, quiet), (1021, quiet), (2022, quiet)]
    decisions = run_both(core, sequence, average_window_ms=1000, suppression_ms=0, detection_threshold=0.5,
                         minimum_count=3)
    # At t=1010 the result at 10 is exactly window_ms old and still counts; the one at 0 is out.
    assert [d.detected for d in decisions] == [False, False, True, True, False, False, False]
    # At 2022 only its own result is left: fewer than minimum_count, so no decision at all.
    assert decisions[-1].label == -1


def test_fewer_than_minimum_count_never_decides(core):
    decisions = run_both(core, [(t * 10, scores_with(KEYWORDS[0], 127)) for t in range(5)], minimum_count=5)
    assert [d.label for d in decisions[:4]] == [-1] * 4 and decisions[4].detected


def test_timestamps_going_backwards_are_rejected_and_reset(core):
    loud = scores_with(KEYWORDS[0], 127)
    sequence = [(1000, loud), (1010, loud), (1010, loud), (500, loud), (510, loud), (520, loud), (530, loud)]
    decisions = run_both(core, sequence, minimum_count=3, suppression_ms=10_000)
    assert [d.status for d in decisions] == [KWS_OK] * 3 + [KWS_ERR_TIME_WENT_BACKWARDS] + [KWS_OK] * 3
    # Equal timestamps are fine (third result detects); after the reset the history restarts at
    # 510, and suppression was cleared, so 530 (the third new result) detects again.
    assert [d.detected for d in decisions] == [False, False, True, False, False, False, True]


def test_history_beyond_capacity_keeps_the_newest(core):
    keyword = KEYWORDS[0]
    sequence = [(t, scores_with(keyword, 127 if t < CAPACITY else -128)) for t in range(CAPACITY * 2)]
    decisions = run_both(core, sequence, average_window_ms=100_000, suppression_ms=100_000, detection_threshold=0.99)
    assert decisions[-1].score == 0.0  # all CAPACITY loud results have been pushed out
