"""Training batches made on demand: augmentation and MFCC per batch, in worker processes, overlapping Keras.

Each epoch trains on the training split's rows and, for the wakeword preset, a fixed number of slots for
hard negatives (training/mining.py fills them as training goes; until the first round, with random
windows of the same negative audio). Epoch e's draws and order come from default_rng([seed, e]) and are
made up front (a few numbers a row); a batch reads its int16 rows (memory-mapped), augments them
(training/augment.py) and computes their MFCCs (training.features.mfcc_fast) in a worker, so no step
holds the epoch's float audio.
"""
from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np

from training.augment import (EpochDraws, NoiseBank, augment_rows, draw_epoch, speech_profile, visible_fraction,
                              window_labels)
from training.acoustics import augment as room_and_microphone
from training.config import FeatureConfig, TrainConfig
from training.data import to_float, to_int16
from training.features import feature_tables, mfcc_fast

_limited_pid = None


def _one_blas_thread() -> None:
    """In a forked worker numpy's BLAS keeps the parent's thread pool, whose threads spin while idle: with
    Keras' threads beside them they took twice the CPU for the same batches (measured, issue 10)."""
    global _limited_pid
    if _limited_pid != os.getpid():
        from threadpoolctl import threadpool_limits  # a dependency of ours (pyproject.toml)

        threadpool_limits(1)
        _limited_pid = os.getpid()


def spread(total: int, rows: int) -> np.ndarray:
    """`total` split as evenly as whole numbers allow over `rows` rows, the first ones getting the remainder."""
    return total // rows + (np.arange(rows) < total % rows)


def extra_appearances(labels: np.ndarray, synthetic: np.ndarray, keyword_mask: np.ndarray, repeats: int,
                      recording_share: float) -> np.ndarray:
    """How many more times than once each split row appears in an epoch: a keyword's clips `repeats` times in
    all, except that a keyword with synthetic clips too draws at least `recording_share` of its rows from its
    recordings (and as many fewer from its synthetic clips): otherwise a few recordings beside hundreds of
    synthetic clips would barely count."""
    extra = np.where(keyword_mask[labels], repeats - 1, 0)
    for label in np.flatnonzero(keyword_mask):
        own = labels == label
        real, fake = np.flatnonzero(own & ~synthetic), np.flatnonzero(own & synthetic)
        rows = repeats * (len(real) + len(fake))
        if len(real) and len(fake) and recording_share * rows > repeats * len(real):
            real_rows = round(recording_share * rows)
            extra[real] = spread(real_rows - len(real), len(real))
            extra[fake] = spread(max(rows - real_rows - len(fake), 0), len(fake))
    return extra


class EpochRows:
    """What an epoch trains on: the split's rows, its keyword rows again (extra_appearances), then `hard_slots`
    rows of negative audio (`pool`), each slot drawn from `chosen` (the mined windows, or the whole pool before
    the first round) at its `chosen_shifts` (where it fired; before the first round, the epoch's random shift)."""

    def __init__(self, split, pool, hard_slots: int, unknown: int, keyword_mask: np.ndarray, streaming: bool,
                 keyword_repeats: int = 1, recording_share: float = 0.0):
        self.split, self.pool, self.hard_slots, self.unknown = split, pool, hard_slots, unknown
        self.keyword_mask = keyword_mask
        self.chosen = np.arange(len(pool)) if pool is not None else np.zeros(0, np.int64)
        self.chosen_shifts: np.ndarray | None = None
        keyword_rows = np.flatnonzero(keyword_mask[split.labels])
        extra = extra_appearances(split.labels, split.synthetic, keyword_mask, keyword_repeats, recording_share)
        self.source = np.concatenate([np.arange(len(split)), *(np.flatnonzero(extra > k) for k in range(extra.max(initial=0)))])
        # the speech-energy profile of every keyword clip, for the labels of stream windows
        self.profiles = {}
        if streaming:
            for start in range(0, len(keyword_rows), 4096):
                rows = keyword_rows[start : start + 4096]
                self.profiles.update(zip(rows.tolist(), speech_profile(split.audio[rows])))
        self.context_rows = np.flatnonzero(split.labels == unknown)

    def __len__(self) -> int:
        return len(self.source) + self.hard_slots

    def split_rows(self, rows: np.ndarray) -> np.ndarray:
        """The split row of each epoch row, -1 for a hard-negative slot."""
        return np.where(rows < len(self.source), self.source[np.minimum(rows, len(self.source) - 1)], -1)

    def slot_choices(self, rows: np.ndarray, slot_draws: np.ndarray) -> np.ndarray:
        """For hard-negative slot rows: which of `chosen` each holds this epoch."""
        return slot_draws[rows - len(self.source)] % len(self.chosen)

    def audio(self, rows: np.ndarray, slot_draws: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.split.audio.samples), np.int16)
        own = self.split_rows(rows)
        if (own >= 0).any():
            out[own >= 0] = self.split.audio[own[own >= 0]]
        if (own < 0).any():
            out[own < 0] = self.pool[self.chosen[self.slot_choices(rows[own < 0], slot_draws)]]
        return out

    def shifts(self, rows: np.ndarray, slot_draws: np.ndarray, drawn: np.ndarray, jitter: int) -> np.ndarray:
        """The epoch's drawn shifts, except that a mined slot sits where it fired, give or take `jitter`."""
        slot = self.split_rows(rows) < 0
        if self.chosen_shifts is None or not slot.any():
            return drawn
        out = drawn.copy()
        out[slot] = self.chosen_shifts[self.slot_choices(rows[slot], slot_draws)] + np.clip(drawn[slot], -jitter, jitter)
        return out

    def synthetic(self, rows: np.ndarray) -> np.ndarray:
        """Which rows are text-to-speech clips (hard-negative slots count as recordings)."""
        own = self.split_rows(rows)
        return (own >= 0) & self.split.synthetic[np.maximum(own, 0)]

    def labels(self, rows: np.ndarray) -> np.ndarray:
        own = self.split_rows(rows)
        return np.where(own >= 0, self.split.labels[np.maximum(own, 0)], self.unknown)


def training_batches(rows: EpochRows, bank: NoiseBank, train_cfg: TrainConfig, cfg: FeatureConfig, workers: int):
    """A keras.utils.PyDataset of (MFCC (b, frames, n_mfcc, 1), labels (b,), sample weights (b,)) batches."""
    from training.model import keras

    tables = feature_tables(cfg)
    stream = train_cfg.stream if train_cfg.stream.enabled else None

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__(workers=workers, use_multiprocessing=workers > 1, max_queue_size=8)
            self.epoch = 0
            self._draw()

        def _draw(self):
            # Workers are forked when an epoch starts, so they see this epoch's draws (a few bytes a row).
            rng = np.random.default_rng([train_cfg.seed, self.epoch])
            self.draws = draw_epoch(len(rows), rows.context_rows, bank, cfg.clip_samples, train_cfg.augment, stream, rng)
            self.slots = rng.integers(1 << 62, size=len(rows))
            self.order = rng.permutation(len(rows))

        def __len__(self):
            return math.ceil(len(rows) / train_cfg.batch_size)

        def __getitem__(self, i):
            if workers > 1:
                _one_blas_thread()
            batch = self.order[i * train_cfg.batch_size : (i + 1) * train_cfg.batch_size]
            rng = np.random.default_rng([train_cfg.seed, self.epoch, i])
            return make_batch(rows, batch, self.draws.take(batch), self.slots, bank, cfg, tables, stream,
                              train_cfg.acoustics, rng)

        def on_epoch_end(self):
            self.epoch += 1
            self._draw()

    return Batches()


def make_batch(rows: EpochRows, batch: np.ndarray, draws: EpochDraws, slots: np.ndarray, bank: NoiseBank,
               cfg: FeatureConfig, tables: dict, stream, acoustics=None, rng: np.random.Generator | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch: its rows' audio (synthetic ones first in a room and through the board's microphone, with
    `acoustics`) augmented by their draws, MFCCs, labels and sample weights."""
    context = draws.context[draws.context >= 0]
    if stream is not None:
        draws = replace(draws, shifts=rows.shifts(batch, slots, draws.shifts, stream.whole_shift_samples))
    clips = rows.audio(batch, slots)
    synthetic = rows.synthetic(batch) if acoustics is not None else np.zeros(len(batch), bool)
    if synthetic.any():
        clips[synthetic] = to_int16(room_and_microphone(to_float(clips[synthetic]), rng, acoustics))
    audio = augment_rows(clips, draws, bank, rows.split.audio[context] if len(context) else None)
    labels, weights = rows.labels(batch), np.ones(len(batch), np.float32)
    if stream is not None:
        own = rows.split_rows(batch)
        keyword = np.flatnonzero([int(row) in rows.profiles for row in own])
        fractions = np.ones(len(batch))
        if len(keyword):
            profiles = np.stack([rows.profiles[int(row)] for row in own[keyword]])
            fractions[keyword] = visible_fraction(profiles, draws.speeds[keyword], draws.shifts[keyword], cfg.clip_samples)
        labels, weights = window_labels(labels, rows.keyword_mask, fractions, rows.unknown, stream)
    return mfcc_fast(audio, cfg, tables)[..., np.newaxis], labels, weights
