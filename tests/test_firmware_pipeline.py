"""The core's kws_pipeline (the board's loop, run by main.cpp and host_tools/simulate.py): inference
cadence, the features it hands the model, statistics, DET/STAT/ERR records and set-up failures."""
import ctypes

import numpy as np
import pytest

from firmware_build import MANIFEST, core  # noqa: F401  (core is a fixture)
from host_tools.c_build import FirmwareBuildError
from host_tools.core import Pipeline, PipelineConfig, core_model_input
from host_tools.protocol import Boot, Detection, Error, Stats, parse_line

RATE, HOP, WINDOW = MANIFEST.features.sample_rate, MANIFEST.features.hop_samples, MANIFEST.features.window_samples
FRAMES, WINDOW_VALUES = MANIFEST.features.n_frames, MANIFEST.features.n_frames * MANIFEST.features.n_mfcc
LABELS = list(MANIFEST.labels)
BLOCK = MANIFEST.app.pdm_block_samples
KEYWORD = next(i for i, label in enumerate(LABELS) if not label.startswith("_"))


class Board:
    """A pipeline with a scripted model and clocks: device time is the samples written so far; every
    call of the µs clock advances it by `tick_us`, and an inference lasts `inference_us(i)` µs more."""

    def __init__(self, core, scores=None, fail_at=(), tick_us=5, inference_us=lambda i: 1000 + 100 * i, **config):
        self.samples, self.us, self.tick = 0, 0, tick_us
        self.calls: list[tuple[int, np.ndarray]] = []  # (samples written, model input) per inference
        self.lines: list[str] = []
        self.scores = np.full(len(LABELS), -128, np.int8) if scores is None else np.asarray(scores, np.int8)
        self.fail_at, self.inference_us = set(fail_at), inference_us
        defaults = core.pipeline_config()
        settings = PipelineConfig(defaults.recognizer, config.get("every", defaults.inference_every_hops),
                                  config.get("stat_ms", defaults.stat_period_ms), defaults.microphone_gain)
        self.pipeline = Pipeline(core, self.invoke, lambda: self.samples * 1000 // RATE, self.now_us,
                                 lambda line: self.lines.append(line.decode()), settings)

    def now_us(self):
        self.us += self.tick
        return self.us

    def invoke(self, features, feature_count, scores, score_count):
        assert (feature_count, score_count) == (WINDOW_VALUES, len(LABELS))  # the sizes the core passes
        self.us += self.inference_us(len(self.calls))
        self.calls.append((self.samples, np.ctypeslib.as_array(features, (WINDOW_VALUES,)).copy()))
        ctypes.memmove(scores, self.scores.ctypes.data, len(LABELS))
        return len(self.calls) - 1 not in self.fail_at

    def hear(self, audio: np.ndarray, block: int = BLOCK) -> list[bool]:
        detections = []
        for start in range(0, len(audio), block):
            chunk = np.ascontiguousarray(audio[start : start + block], np.int16)
            assert self.pipeline.write(chunk)
            self.samples += len(chunk)
            detections.append(self.pipeline.step())
        return detections

    def records(self):
        return [parse_line(line) for line in self.lines]


def frame_end(n: int) -> int:
    """Samples needed for feature frame n (1-based)."""
    return WINDOW + HOP * (n - 1)


def test_boot_is_sent_first_with_the_recognizer_settings(core):
    board = Board(core)
    (boot,) = board.records()
    assert isinstance(boot, Boot) and boot.model == MANIFEST.model_sha256[:16] and boot.labels == tuple(LABELS)


@pytest.mark.parametrize("every, block", [(10, BLOCK), (1, BLOCK), (3, 100)])
def test_an_inference_every_n_hops_once_the_window_is_full(core, every, block):
    board = Board(core, every=every)
    total = RATE * 3
    board.hear(np.zeros(total, np.int16), block)
    # Blocks shorter than a hop complete at most one frame per step: inferences fall exactly on frames
    # FRAMES, FRAMES + every, ..., each in the step whose block completed that frame (the last is short).
    frames = range(FRAMES, (total - WINDOW) // HOP + 2, every)
    expected = [min(-(-frame_end(n) // block) * block, total) for n in frames]
    assert [samples for samples, _ in board.calls] == expected


def test_the_model_gets_the_window_of_the_newest_second(core, shared_data):
    """On a real clip: the features of each inference equal the core's features of the audio so far."""
    from training.data import read_audio, to_int16

    audio = to_int16(read_audio(shared_data / "micro_speech_testdata" / "yes_1000ms.wav", RATE))
    audio = np.concatenate([audio, audio[::-1]])
    board = Board(core, every=7)
    board.hear(audio)
    assert len(board.calls) >= 3
    for samples, features in board.calls:
        _, window = core_model_input(core, audio[:samples])
        np.testing.assert_array_equal(features, window.ravel())


def test_stat_records_sum_what_happened_in_their_period(core):
    board = Board(core, every=10, stat_ms=1000, tick_us=5)
    board.hear(np.zeros(RATE * 4, np.int16))
    stats = [r for r in board.records() if isinstance(r, Stats)]
    # STAT in the first step (device time advances by whole 16 ms blocks) at least stat_period_ms after
    # the previous STAT, as on the board: the period is measured from the last record, so it drifts.
    block_ms, expected = BLOCK * 1000 // RATE, [0]
    while -(-(expected[-1] + 1000) // block_ms) * block_ms <= 4000:
        expected.append(-(-(expected[-1] + 1000) // block_ms) * block_ms)
    assert [s.uptime_ms for s in stats] == expected[1:] == [1008, 2016, 3024]
    calls = [samples * 1000 // RATE for samples, _ in board.calls]
    for i, stat in enumerate(stats):
        since = stats[i - 1].uptime_ms if i else 0
        inside = [k for k, t in enumerate(calls) if since < t <= stat.uptime_ms]
        # an inference is timed from one clock read to the next: its duration plus one tick
        durations = [1000 + 100 * k + 5 for k in inside]
        assert stat.inference_mean_us == (sum(durations) // len(durations) if durations else 0)
        assert stat.inference_max_us == max(durations, default=0)
        assert stat.feature_mean_us == 5  # one tick between the two reads around each frame
        assert stat.inferences_per_second == round(1000 * len(inside) / (stat.uptime_ms - since), 2)
        assert stat.audio_overruns == 0
    assert [s.inferences_per_second > 0 for s in stats] == [True, True, True]  # the window is full at 1008 ms


def test_a_stream_that_ends_sends_a_last_stat_for_its_unreported_time(core):
    board = Board(core, every=10, stat_ms=1000)
    board.hear(np.zeros(RATE * 2 + BLOCK * 10, np.int16))  # 2.16 s: the last periodic STAT is at 2016 ms
    board.pipeline.send_stats()
    board.pipeline.send_stats()  # nothing more: no time has passed since
    stats = [r for r in board.records() if isinstance(r, Stats)]
    assert [s.uptime_ms for s in stats] == [1008, 2016, 2160]
    assert stats[-1].inferences_per_second == round(1000 * sum(2016 < s * 1000 // RATE for s, _ in board.calls) / 144, 2)


def test_detections_are_sent_with_device_time_and_inference_time(core):
    scores = np.full(len(LABELS), -128, np.int8)
    scores[KEYWORD] = 127
    board = Board(core, scores=scores, every=10)
    detected = board.hear(np.zeros(RATE * 3, np.int16))
    detections = [r for r in board.records() if isinstance(r, Detection)]
    times = [samples * 1000 // RATE for samples, _ in board.calls]
    minimum, suppression = MANIFEST.detection.minimum_count, MANIFEST.detection.suppression_ms
    first = times[minimum - 1]  # the first inference with minimum_count results in the window
    expected = [first] + [t for t in times if t - first >= suppression][:1]
    assert [d.time_ms for d in detections] == expected
    assert all(d.label == LABELS[KEYWORD] and d.score == 0.996 for d in detections)
    assert [d.inference_us for d in detections] == [1000 + 100 * times.index(t) + 5 for t in expected]
    assert sum(detected) == len(detections)


def test_a_failed_inference_is_reported_and_the_loop_goes_on(core):
    board = Board(core, fail_at={1}, every=10)
    board.hear(np.zeros(RATE * 2, np.int16))
    errors = [r for r in board.records() if isinstance(r, Error)]
    assert errors == [Error(code=8, message="model: Invoke failed")]
    assert len(board.calls) == 1 + (2 * RATE - frame_end(FRAMES)) // (HOP * 10)


@pytest.mark.parametrize("every, stat_ms", [(0, 5000), (10, 0)])
def test_bad_settings_fail_set_up_saying_why(core, every, stat_ms):
    with pytest.raises(FirmwareBuildError, match="KWS_INFERENCE_EVERY_HOPS and KWS_STAT_PERIOD_MS"):
        Board(core, every=every, stat_ms=stat_ms)
