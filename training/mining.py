"""Hard negatives: windows of negative audio on which the model being trained fires, mined during training.

The pool is every training-split clip that is not a keyword (other words, the training share of the
negatives folders) and windows of the background noise: negative audio the stream will also hold, none of
it from the validation or test splits. A stream shows the device each clip at every position in its 1 s
window, and a word that never fires centred may fire when only its start or end is in view (measured:
the digit "zero" fired at some position in 8 of 16 validation recordings, centred in 2), so each clip is
scored at StreamConfig.mining_positions shifts across the stream's range (at most StreamConfig.mining_windows
windows a round, drawn at random beyond that). A few times during training (StreamConfig.mining_rounds,
evenly spaced) the current model scores those windows; the ones whose keyword probability reaches
StreamConfig.mining_threshold (the highest first, at most as many as an epoch has hard-negative slots)
join those of earlier rounds, which the model forgets otherwise (measured: 84 windows fired after the
second round, 366 after the third when each round replaced the last); from then on every epoch's
hard-negative slots (training/batches.py) are drawn from all of them, each at the shift it fired at (give
or take whole_shift_samples), augmented like every other row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from training.augment import speed_shift
from training.config import FeatureConfig, StreamConfig
from training.data import to_float
from training.features import feature_tables, mfcc_fast

CHUNK = 4096  # windows scored at a time: bounded float audio whatever the pool's size


@dataclass
class MiningRound:
    epoch: int
    windows: int
    fired: int  # windows at or above the threshold
    added: int  # of them, to the mined windows
    mined: int  # windows the hard-negative slots draw from, after this round
    seconds: float


def mining_epochs(epochs: int, rounds: int) -> list[int]:
    """The epochs (1-based) after which to mine: evenly spaced, never after the last."""
    return sorted({max(1, round(epochs * r / (rounds + 1))) for r in range(1, rounds + 1)} - {epochs})


def pool_windows(pool_size: int, stream: StreamConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(pool rows, shifts in samples) of a round's windows: every row at every position, or a random
    `mining_windows` of them."""
    positions = np.linspace(-stream.shift_samples, stream.shift_samples, stream.mining_positions).round().astype(np.int64)
    total = pool_size * len(positions)
    which = np.arange(total) if total <= stream.mining_windows else np.sort(rng.choice(total, stream.mining_windows,
                                                                                       replace=False))
    return which // len(positions), positions[which % len(positions)]


def keyword_scores(model, pool, rows: np.ndarray, shifts: np.ndarray, keyword_mask: np.ndarray,
                   cfg: FeatureConfig) -> np.ndarray:
    """The summed keyword probability of each window: pool row rows[i] moved by shifts[i] samples."""
    tables, scores = feature_tables(cfg), []
    for start in range(0, len(rows), CHUNK):
        chunk = slice(start, start + CHUNK)
        order = np.argsort(rows[chunk], kind="stable")  # ascending reads of the memory map
        audio = np.empty((len(order), cfg.clip_samples), np.int16)
        audio[order] = pool[rows[chunk][order]]
        ones = np.ones(len(order), np.float32)
        moved = speed_shift(to_float(audio), ones, shifts[chunk], ones)
        probabilities = model.predict(mfcc_fast(moved, cfg, tables)[..., np.newaxis], batch_size=1024, verbose=0)
        scores.append(probabilities[:, keyword_mask].sum(axis=1))
    return np.concatenate(scores) if scores else np.zeros(0, np.float32)


def mine(scores: np.ndarray, threshold: float, limit: int) -> tuple[np.ndarray, int]:
    """(indices of the windows to train on as negatives, how many fired): the windows whose keyword score
    reaches `threshold`, highest first, at most `limit`."""
    fired = np.flatnonzero(scores >= threshold)
    return fired[np.argsort(-scores[fired], kind="stable")][:limit], len(fired)


def mining_callback(rows, cfg: FeatureConfig, stream: StreamConfig, seed: int, epochs: list[int],
                    rounds: list[MiningRound]):
    """A Keras callback that mines after each of `epochs` and points `rows.chosen` and `rows.chosen_shifts`
    (training/batches.py EpochRows) at what it found; each round is appended to `rounds`."""
    from training.model import keras

    class Mining(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 not in epochs:
                return
            started = time.monotonic()
            pool_rows, shifts = pool_windows(len(rows.pool), stream, np.random.default_rng([seed, epoch, 7]))
            scores = keyword_scores(self.model, rows.pool, pool_rows, shifts, rows.keyword_mask, cfg)
            chosen, fired = mine(scores, stream.mining_threshold, rows.hard_slots)
            if len(chosen):  # added to what earlier rounds found, which the model would otherwise forget
                found = np.stack([pool_rows[chosen], shifts[chosen]], axis=1)
                if rows.chosen_shifts is not None:
                    found = np.unique(np.concatenate([np.stack([rows.chosen, rows.chosen_shifts], axis=1), found]), axis=0)
                rows.chosen, rows.chosen_shifts = found[:, 0], found[:, 1]
            rounds.append(MiningRound(epoch + 1, len(pool_rows), fired, len(chosen), len(rows.chosen),
                                      time.monotonic() - started))
            print(f"mining after epoch {epoch + 1}: {fired:,} of {len(pool_rows):,} negative windows fire "
                  f"(keyword probability >= {stream.mining_threshold:g}); {len(chosen):,} added, "
                  f"{len(rows.chosen):,} mined in all ({rounds[-1].seconds:.1f} s)", flush=True)

    return Mining()
