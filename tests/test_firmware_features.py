"""The core's streaming MFCC provider and int8 feature window against training.features, on real audio.

Audio goes in as int16 (what the microphone delivers), in odd-sized chunks through the ring
buffer, so these tests prove streaming, not just one-shot frames.
"""
import ctypes

import numpy as np
import pytest

from firmware_build import MANIFEST, core  # noqa: F401  (core is a fixture)
from host_tools.core import float_pointer, stream_features
from training.config import FeatureConfig
from training.data import fit_length, read_audio, to_float, to_int16
from training.features import mfcc, quantize

CFG = FeatureConfig()
SCALE, ZERO_POINT = MANIFEST.input.scale, MANIFEST.input.zero_point
MFCC, FRAMES = MANIFEST.features.n_mfcc, MANIFEST.features.n_frames


@pytest.fixture(scope="module")
def clips(shared_data):
    """39 int16 clips: 31 of the mini set, background noise and negatives at 8, 16 and 22.05 kHz."""
    mini = shared_data / "speech_commands_v0.02_mini"
    negatives = shared_data / "negatives"
    words = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    paths = [path for word in words for path in sorted((mini / word).iterdir())[:3]]
    paths += [sorted((mini / "marvin").iterdir())[0], mini / "_background_noise_" / "running_tap.wav",
              mini / "_background_noise_" / "white_noise.wav"]
    paths += [sorted((negatives / "picovoice_wake_words" / w).iterdir())[0] for w in ("alexa", "computer", "jarvis")]
    paths += sorted((negatives / "free_spoken_digits_8khz").glob("*.wav"))[:2]
    paths += sorted((negatives / "librispeech_ogg").iterdir())[:1]
    clips = []
    for path in paths:
        audio = read_audio(path, CFG.sample_rate)[: 3 * CFG.sample_rate]  # at most 3 s
        clips.append((path.name, to_int16(fit_length(audio, CFG.clip_samples) if len(audio) < CFG.clip_samples else audio)))
    return clips


def quantize_in_window(core, frames: np.ndarray) -> np.ndarray:
    """Every frame through the C feature window; returns the newest row after each push."""
    window = core.FeatureWindow()
    core.feature_window_init(ctypes.byref(window))
    rows = []
    for frame in np.ascontiguousarray(frames, np.float32):
        core.feature_window_push(ctypes.byref(window), float_pointer(frame))
        rows.append(np.frombuffer(window.data, np.int8)[-MFCC:].copy())
    return np.array(rows)


@pytest.fixture(scope="module")
def compared(core, clips):
    """(C float frames, librosa float frames, C int8, Python int8) over all clips."""
    c_float, ref_float, c_int8, ref_int8 = [], [], [], []
    for name, samples in clips:
        ours, overruns = stream_features(core, samples)
        expected = mfcc(to_float(samples))
        assert overruns == 0, name
        assert ours.shape == expected.shape, name
        c_float.append(ours)
        ref_float.append(expected)
        c_int8.append(quantize_in_window(core, ours))
        ref_int8.append(quantize(expected, SCALE, ZERO_POINT))
    return tuple(np.concatenate(parts) for parts in (c_float, ref_float, c_int8, ref_int8))


def test_streamed_float_features_match_training(compared):
    ours, expected, _, _ = compared
    difference = np.abs(ours.astype(np.float64) - expected)
    print(f"\nfloat features, {len(ours)} frames: max |C - librosa| = {difference.max():.3g}, "
          f"mean {difference.mean():.3g}, 99.9th percentile {np.percentile(difference, 99.9):.3g} "
          f"(int8 step = {SCALE:.4g})")
    # float32 kissfft against librosa's float64 FFT: far below one quantization step
    assert difference.max() < SCALE / 20


def test_quantized_features_equal_training_within_one_step(compared):
    _, _, ours, expected = compared
    steps = np.abs(ours.astype(np.int32) - expected)
    identical = float(np.mean(steps == 0))
    print(f"\nint8 features, {ours.size} values: identical {identical:.5%}, max step difference {steps.max()}")
    assert identical >= 0.999
    assert steps.max() <= 1


def test_quantizer_is_bit_equal_to_training(core):
    """Exactly training.features.quantize, including values on the rounding edges and far outside."""
    k = np.arange(-140, 141)
    edges = (k - ZERO_POINT + 0.5).astype(np.float32) * np.float32(SCALE)  # x/scale + 0.5 lands near integers
    values = np.concatenate([
        edges, np.nextafter(edges, np.float32(np.inf)), np.nextafter(edges, np.float32(-np.inf)),
        np.random.default_rng(3).normal(0, 150, 20_000).astype(np.float32),
        np.float32([0.0, -0.0, 1e9, -1e9, 3e38, -3e38]),
    ]).astype(np.float32)
    ours = np.array([core.quantize_feature(float(v)) for v in values], np.int8)
    np.testing.assert_array_equal(ours, quantize(values, SCALE, ZERO_POINT))


def test_window_holds_the_last_frames_oldest_first(core):
    window = core.FeatureWindow()
    core.feature_window_init(ctypes.byref(window))
    # frame t has every value on quantization step t - 60 (in range for t < FRAMES + 20)
    frames = [np.full(MFCC, (t - 60 - ZERO_POINT) * SCALE, np.float32) for t in range(FRAMES + 20)]
    for t, frame in enumerate(frames):
        assert core.feature_window_full(ctypes.byref(window)) == (t >= FRAMES)
        core.feature_window_push(ctypes.byref(window), float_pointer(frame))
    data = np.frombuffer(window.data, np.int8).reshape(FRAMES, MFCC)
    expected = np.arange(20, FRAMES + 20)[:, None] - 60
    np.testing.assert_array_equal(data, np.broadcast_to(expected, (FRAMES, MFCC)))
    assert core.feature_window_full(ctypes.byref(window))


def test_fft_state_fits_its_static_buffer(core):
    assert core.feature_provider_init(core.new("kws_feature_provider")) == 0
    assert core.feature_provider_init(None) == 1
