"""A wake word trained for a stream: the window builder (keyword positions, partial keywords), the miner, the
calibration on a DET whose right answer is known, and the export of the chosen operating point."""
import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import run_module
from firmware_build import ARTIFACT, MANIFEST, available
from host_tools import scoring
from host_tools.operating_point import CalibrationError, allowed_false_accepts, choose, settings_grid, sweep
from training.augment import (PROFILE_STEP, NoiseBank, augment_rows, draw_epoch, rms, speech_profile,
                              visible_fraction, window_labels)
from training.config import AugmentConfig, StreamConfig
from training.data import read_audio, to_int16
from training.mining import mine, mining_epochs

RATE = 16000
STREAM = StreamConfig()


def burst_clip(start_s: float, end_s: float) -> np.ndarray:
    """One second of quiet noise with a loud tone over [start_s, end_s): a 'word' whose place is known."""
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 0.001, RATE)
    t = np.arange(int(start_s * RATE), int(end_s * RATE))
    audio[t] += 0.5 * np.sin(2 * np.pi * 440 * t / RATE)
    return to_int16(audio)


def test_the_speech_profile_finds_the_word_not_the_background():
    profile = speech_profile(burst_clip(0.4, 0.6)[np.newaxis])[0]
    at = {s: profile[int(s * RATE) // PROFILE_STEP] for s in (0.3, 0.4, 0.5, 0.6, 0.7)}
    assert at[0.3] < 0.01 and at[0.4] < 0.02 and 0.45 < at[0.5] < 0.55 and at[0.6] > 0.98 and at[0.7] > 0.99


@pytest.mark.parametrize("shift_s, speed, visible", [
    (0.0, 1.0, 1.0),  # centred: the whole word
    (0.3, 1.0, 1.0),  # moved right, still whole (it ends at 0.9 s)
    (0.5, 1.0, 0.5),  # half of it past the window's end
    (-0.5, 1.0, 0.5),  # half of it before the window's start
    (0.7, 1.0, 0.0),  # gone
    (0.5, 0.8, 0.5),  # read slower the word is longer, 0.375-0.625 s about the centre, then 0.5 s later
])
def test_the_visible_share_of_a_word_follows_its_shift_and_speed(shift_s, speed, visible):
    profiles = speech_profile(burst_clip(0.4, 0.6)[np.newaxis])
    fraction = visible_fraction(profiles, np.array([speed]), np.array([int(shift_s * RATE)]), RATE)[0]
    assert fraction == pytest.approx(visible, abs=0.04)


def test_windows_with_the_word_whole_in_part_or_not_at_all_are_labelled_deliberately():
    labels, keyword_mask, unknown = np.array([2, 2, 2, 1, 0]), np.array([False, False, True]), 1
    fractions = np.array([0.95, 0.5, 0.1, 0.2, 1.0])
    out, weights = window_labels(labels, keyword_mask, fractions, unknown, STREAM)
    assert out.tolist() == [2, 2, 1, 1, 0]  # whole: the keyword; hardly any: unknown; others keep their label
    assert weights.tolist() == [1.0, 0.0, 1.0, 1.0, 1.0]  # part of it: not trained on


def test_augmentation_places_the_word_where_its_draws_say(mini_set):
    """Real keyword clips, shifted by the epoch's draws: the word's energy lands where visible_fraction says."""
    clips = np.stack([to_int16(read_audio(p, RATE)) for p in sorted((mini_set / "yes").iterdir())[:40]])
    bank = NoiseBank.of([np.zeros(2 * RATE, np.float32)])
    draws = draw_epoch(len(clips), np.zeros(0, np.int64), bank, RATE, AugmentConfig(noise_probability=0.0), STREAM,
                       np.random.default_rng(3))
    assert np.abs(draws.shifts).max() > RATE // 2  # stream windows reach far beyond the clip training's 100 ms
    augmented = augment_rows(clips, draws, bank)
    fractions = visible_fraction(speech_profile(clips), draws.speeds, draws.shifts, RATE)
    gains = 10 ** (draws.levels.astype(np.float64) / 20) / rms(clips / 32768.0)  # stream windows set a level
    energy = np.square(augmented, dtype=np.float64).sum(axis=1) / gains**2
    original = np.square(clips / 32768.0).sum(axis=1)
    # the level drawn, within what a speed change of up to 10% (0.5 dB) and the cut edges of the recording do
    assert np.allclose(20 * np.log10(rms(augmented[fractions > 0.999])), draws.levels[fractions > 0.999], atol=1.0)
    gone, whole = fractions < 0.05, fractions > 0.95
    assert gone.any() and whole.any()
    assert np.all(energy[gone] < 0.1 * original[gone])  # the word left the window: (almost) nothing of it heard
    assert np.all(energy[whole] > 0.6 * original[whole])  # the word inside: most of the clip heard (its edges may not)


def test_the_miner_scores_every_clip_at_every_position_and_keeps_the_highest():
    """A pool clip whose loud 'word' sits in its first 0.2 s scores high only where a shift keeps it in the window;
    the scores equal the model on the MFCCs of the shifted clip computed independently; the kept windows are the
    highest at or above the threshold."""
    from training.config import FeatureConfig
    from training.features import mfcc
    from training.mining import keyword_scores, pool_windows
    from training.model import keras

    # a real Keras model whose keyword probability grows with the largest MFCC of its window (loud: about 90)
    model = keras.Sequential([keras.Input((49, 10, 1)), keras.layers.GlobalMaxPooling2D(),
                              keras.layers.Dense(3, activation="softmax")])
    model.layers[-1].set_weights([np.array([[0.0, 0.0, 0.1]], np.float32), np.array([0.0, 0.0, -5.0], np.float32)])
    cfg, stream = FeatureConfig(), replace(STREAM, mining_positions=5)
    pool = np.stack([burst_clip(0.0, 0.0), burst_clip(0.0, 0.2), burst_clip(0.4, 0.6)])
    rows, shifts = pool_windows(len(pool), stream, np.random.default_rng(0))
    assert rows.tolist() == [0] * 5 + [1] * 5 + [2] * 5
    assert shifts[:5].tolist() == [-12000, -6000, 0, 6000, 12000] and shifts.tolist() == shifts[:5].tolist() * 3
    some = pool_windows(len(pool), replace(stream, mining_windows=4), np.random.default_rng(0))
    assert len(some[0]) == 4 and len(set(zip(*map(list, some)))) == 4  # a random subset, no window twice

    scores = keyword_scores(model, pool, rows, shifts, np.array([False, False, True]), cfg)
    moved = np.zeros((len(rows), RATE), np.float32)  # shifted by slicing, not by the augmentation code
    for i, (row, shift) in enumerate(zip(rows, shifts)):
        source = pool[row].astype(np.float32) / 32768
        moved[i, max(shift, 0) : RATE + min(shift, 0)] = source[max(-shift, 0) : RATE - max(shift, 0)]
    expected = model.predict(mfcc(moved, cfg)[..., None], verbose=0)[:, 2]
    assert np.allclose(scores, expected, atol=2e-3)
    burst = scores[5:10]  # the early burst: in view unless moved 0.75 s or 0.375 s earlier
    assert burst[2:].min() > 0.9 and burst[:2].max() < 0.1 and scores[:5].max() < 0.1

    chosen, fired = mine(np.array([0.1, 0.9, 0.3, 0.95, 0.5]), threshold=0.5, limit=2)
    assert fired == 3 and chosen.tolist() == [3, 1]
    assert mining_epochs(120, 3) == [30, 60, 90] and mining_epochs(4, 3) == [1, 2, 3] and mining_epochs(1, 3) == []


def test_mined_windows_fill_the_hard_slots_at_the_shift_they_fired_at():
    """Before mining, slots keep the epoch's drawn shift; after it, each slot holds a mined pool clip at the
    shift it fired at, give or take the jitter; the split's own rows keep their drawn shifts."""
    from training.augment import SilenceDraws
    from training.batches import EpochRows
    from training.dataset import Split, SplitAudio

    none = SilenceDraws(*(np.zeros(0, dtype) for dtype in (np.int64, np.int64, np.float32)))
    pool_audio = np.stack([burst_clip(0.1 * k, 0.1 * k + 0.1) for k in range(4)])
    pool = SplitAudio(pool_audio, np.arange(4), none, None, RATE)
    split = Split(SplitAudio(pool_audio[:2], np.arange(2), none, None, RATE), np.array([2, 1]), ["a", "b"],
                  np.zeros(2, bool))
    rows = EpochRows(split, pool, hard_slots=3, unknown=1, keyword_mask=np.array([False, False, True]),
                     streaming=False)
    batch, slot_draws, drawn = np.arange(len(rows)), np.arange(len(rows)) * 7, np.array([100, -100, 9000, -9000, 50])
    assert rows.shifts(batch, slot_draws, drawn, jitter=4000).tolist() == drawn.tolist()
    rows.chosen, rows.chosen_shifts = np.array([3, 1]), np.array([-12000, 6000])
    choice = rows.slot_choices(batch[2:], slot_draws)
    shifts = rows.shifts(batch, slot_draws, drawn, jitter=4000)
    assert shifts[:2].tolist() == [100, -100]  # the split's rows
    assert shifts[2:].tolist() == (rows.chosen_shifts[choice] + np.clip(drawn[2:], -4000, 4000)).tolist()
    assert np.array_equal(rows.audio(batch, slot_draws)[2:], pool_audio[rows.chosen[choice]])
    assert rows.labels(batch).tolist() == [2, 1, 1, 1, 1]


def test_recordings_fill_their_share_of_a_keyword_beside_synthetic_clips():
    """Keyword 2 has 2 recordings and 8 synthetic clips, keyword 3 only recordings, label 1 is unknown: with
    two repeats, keyword 2 keeps its 20 rows but half of them now read its recordings (5 times each, against
    twice before); keyword 3 and the unknown rows appear as they did. Share 0 keeps every clip's own count."""
    from training.batches import extra_appearances

    labels = np.array([1, 2, 2, *[2] * 8, 3, 3, 3])
    synthetic = np.array([False, False, False, *[True] * 8, False, False, False])
    mask = np.array([False, False, True, True])
    extra = extra_appearances(labels, synthetic, mask, repeats=2, recording_share=0.5)
    appearances = extra + 1
    assert appearances[1:3].tolist() == [5, 5] and appearances[3:11].sum() == 10 and appearances[3:11].min() == 1
    assert appearances[0] == 1 and appearances[11:].tolist() == [2, 2, 2]
    assert appearances[labels == 2].sum() == 2 * 10
    assert (extra_appearances(labels, synthetic, mask, 2, 0.0) == np.where(mask[labels], 1, 0)).all()
    assert (extra_appearances(labels, synthetic, mask, 2, 0.1) == np.where(mask[labels], 1, 0)).all()  # 4 of 20 already


def plateau_record(events: list[tuple[float, float]], seconds: float, keyword: int):
    """(ms, int8 scores) every 200 ms: the keyword's probability `value` for 1 s from each event's time."""
    record = []
    for ms in range(0, int(seconds * 1000), 200):
        probability = next((v for t, v in events if t * 1000 <= ms < t * 1000 + 1000), 0.0)
        scores = np.full(len(MANIFEST.labels), -128, np.int8)
        scores[keyword] = round(probability * 256) - 128
        record.append((ms, scores))
    return record


def test_calibration_finds_the_threshold_a_known_det_calls_for():
    """Three keywords at probability 0.9375 and two negative bursts at 0.625 (exact in int8): with no false accept
    allowed the chosen threshold lies above 0.625 and at most 0.9375, the highest such (the most margin)."""
    from host_tools.core import load_core

    keyword = MANIFEST.labels.index(MANIFEST.keywords[0])
    keywords = [scoring.Keyword(t, t + 0.6, MANIFEST.keywords[0]) for t in (10.0, 30.0, 50.0)]
    record = plateau_record([(10.2, 0.9375), (20.0, 0.625), (30.2, 0.9375), (40.0, 0.625), (50.2, 0.9375)], 60.0,
                            keyword)
    core = available(load_core, ARTIFACT)
    points = sweep(core, record, keywords, 60.0, settings_grid(MANIFEST.detection, 200))
    chosen = choose(points, target_fa_per_hour=10.0, seconds=60.0)  # 10/h over a minute allows none
    assert allowed_false_accepts(10.0, 60.0) == 0 and allowed_false_accepts(60.0, 60.0) == 1
    assert chosen["detection_threshold"] == 0.925 and chosen["misses"] == 0 and chosen["false_alarms"] == 0
    lenient = choose(points, target_fa_per_hour=120.0, seconds=60.0)  # two allowed: any threshold that hears all
    assert lenient["misses"] == 0 and lenient["false_alarms"] <= 2
    # averaged over 2 inferences, a burst's 0.625 reaches any threshold up to 0.6: no setting keeps out its alarms
    short = [p for p in points if p["detection_threshold"] <= 0.6 and p["average_window_ms"] == 400]
    with pytest.raises(CalibrationError, match="no recognizer setting keeps to"):
        choose(short, target_fa_per_hour=10.0, seconds=60.0)


def test_a_wake_word_run_exports_its_calibrated_operating_point(mini_set, shared_data, tmp_path):
    firmware = tmp_path / "firmware"
    result = run_module("training.train", "--data-dir", mini_set, "--keywords", "yes", "--epochs", "3",
                        "--negatives", shared_data / "negatives" / "free_spoken_digits_8khz", "--unknown-share", "4",
                        "--validation-minutes", "4", "--target-fa-per-hour", "30", "--out", tmp_path / "run",
                        "--firmware-dir", firmware, "--cache-dir", tmp_path / "cache", timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "mining after epoch" in result.stdout and "operating point" in result.stdout
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    calibration, detection = report["calibration"], report["manifest"]["detection"]
    assert calibration["target_fa_per_hour"] == 30 and calibration["candidate"] in ("best", "last")
    assert {k: calibration["point"][k] for k in detection} == detection  # the chosen point is what is exported
    assert calibration["point"]["false_alarms"] <= allowed_false_accepts(30, calibration["seconds"])
    assert len(calibration["det"]) > 10 and all(p["average_window_ms"] == detection["average_window_ms"]
                                                for p in calibration["det"])
    assert report["training"]["mining"] and report["training"]["stream_windows"] is True
    settings = (firmware / "src" / "generated" / "kws_settings.h").read_text()
    threshold = np.float32(detection["detection_threshold"])
    assert f"#define KWS_DETECTION_THRESHOLD {float(threshold):.9g}" in settings.replace("f\n", "\n")
    assert f"#define KWS_AVERAGE_WINDOW_MS {detection['average_window_ms']}\n" in settings
