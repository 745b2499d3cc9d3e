"""MFCC features: the one definition shared by training and the firmware.

`mfcc` is what training computes (librosa); `feature_tables` are the window,
mel filterbank and DCT matrices the firmware computes the same thing from,
built by the same librosa/scipy calls so the two cannot drift apart.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import librosa
import numpy as np
import scipy.fft

from training.config import FeatureConfig
from training.data import DataError


def mfcc(audio: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """MFCCs of float audio in [-1, 1), shape (..., samples) -> (..., frames, n_mfcc), float32."""
    mel_power = librosa.feature.melspectrogram(
        y=np.asarray(audio, dtype=np.float32),
        sr=cfg.sample_rate,
        n_fft=cfg.n_fft,
        hop_length=cfg.hop_samples,
        win_length=cfg.window_samples,
        window="hann",
        center=False,  # no padding: frame t covers samples [t*hop, t*hop + window)
        power=2.0,
        n_mels=cfg.n_mels,
        fmin=cfg.fmin,
        fmax=cfg.fmax,
        htk=False,
        norm="slaney",
    )
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
    mel = librosa.filters.mel(
        sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, htk=False, norm="slaney"
    )
    dct = scipy.fft.dct(np.eye(cfg.n_mels), type=2, norm="ortho", axis=0)[: cfg.n_mfcc]
    return {
        "window": window.astype(np.float32),
        "mel": mel.astype(np.float32),
        "dct": dct.astype(np.float32),
    }


def quantize(features: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Float features to the model's int8 input: the firmware does exactly this in float32.

    Division (not multiplication by 1/scale) and floor(x + 0.5) keep host and device bit-equal.
    """
    steps = np.floor(np.asarray(features, np.float32) / np.float32(scale) + np.float32(0.5))
    return np.clip(steps + zero_point, -128, 127).astype(np.int8)


def _mfcc_chunk(args):
    audio, cfg = args
    return mfcc(audio, cfg)


_pool: ProcessPoolExecutor | None = None
# Below this many clips one process is faster than warming up librosa in every worker.
PARALLEL_MIN_CLIPS = 8192


def mfcc_parallel(audio: np.ndarray, cfg: FeatureConfig = FeatureConfig()) -> np.ndarray:
    """`mfcc` over a batch of clips (n, samples), split across every core."""
    global _pool
    workers = os.cpu_count() or 1
    if len(audio) < PARALLEL_MIN_CLIPS or workers == 1:
        return mfcc(audio, cfg)
    if _pool is None:  # one pool per process, kept warm for every later epoch
        _pool = ProcessPoolExecutor(workers, mp_context=get_context("forkserver"))
    chunks = np.array_split(audio, max(workers * 4, len(audio) // 1024))
    return np.concatenate(list(_pool.map(_mfcc_chunk, [(chunk, cfg) for chunk in chunks])))


def cached_mfcc(audio: np.ndarray, cfg: FeatureConfig, cache_dir: Path | None) -> np.ndarray:
    """`mfcc_parallel`, cached on disk under a key of the audio bytes and the feature settings."""
    if cache_dir is None:
        return mfcc_parallel(audio, cfg)
    digest = hashlib.sha256(json.dumps(cfg.to_dict(), sort_keys=True).encode())
    digest.update(np.ascontiguousarray(audio).tobytes())
    path = Path(cache_dir) / f"mfcc-{digest.hexdigest()[:24]}.npy"
    expected = (*audio.shape[:-1], cfg.n_frames, cfg.n_mfcc)
    if path.exists():
        try:
            features = np.load(path)
            if features.shape == expected and features.dtype == np.float32:
                return features
        except (OSError, ValueError, EOFError):
            pass
        print(f"feature cache {path} is damaged (not the {expected} float32 array its name promises): rebuilding it",
              file=sys.stderr, flush=True)
    features = mfcc_parallel(audio, cfg)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A temporary name of this writer's own: runs sharing the cache may write the same entry at once.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, features)
        os.replace(tmp, path)
    except OSError as error:
        raise DataError(f"cannot write the feature cache in {path.parent}: {error.strerror} "
                        "(choose a writable --cache-dir)") from None
    return features
