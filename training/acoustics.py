"""Acoustic augmentation for synthetic speech: the room it is spoken in and the board's microphone.

Text-to-speech is dry and full-band, as if spoken into the listener's ear; the board hears a voice
across a room through a small MEMS microphone. Two models, on float32 batches (clips, samples),
every random draw from the caller's np.random.Generator, so a generator state gives the same output:

* Room: an impulse response of exponentially decaying Gaussian noise (Polack's statistical model
  of late reverberation, as in Lehmann & Johansson 2008's fast approximation of the image-source
  method) after a direct-path impulse. The amplitude envelope exp(-6.91 t / RT60) falls 60 dB in
  RT60 seconds; RT60 is drawn from `rt60_range_s` (0.2-0.8 s: furnished rooms to a bare kitchen)
  and the direct-to-reverberant energy ratio from `drr_range_db` (0-12 dB: a few metres away to
  close by). The first reflection arrives 1-10 ms after the direct sound. Not modelled: faster
  decay of high frequencies (air, soft surfaces) and distinct early reflections.
* Microphone: the Nano 33 BLE Sense's MP34DT05-A (Rev1) / MP34DT06JTR (Rev2), read through the
  nRF52840's PDM decimation filter at 16 kHz. ST describes the MP34DT05-A's response as "practically
  flat from 100 Hz to 5 kHz, up to +0.5 dB at 20 kHz" (STEVAL-BCN002V1 user manual, ST); below
  100 Hz a MEMS microphone rolls off through its pressure-equalisation vent. We model a causal
  2nd-order Butterworth high-pass (the vent) with its -3 dB corner drawn from `highpass_range_hz`
  (30-70 Hz, so that 100 Hz is at most 0.93 dB down, "practically flat"; ST gives no corner, the
  range is our assumption) and the decimation filter as an 8th-order Butterworth magnitude with its
  corner drawn from `lowpass_range_hz` (6.6-7.6 kHz; our assumption for a linear-phase decimator,
  whose delay is left out). Between them the response is flat, as ST states: 200 Hz-5 kHz within
  0.06 dB. Out of band it is 7.8-21.8 dB down at 20 Hz, 19.1-33.8 dB at 10 Hz and 4.6-12.7 dB
  at 7.9 kHz (the ends of the ranges; `microphone_response` computes any other point).
  The MFCCs use 20-4000 Hz, so the high-pass is what matters to them.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft

from training.config import AcousticConfig

SAMPLE_RATE = 16000
# workers: scipy.fft threads; 1 by default, as training's other threads share the cores (on this
# 2-core machine, shared, -1 measured no faster: 10,000 clips of reverb in 11.5 s against 6.7 s).
CHUNK = 256  # clips per FFT batch: bounds memory (a 0.8 s room is 12,800 taps per clip)
DECAY_60_DB = np.log(1000.0)  # amplitude falls by 1000 (60 dB) over one RT60


def room_impulse_responses(
    rt60_s: np.ndarray, drr_db: np.ndarray, first_reflection_s: np.ndarray, rng: np.random.Generator,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """(n, taps) float32: a unit direct path, then noise decaying 60 dB per RT60, at the given DRR."""
    rt60_s = np.asarray(rt60_s, np.float64)
    taps = int(np.ceil(rt60_s.max() * sample_rate)) + 1
    t = (np.arange(taps) / sample_rate).astype(np.float32)
    decay = (-DECAY_60_DB / rt60_s[:, None]).astype(np.float32)
    tail = rng.standard_normal((len(rt60_s), taps), dtype=np.float32) * np.exp(decay * t)
    gap = int(np.ceil(np.max(first_reflection_s) * sample_rate)) + 1  # silence before the first reflection
    tail[:, :gap][t[None, :gap] < np.asarray(first_reflection_s)[:, None]] = 0.0
    energy = np.sum(tail.astype(np.float64) ** 2, axis=1, keepdims=True)
    tail *= np.sqrt(10 ** (-np.asarray(drr_db)[:, None] / 10) / np.maximum(energy, 1e-12)).astype(np.float32)
    tail[:, 0] = 1.0
    return tail


def _convolve(audio: np.ndarray, spectra_of: Callable[[np.ndarray, int], np.ndarray], extra: int, workers: int) -> np.ndarray:
    """audio (n, s) filtered by spectra_of(rows, n_fft) -> (len(rows), n_fft//2+1), cut to s samples."""
    samples = audio.shape[1]
    n_fft = scipy.fft.next_fast_len(samples + extra, real=True)
    out = np.empty_like(audio, dtype=np.float32)
    for start in range(0, len(audio), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(audio)))
        spectrum = scipy.fft.rfft(audio[rows], n_fft, axis=1, workers=workers) * spectra_of(rows, n_fft)
        out[rows] = scipy.fft.irfft(spectrum, n_fft, axis=1, workers=workers)[:, :samples]
    return out


def reverberate(
    audio: np.ndarray, rng: np.random.Generator, rt60_range_s: tuple[float, float] = (0.2, 0.8),
    drr_range_db: tuple[float, float] = (0.0, 12.0), first_reflection_range_s: tuple[float, float] = (0.001, 0.01),
    sample_rate: int = SAMPLE_RATE, workers: int = 1,
) -> np.ndarray:
    """Each clip in its own random room, at its own RMS level again; the tail past the clip is cut."""
    audio = np.asarray(audio, np.float32)
    n = len(audio)
    rt60 = rng.uniform(*rt60_range_s, n)
    drr = rng.uniform(*drr_range_db, n)
    first = rng.uniform(*first_reflection_range_s, n)
    taps = int(np.ceil(rt60.max() * sample_rate)) + 1 if n else 1

    def spectra_of(rows: np.ndarray, n_fft: int) -> np.ndarray:  # called chunk by chunk, in order
        ir = room_impulse_responses(rt60[rows], drr[rows], first[rows], rng, sample_rate)
        return scipy.fft.rfft(ir, n_fft, axis=1, workers=workers)

    wet = _convolve(audio, spectra_of, taps, workers)
    before = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=1, keepdims=True))
    after = np.sqrt(np.mean(np.square(wet, dtype=np.float64), axis=1, keepdims=True))
    return (wet * (before / np.maximum(after, 1e-12))).astype(np.float32)


def microphone_response(
    frequencies_hz: np.ndarray, highpass_hz: np.ndarray, lowpass_hz: np.ndarray, lowpass_order: int = 8
) -> np.ndarray:
    """Complex response (n, bins): causal 2nd-order Butterworth high-pass times a zero-phase low-pass."""
    s = 1j * frequencies_hz[None, :] / np.asarray(highpass_hz, np.float64)[:, None]  # s / omega_c
    highpass = s**2 / (s**2 + np.sqrt(2) * s + 1)
    lowpass = 1 / np.sqrt(1 + (frequencies_hz[None, :] / np.asarray(lowpass_hz, np.float64)[:, None]) ** (2 * lowpass_order))
    return highpass * lowpass


def microphone(
    audio: np.ndarray, rng: np.random.Generator, highpass_range_hz: tuple[float, float] = (30.0, 70.0),
    lowpass_range_hz: tuple[float, float] = (6600.0, 7600.0), lowpass_order: int = 8,
    sample_rate: int = SAMPLE_RATE, workers: int = 1,
) -> np.ndarray:
    """Each clip through the board microphone's band limits, corners drawn per clip."""
    audio = np.asarray(audio, np.float32)
    highpass = rng.uniform(*highpass_range_hz, len(audio))
    lowpass = rng.uniform(*lowpass_range_hz, len(audio))
    settle = int(sample_rate * 8 / (2 * np.pi * highpass_range_hz[0]))  # the high-pass rings ~8 time constants

    def spectra_of(rows: np.ndarray, n_fft: int) -> np.ndarray:
        frequencies = np.fft.rfftfreq(n_fft, 1 / sample_rate)
        return microphone_response(frequencies, highpass[rows], lowpass[rows], lowpass_order).astype(np.complex64)

    return _convolve(audio, spectra_of, settle, workers)


def augment(audio: np.ndarray, rng: np.random.Generator, cfg: AcousticConfig = AcousticConfig(), workers: int = 1) -> np.ndarray:
    """A room with probability cfg.reverb_probability, then the microphone with its probability."""
    out = np.array(audio, np.float32, copy=True)
    in_room = rng.random(len(out)) < cfg.reverb_probability
    through_mic = rng.random(len(out)) < cfg.microphone_probability
    if in_room.any():
        out[in_room] = reverberate(out[in_room], rng, cfg.rt60_range_s, cfg.drr_range_db, cfg.first_reflection_range_s,
                                   workers=workers)
    if through_mic.any():
        out[through_mic] = microphone(out[through_mic], rng, cfg.highpass_range_hz, cfg.lowpass_range_hz, cfg.lowpass_order,
                                      workers=workers)
    return out
