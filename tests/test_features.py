"""The MFCC definition, checked against an independent numpy implementation on real clips."""
import numpy as np
import pytest

from training.config import FeatureConfig
from training.data import fit_length, read_audio
from training.features import feature_tables, mfcc, quantize

CFG = FeatureConfig()


def numpy_mfcc(audio: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """The same definition written from the formulas, sharing no code with librosa."""
    n = np.arange(cfg.window_samples)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.window_samples)  # periodic Hann
    count = 1 + (len(audio) - cfg.window_samples) // cfg.hop_samples
    frames = np.stack([audio[t * cfg.hop_samples : t * cfg.hop_samples + cfg.window_samples] for t in range(count)])
    power = np.abs(np.fft.rfft(frames.astype(np.float64) * window, n=cfg.n_fft)) ** 2

    def hz_to_mel(f):  # Slaney: linear below 1 kHz, logarithmic above
        f = np.asarray(f, np.float64)
        log_part = 15 + np.log(np.maximum(f, 1e-9) / 1000) / (np.log(6.4) / 27)
        return np.where(f < 1000, 3 * f / 200, log_part)

    def mel_to_hz(m):
        return np.where(m < 15, 200 * m / 3, 1000 * np.exp((m - 15) * np.log(6.4) / 27))

    edges = mel_to_hz(np.linspace(hz_to_mel(cfg.fmin), hz_to_mel(cfg.fmax), cfg.n_mels + 2))
    freqs = np.arange(cfg.n_bins) * cfg.sample_rate / cfg.n_fft
    bank = np.zeros((cfg.n_mels, cfg.n_bins))
    for b in range(cfg.n_mels):
        lo, mid, hi = edges[b : b + 3]
        rising = (freqs - lo) / (mid - lo)
        falling = (hi - freqs) / (hi - mid)
        bank[b] = np.maximum(0, np.minimum(rising, falling)) * 2 / (hi - lo)
    log_mel = 10 * np.log10(np.maximum(power @ bank.T, cfg.log_floor))
    k, m = np.arange(cfg.n_mfcc)[:, None], np.arange(cfg.n_mels)[None, :]
    dct = np.cos(np.pi * k * (2 * m + 1) / (2 * cfg.n_mels)) * np.sqrt(2 / cfg.n_mels)
    dct[0] /= np.sqrt(2)
    return log_mel @ dct.T


@pytest.fixture(scope="module")
def clips(shared_data):
    mini = shared_data / "speech_commands_v0.02_mini"
    paths = [mini / "yes" / sorted(p.name for p in (mini / "yes").iterdir())[0],
             mini / "stop" / sorted(p.name for p in (mini / "stop").iterdir())[3],
             mini / "_background_noise_" / "running_tap.wav",
             shared_data / "micro_speech_testdata" / "silence_1000ms.wav"]
    return np.stack([fit_length(read_audio(p, CFG.sample_rate), CFG.clip_samples) for p in paths])


def test_geometry_is_hello_edge_and_mlperf_tiny():
    assert (CFG.sample_rate, CFG.window_samples, CFG.hop_samples) == (16000, 640, 320)
    assert (CFG.n_frames, CFG.n_mels, CFG.n_mfcc) == (49, 40, 10)


def test_mfcc_equals_an_independent_numpy_implementation(clips):
    ours = mfcc(clips)
    assert ours.shape == (len(clips), 49, 10) and ours.dtype == np.float32
    reference = np.stack([numpy_mfcc(c, CFG) for c in clips])
    # float32 (librosa) against float64 (numpy): agreement to a small fraction of an int8 step
    np.testing.assert_allclose(ours, reference, atol=2e-3, rtol=1e-4)


def test_device_tables_compute_the_same_features(clips):
    """The firmware's recipe (window, power spectrum, mel, log, DCT from the exported tables) equals `mfcc`."""
    t = feature_tables(CFG)
    for clip, expected in zip(clips, mfcc(clips)):
        frames = np.stack([clip[i * 320 : i * 320 + 640] for i in range(49)]) * t["window"]
        power = np.abs(np.fft.rfft(frames, n=CFG.n_fft)) ** 2
        features = 10 * np.log10(np.maximum(power @ t["mel"].T, CFG.log_floor)) @ t["dct"].T
        np.testing.assert_allclose(features, expected, atol=2e-3, rtol=1e-4)


def test_features_are_streaming_safe(clips):
    """Frames of a long stream equal those of each hop-aligned 1 s window: no centring, no clip-level scaling."""
    stream = clips.reshape(-1)
    whole = mfcc(stream)
    assert whole.shape == (1 + (len(stream) - 640) // 320, 10)
    for start_frame in (0, 17, 50, 100):
        window = stream[start_frame * 320 : start_frame * 320 + CFG.clip_samples]
        np.testing.assert_allclose(mfcc(window), whole[start_frame : start_frame + 49], atol=1e-3)
    # a quiet copy is not renormalised to the loud one: features depend on absolute level
    assert not np.allclose(mfcc(clips[0] * 0.01), mfcc(clips[0]), atol=1.0)


def test_quantize_rounds_half_up_and_saturates():
    x = np.array([0.25, -0.25, 0.74, 1000.0, -1000.0], np.float32)
    np.testing.assert_array_equal(quantize(x, 0.5, -3), [-2, -3, -2, 127, -128])
    assert quantize(x, 0.5, -3).dtype == np.int8


def test_features_do_not_depend_on_the_clips_computed_beside_them(clips):
    """A clip's features are the same computed alone, in a batch or in chunks of another size: a cache built
    in chunks by worker processes equals one built whole."""
    batch = np.concatenate([clips, clips[::-1], clips[:5]])
    whole = mfcc(batch)
    np.testing.assert_array_equal(np.stack([mfcc(clip) for clip in batch[:7]]), whole[:7])
    np.testing.assert_array_equal(np.concatenate([mfcc(batch[i : i + 5]) for i in range(0, len(batch), 5)]), whole)


def test_the_fast_batch_features_are_within_float32_rounding_of_the_definition(clips):
    """training.features.mfcc_fast (the device's tables in float32 FFTs, for augmented training batches) stays
    within a thousandth of a unit of `mfcc`: under a 2000th of the int8 input step (about 2)."""
    from training.features import mfcc_fast

    fast = mfcc_fast(clips, CFG, feature_tables(CFG))
    assert fast.shape == mfcc(clips).shape and fast.dtype == np.float32
    assert np.abs(fast - mfcc(clips)).max() < 1e-3
