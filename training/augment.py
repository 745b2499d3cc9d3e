"""Augmentation, drawn per epoch and applied per batch: speed, shift, gain, background noise, another word
beside the clip, and (for the wakeword preset) the labels of windows that hold a keyword whole, in part or
not at all, as the device's windows in a stream do.

An epoch's draws are a few numbers per row (`draw_epoch`), made up front from (seed, epoch); a batch applies
them to its own rows only (`augment_rows`), in a worker process, so no step holds the epoch's float audio.
Silence clips are three numbers (a noise recording, an offset, a level) until a batch needs their samples.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from training.config import AugmentConfig, StreamConfig
from training.data import to_float, to_int16

PROFILE_STEP = 160  # samples per step of a speech-energy profile: 10 ms at 16 kHz


@dataclass(frozen=True)
class NoiseBank:
    """The background-noise recordings end to end: a slice of any of them is index arithmetic."""

    samples: np.ndarray  # float32
    starts: np.ndarray  # int64, where each recording begins
    lengths: np.ndarray  # int64

    @classmethod
    def of(cls, noises: list[np.ndarray]) -> NoiseBank:
        lengths = np.array([len(n) for n in noises], np.int64)
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        return cls(np.concatenate(noises).astype(np.float32), starts, lengths)

    def draw(self, count: int, samples: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(recording, offset) of `count` random stretches of `samples` samples."""
        which = rng.integers(len(self.lengths), size=count)
        return which, (rng.random(count) * (self.lengths[which] - samples + 1)).astype(np.int64)

    def slices(self, which: np.ndarray, offsets: np.ndarray, samples: int) -> np.ndarray:
        """float32 (k, samples): `samples` samples of recording which[i] from offsets[i]."""
        return self.samples[(self.starts[which] + offsets)[:, None] + np.arange(samples)]


@dataclass(frozen=True)
class SilenceDraws:
    """Silence clips: stretches of background noise, each scaled to an RMS level drawn in dBFS (its peaks at
    most full scale). A level, not a volume relative to the recording: a microphone hears quiet rooms and
    loud noise alike (Google's canonical test set holds silence from -80 to -10 dBFS), whatever level the
    noise was recorded at."""

    noise: np.ndarray
    offsets: np.ndarray
    levels: np.ndarray  # float32 dBFS

    def __len__(self) -> int:
        return len(self.noise)

    @classmethod
    def draw(cls, count: int, bank: NoiseBank, samples: int, level_dbfs: tuple[float, float],
             rng: np.random.Generator) -> SilenceDraws:
        which, offsets = bank.draw(count, samples, rng)
        return cls(which, offsets, rng.uniform(*level_dbfs, count).astype(np.float32))

    def rows(self, rows: np.ndarray, bank: NoiseBank, samples: int) -> np.ndarray:
        noise = bank.slices(self.noise[rows], self.offsets[rows], samples)
        scale = np.minimum(10 ** (self.levels[rows] / 20) / np.maximum(rms(noise), 1e-9),
                           1 / np.maximum(np.abs(noise).max(axis=1, initial=0), 1e-9))  # peaks at most full scale
        return to_int16(noise * scale[:, None])


@dataclass(frozen=True)
class EpochDraws:
    """One epoch's augmentation of every row: a few numbers a row."""

    speeds: np.ndarray  # float64: read the clip this much faster, about its centre
    shifts: np.ndarray  # int64 samples: later (positive) or earlier
    gains: np.ndarray  # float32
    noise: np.ndarray  # int64 recording, -1 for none
    noise_offsets: np.ndarray
    context: np.ndarray  # int64 row of another word to place beside this one, -1 for none
    context_shifts: np.ndarray  # int64 samples
    context_gains: np.ndarray  # float32, relative
    levels: np.ndarray  # float32 dBFS of the clip's RMS, or NaN: keep the recording's level times `gains`
    snrs: np.ndarray  # float32 dB of the clip (at its level or gain) over its noise

    def take(self, rows: np.ndarray) -> EpochDraws:
        return EpochDraws(*(getattr(self, f.name)[rows] for f in fields(self)))


def draw_epoch(n: int, context_rows: np.ndarray, bank: NoiseBank, samples: int, augment: AugmentConfig,
               stream: StreamConfig | None, rng: np.random.Generator) -> EpochDraws:
    """The draws of n rows. Without `stream`, shifts stay within augment.time_shift_samples and nothing sits
    beside a clip; with it, shifts reach stream.shift_samples and another word (a row of `context_rows`) sits
    beside a clip with stream.context_probability, far enough to leave its centre."""
    shift = stream.shift_samples if stream else augment.time_shift_samples
    whole = rng.random(n) < (stream.whole_probability if stream else 0.0)
    shift = np.where(whole, stream.whole_shift_samples if stream else shift, shift)
    noisy = rng.random(n) < augment.noise_probability
    which, offsets = bank.draw(n, samples, rng)
    with_context = (rng.random(n) < stream.context_probability) & (len(context_rows) > 0) if stream else np.zeros(n, bool)
    context = np.where(with_context, context_rows[rng.integers(max(len(context_rows), 1), size=n)]
                       if len(context_rows) else -1, -1)
    side = np.where(rng.random(n) < 0.5, -1, 1)
    levels = rng.uniform(*stream.level_dbfs, n) if stream else np.full(n, np.nan)
    snrs = rng.uniform(*(stream.snr_db if stream else augment.noise_snr_db), n)
    return EpochDraws(
        speeds=rng.uniform(*augment.speed, n), shifts=rng.integers(-shift, shift + 1),
        gains=(10 ** (rng.uniform(*augment.gain_db, n) / 20)).astype(np.float32),
        noise=np.where(noisy, which, -1), noise_offsets=offsets,
        context=context, context_shifts=(side * rng.uniform(0.6, 1.0, n) * samples).astype(np.int64),
        context_gains=(10 ** (rng.uniform(*(stream.context_gain_db if stream else (0, 0)), n) / 20)).astype(np.float32),
        levels=levels.astype(np.float32), snrs=snrs.astype(np.float32))


def speed_shift(clean: np.ndarray, speeds: np.ndarray, shifts: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Each row read `speed` times faster about its centre (linear interpolation), moved by its shift and
    scaled by its gain; silence where the clip does not reach (np.interp per row: C speed, no big grid)."""
    n, samples = clean.shape
    out = np.zeros_like(clean)
    positions = np.arange(samples, dtype=np.float64)
    for row, source, speed, shift, gain in zip(out, clean, speeds, shifts, gains):
        grid = (positions - shift - samples / 2) * speed + samples / 2
        row[:] = np.interp(grid, positions, source, left=0, right=0) * gain
    return out


def augment_rows(audio: np.ndarray, draws: EpochDraws, bank: NoiseBank, context_audio: np.ndarray | None = None
                 ) -> np.ndarray:
    """int16 (n, samples) and their draws (and the int16 rows their `context` draws name) -> float32."""
    samples, clean = audio.shape[1], to_float(audio)
    clean_rms = np.maximum(rms(clean), 1e-6)
    gains = np.where(np.isnan(draws.levels), draws.gains, 10 ** (draws.levels / 20) / clean_rms)
    out = speed_shift(clean, draws.speeds, draws.shifts, gains.astype(np.float32))
    beside = np.flatnonzero(draws.context >= 0)
    if len(beside):
        out[beside] += speed_shift(to_float(context_audio), np.ones(len(beside)), draws.context_shifts[beside],
                                    (draws.context_gains[beside] * gains[beside]).astype(np.float32))
    noisy = np.flatnonzero(draws.noise >= 0)
    if len(noisy):
        noise = bank.slices(draws.noise[noisy], draws.noise_offsets[noisy], samples)
        level = clean_rms[noisy] * gains[noisy] * 10 ** (-draws.snrs[noisy] / 20)  # the noise's RMS
        out[noisy] += (level / np.maximum(rms(noise), 1e-9))[:, None] * noise
    return np.clip(out, -1.0, 1.0, out=out)


def rms(audio: np.ndarray) -> np.ndarray:
    """RMS of each row of float audio (a dot product per row: no squared copy of the batch)."""
    audio = np.asarray(audio, np.float32)
    return np.sqrt(np.einsum("...i,...i->...", audio, audio) / audio.shape[-1]).astype(np.float32)


def speech_profile(audio: np.ndarray) -> np.ndarray:
    """float32 (n, samples / PROFILE_STEP + 1): each clip's cumulative speech energy per 10 ms, from 0 to 1.

    Speech energy is a step's energy above the clip's own floor (its quietest fifth of steps), so the
    recording's background does not count as the word."""
    n, samples = audio.shape
    steps = to_float(audio)[:, : samples // PROFILE_STEP * PROFILE_STEP].reshape(n, -1, PROFILE_STEP)
    energy = np.square(steps, dtype=np.float64).sum(axis=2)
    speech = np.maximum(energy - np.percentile(energy, 20, axis=1, keepdims=True), 0)
    cumulative = np.concatenate([np.zeros((n, 1)), np.cumsum(speech, axis=1)], axis=1)
    total = cumulative[:, -1:]
    return np.where(total > 0, cumulative / np.where(total > 0, total, 1), np.linspace(0, 1, cumulative.shape[1])
                    ).astype(np.float32)


def visible_fraction(profiles: np.ndarray, speeds: np.ndarray, shifts: np.ndarray, samples: int) -> np.ndarray:
    """The share of each clip's speech energy inside the window after `speed_shift` (linear in time within
    a profile step)."""
    # output position j reads source position (j - shift - samples/2) * speed + samples/2
    low = (-shifts - samples / 2) * speeds + samples / 2
    high = (samples - shifts - samples / 2) * speeds + samples / 2
    grid = np.arange(profiles.shape[1]) * PROFILE_STEP
    at = np.array([[np.interp(lo, grid, p), np.interp(hi, grid, p)] for lo, hi, p in zip(low, high, profiles)])
    return (at[:, 1] - at[:, 0]) if len(at) else np.zeros(0)


def window_labels(labels: np.ndarray, is_keyword: np.ndarray, fractions: np.ndarray, unknown: int,
                  stream: StreamConfig) -> tuple[np.ndarray, np.ndarray]:
    """(labels, sample weights) of keyword windows by the share of the word they hold: whole, the keyword;
    hardly any, unknown; in between, not trained on. Other rows keep their label."""
    keyword = is_keyword[labels]
    out = np.where(keyword & (fractions <= stream.none_fraction), unknown, labels).astype(labels.dtype)
    weights = np.where(keyword & (fractions > stream.none_fraction) & (fractions < stream.full_fraction), 0.0, 1.0)
    return out, weights.astype(np.float32)
