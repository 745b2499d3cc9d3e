"""MFCC features: the one definition shared by training and the firmware.

`mfcc` is what training computes (librosa's STFT, mel filterbank, power_to_db and DCT); `feature_tables`
are the window, mel filterbank and DCT matrices the firmware computes the same thing from, built by the
same librosa/scipy calls so the two cannot drift apart. `mfcc` is batch-invariant: a clip's features do
not depend on the clips computed beside it (a cache built in chunks equals one built whole).
`mfcc_fast` computes the same from the device's tables in float32, within float32 rounding of `mfcc`,
for the augmented batches of training, where its 2x speed counts and bit-equality does not.
"""
from __future__ import annotations

import librosa
import numpy as np
import scipy.fft

from training.config import FeatureConfig


def _mel_basis(cfg: FeatureConfig) -> np.ndarray:
    return librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax,
                               htk=False, norm="slaney")


def mfcc(audio: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """MFCCs of float audio in [-1, 1), shape (..., samples) -> (..., frames, n_mfcc), float32."""
    power = np.abs(librosa.stft(np.asarray(audio, dtype=np.float32), n_fft=cfg.n_fft, hop_length=cfg.hop_samples,
                                win_length=cfg.window_samples, window="hann",
                                center=False)) ** 2  # no padding: frame t covers samples [t*hop, t*hop + window)
    # One matrix product per clip (matmul over the stack): BLAS never sees a batch-sized matrix, whose
    # blocking would change the rounding with the number of clips computed together.
    mel_power = np.swapaxes(np.matmul(np.ascontiguousarray(np.swapaxes(power, -1, -2)),
                                      np.ascontiguousarray(_mel_basis(cfg).T)), -1, -2)
    # Absolute floor, no top_db: top_db would clip relative to the clip's own peak.
    log_mel = librosa.power_to_db(mel_power, ref=1.0, amin=cfg.log_floor, top_db=None)
    coefficients = librosa.feature.mfcc(S=log_mel, n_mfcc=cfg.n_mfcc, dct_type=2, norm="ortho")
    return np.swapaxes(coefficients, -1, -2).astype(np.float32)


def feature_tables(cfg: FeatureConfig = FeatureConfig()) -> dict[str, np.ndarray]:
    """The tables the device computes `mfcc` from, frame by frame.

    frame (window_samples) * window -> |rfft(n_fft)|^2 -> mel (n_mels x n_bins)
    -> 10*log10(max(., log_floor)) -> dct (n_mfcc x n_mels).
    """
    window = librosa.filters.get_window("hann", cfg.window_samples, fftbins=True)
    dct = scipy.fft.dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[: cfg.n_mfcc]
    return {
        "window": window.astype(np.float32),
        "mel": _mel_basis(cfg).astype(np.float32),
        "dct": dct.astype(np.float32),
    }


def mfcc_fast(audio: np.ndarray, cfg: FeatureConfig, tables: dict[str, np.ndarray]) -> np.ndarray:
    """`mfcc` of float32 (n, samples) from the device's `tables` (feature_tables(cfg)) in float32 FFTs: within
    float32 rounding of `mfcc` (tests/test_features.py), for augmented training batches only."""
    frames = np.lib.stride_tricks.sliding_window_view(np.asarray(audio, np.float32), cfg.window_samples, axis=-1)
    frames = frames[..., :: cfg.hop_samples, :][..., : cfg.n_frames, :]
    spectrum = scipy.fft.rfft(frames * tables["window"], n=cfg.n_fft, axis=-1)
    power = spectrum.real**2 + spectrum.imag**2
    mel = power @ np.ascontiguousarray(tables["mel"].T)
    log_mel = 10.0 * np.log10(np.maximum(np.float32(cfg.log_floor), mel))
    return (log_mel @ np.ascontiguousarray(tables["dct"].T)).astype(np.float32)


def quantize(features: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float features to the model's int8 input: the firmware does exactly this in float32.

    Division (not multiplication by 1/scale) and floor(x + 0.5) keep host and device bit-equal.
    """
    steps = np.floor(np.asarray(features, np.float32) / np.float32(scale) + np.float32(0.5))
    return np.clip(steps + zero_point, -128, 127).astype(np.int8)
