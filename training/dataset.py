"""The splits training and evaluation see, without holding their audio.

    dataset = load_dataset(data_dir, labels, cfg, cache_dir, shares=..., seed=1)
    dataset.splits["training"].audio[rows]      # int16 rows, read from the memory-mapped audio cache
    dataset.features("validation")              # training.features.mfcc of the clean clips, cached

Planning (which files, which labels, which silence) decodes nothing, and every check on the user's data
comes first; then every file is decoded once into an on-disk audio cache (training/audio_cache.py) that
any later run, preset, seed or share reuses. A split is rows of that cache plus silence clips, which are
three numbers each until a batch needs their samples (training/augment.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training.audio_cache import AudioCache, open_audio_cache, open_feature_cache
from training.augment import NoiseBank, SilenceDraws
from training.config import BACKGROUND_NOISE_DIR, SILENCE, UNKNOWN, FeatureConfig, TrainConfig
from training.data import (SPLITS, DataError, audio_in, is_synthetic, list_words, read_background_noise, read_list,
                           split_negatives, split_of, synthetic_split, to_float)


@dataclass
class SplitAudio:
    """A split's int16 clips: rows of the (memory-mapped) cache, then the silence clips, cut on demand."""

    audio: np.ndarray  # int16 (n, samples)
    rows: np.ndarray  # which rows of `audio`, in split order
    silence: SilenceDraws
    bank: NoiseBank
    samples: int

    def __len__(self) -> int:
        return len(self.rows) + len(self.silence)

    def __getitem__(self, index) -> np.ndarray:
        index = np.arange(len(self))[index]
        out = np.empty((len(index), self.samples), np.int16)
        cached = index < len(self.rows)
        if cached.any():
            wanted = self.rows[index[cached]]
            order = np.argsort(wanted)  # ascending reads of the memory map
            block = np.empty((len(wanted), self.samples), np.int16)
            block[order] = self.audio[wanted[order]]
            out[cached] = block
        if (~cached).any():
            out[~cached] = self.silence.rows(index[~cached] - len(self.rows), self.bank, self.samples)
        return out


@dataclass
class Split:
    """A split ready for training: `audio[i]` (int16) has label `labels[i]`."""

    audio: SplitAudio
    labels: np.ndarray
    sources: list[str]
    synthetic: np.ndarray  # bool: a text-to-speech clip (training.synthesize), given a room and a microphone
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, label_names: list[str]) -> dict[str, int]:
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(label_names)}


@dataclass
class Plan:
    """A split's files and labels, and its silence clips as draws: no audio yet."""

    items: list[tuple[Path, int]]
    silence: SilenceDraws
    silence_label: int
    every_file: list[Path]  # of the dataset: one audio cache of them all serves any preset, seed or share


@dataclass
class Dataset:
    splits: dict[str, Split]
    bank: NoiseBank
    audio: AudioCache
    cfg: FeatureConfig
    cache_dir: Path
    _features: np.ndarray | None = None

    def features(self, split: str, rows: np.ndarray | None = None) -> np.ndarray:
        """training.features.mfcc of a split's clean clips (or its `rows`), float32 (n, frames, n_mfcc): the
        cached files' rows of one feature cache of the whole audio cache, and the silence clips computed."""
        from training.features import mfcc

        if self._features is None:
            self._features = open_feature_cache(self.audio, self.cfg, self.cache_dir / "features")
        part = self.splits[split].audio
        rows = np.arange(len(part)) if rows is None else np.asarray(rows)
        out = np.empty((len(rows), self.cfg.n_frames, self.cfg.n_mfcc), np.float32)
        cached = rows < len(part.rows)
        wanted = part.rows[rows[cached]]
        order = np.argsort(wanted)
        block = np.empty((len(wanted), self.cfg.n_frames, self.cfg.n_mfcc), np.float32)
        block[order] = self._features[wanted[order]]
        out[cached] = block
        silence = np.flatnonzero(~cached)
        for start in range(0, len(silence), 1024):  # bounded float audio, whatever the split's size
            chunk = silence[start : start + 1024]
            out[chunk] = mfcc(to_float(part[rows[chunk]]), self.cfg)
        return out


def _check_keywords(words: dict[str, list[Path]], keywords: list[str], data_dir: Path,
                    synthetic: dict[str, list[Path]]) -> None:
    for keyword in keywords:
        if not words.get(keyword) and not synthetic.get(keyword):
            state = "is an empty folder" if keyword in words else "is not a word folder"
            raise DataError(f"keyword {keyword!r} {state} in {data_dir}; words with clips: "
                            f"{', '.join(w for w in words if words[w])} (or train on synthetic clips of it: "
                            "--synthetic-positives)")


def _synthetic_items(folders: list[Path], labels: list[str]) -> dict[str, list[tuple[Path, int]]]:
    """Clips written by training.synthesize, by split (training.data.synthetic_split): a phrase that is a
    keyword keeps its label, any other (a near miss) is unknown."""
    items: dict[str, list[tuple[Path, int]]] = {split: [] for split in SPLITS}
    for folder in map(Path, folders):
        for phrase, files in list_words(folder).items():
            label = labels.index(phrase) if phrase in labels else labels.index(UNKNOWN)
            for path in filter(is_synthetic, files):
                items[synthetic_split(path)].append((path, label))
    return items


def plan_splits(data_dir: Path, labels: list[str], cfg: FeatureConfig, silence_share: float = 0.1,
                unknown_share: float = 0.1, seed: int = 1, splits: tuple[str, ...] = SPLITS,
                limit_per_label: int | None = None, negatives: list[Path] = (), synthetic: list[Path] = (),
                real_positives: bool = True, silence_dbfs: tuple[float, float] = TrainConfig.silence_dbfs
                ) -> tuple[dict[str, Plan], NoiseBank]:
    """The official split of a full-layout dataset, with unknown clips (other words, and each negatives
    folder's share of the split: training.data.negatives_split) and silence clips added to each split; and,
    when `splits` names it, "mining": every training-split negative and background-noise windows.

    `synthetic` folders (training.synthesize) add their keyword clips and, as unknown, every near miss to the
    training and validation splits; without `real_positives` those splits hold no recorded keyword clip.
    The testing split is always real recordings only."""
    data_dir = Path(data_dir)
    words = list_words(data_dir)
    validation, testing = read_list(data_dir / "validation_list.txt"), read_list(data_dir / "testing_list.txt")
    keywords = [label for label in labels if label not in (SILENCE, UNKNOWN)]
    made = _synthetic_items(synthetic, labels)
    _check_keywords(words, keywords, data_dir, {labels[k]: [p] for items in made.values() for p, k in items})
    bank = NoiseBank.of(read_background_noise(data_dir, cfg))
    chosen: dict[str, list[tuple[Path, int]]] = {split: [] for split in SPLITS}
    others: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for word, files in words.items():
        for path in files:
            split = split_of(f"{word}/{path.name}", validation, testing)
            (chosen[split].append((path, labels.index(word))) if word in keywords else others[split].append(path))
    for folder in map(Path, negatives):
        for split in SPLITS:
            others[split] += split_negatives(folder, split)
    near_misses = {split: [(p, k) for p, k in made[split] if labels[k] == UNKNOWN] for split in SPLITS}
    for split in ("training", "validation"):
        chosen[split] = [*(chosen[split] if real_positives else []), *((p, k) for p, k in made[split] if labels[k] != UNKNOWN)]
    every_file = sorted({*(p for files in words.values() for p in files), *(p for o in others.values() for p in o),
                         *(p for items in made.values() for p, _ in items)})
    plans = {}
    if "mining" in splits:  # every training negative, and stretches of background noise: training/mining.py
        rng = np.random.default_rng([seed, len(SPLITS)])
        background = SilenceDraws.draw(max(64, len(others["training"]) // 10), bank, cfg.clip_samples, silence_dbfs,
                                        rng)
        plans["mining"] = Plan([(p, labels.index(UNKNOWN)) for p in others["training"]] + near_misses["training"],
                               background, labels.index(UNKNOWN), every_file)
    for split in (s for s in splits if s != "mining"):
        rng = np.random.default_rng([seed, SPLITS.index(split)])  # a split's picks never depend on the others
        keyword_items = chosen[split]
        if limit_per_label:  # a small slice, for quick runs and tests
            keyword_items = [i for k in range(len(labels)) for i in [i for i in keyword_items if i[1] == k][:limit_per_label]]
        if not keyword_items and not (split == "testing" and synthetic):
            raise DataError(f"{data_dir}: the {split} split has no clips of {', '.join(keywords)}")
        # a phrase with no recording (trained on synthetic clips) is tested on as many negatives as its
        # validation split has keyword clips: the test figures are then of false accepts only
        base = len(keyword_items) or len(chosen["validation"])
        n_unknown = min(math.ceil(unknown_share * base), len(others[split]))
        unknown = [others[split][i] for i in sorted(rng.choice(len(others[split]), n_unknown, replace=False))]
        silence = SilenceDraws.draw(math.ceil(silence_share * base), bank, cfg.clip_samples, silence_dbfs, rng)
        plans[split] = Plan(keyword_items + [(p, labels.index(UNKNOWN)) for p in unknown] + near_misses[split], silence,
                            labels.index(SILENCE), every_file)
    return plans, bank


def plan_test_set(test_dir: Path, labels: list[str]) -> Plan:
    """Google's canonical test-set layout: one folder per label, including _silence_ and _unknown_.

    A clip of a word that is not one of `labels` counts as unknown; files in _unknown_ are named
    <word>_<speaker>_nohash_<n>.wav, so a keyword among them keeps its label."""
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise DataError(f"test set directory {test_dir} does not exist")
    items = []
    for folder in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        for path in audio_in(folder):
            word = SILENCE if folder.name == SILENCE else path.name.split("_")[0] if folder.name == UNKNOWN else folder.name
            items.append((path, labels.index(word) if word in labels else labels.index(UNKNOWN)))
    if not items:
        raise DataError(f"{test_dir} has no audio in label folders (expected {SILENCE}/, {UNKNOWN}/, yes/, ...)")
    missing = [labels[k] for k in range(len(labels)) if k not in {k for _, k in items}]
    if missing:
        raise DataError(f"{test_dir} has no clips of {', '.join(missing)}")
    no_silence = SilenceDraws(*(np.zeros(0, dtype) for dtype in (np.int64, np.int64, np.float32)))
    return Plan(items, no_silence, 0, sorted(path for path, _ in items))


def open_splits(plans: dict[str, Plan], bank: NoiseBank, cfg: FeatureConfig, cache_dir: Path,
                skip_bad: bool = False) -> Dataset:
    """Each planned split over one audio cache of all their files. Only a bad file a split uses matters: an
    error naming it, or with `skip_bad` left out of its split and listed in `skipped`."""
    files = sorted({str(path) for plan in plans.values() for path in plan.every_file})
    cache = open_audio_cache([Path(f) for f in files], cfg, Path(cache_dir) / "audio", skip_bad=True)
    row_of = {files[i]: row for row, i in enumerate(cache.kept)}
    error_of = dict(zip((files[i] for i in np.setdiff1d(np.arange(len(files)), cache.kept)), cache.errors))
    used = [error_of[str(p)] for plan in plans.values() for p, _ in plan.items if str(p) in error_of]
    if used and not skip_bad:
        more = f" (and {len(used) - 1} more bad files)" if len(used) > 1 else ""
        raise DataError(f"{used[0]}{more}; pass --skip-bad-audio to skip and count them")
    splits = {}
    for name, plan in plans.items():
        kept = [(p, k) for p, k in plan.items if str(p) in row_of]
        n_silence = len(plan.silence)
        splits[name] = Split(
            audio=SplitAudio(cache.audio, np.array([row_of[str(p)] for p, _ in kept], np.int64), plan.silence, bank,
                             cfg.clip_samples),
            labels=np.array([k for _, k in kept] + [plan.silence_label] * n_silence, np.int32),
            sources=[str(p) for p, _ in kept] + [f"{BACKGROUND_NOISE_DIR} (silence)"] * n_silence,
            synthetic=np.array([is_synthetic(p) for p, _ in kept] + [False] * n_silence, bool),
            skipped=[error_of[str(p)] for p, _ in plan.items if str(p) in error_of])
    return Dataset(splits, bank, cache, cfg, Path(cache_dir))


def load_dataset(data_dir: Path, labels: list[str], cfg: FeatureConfig, cache_dir: Path, silence_share: float = 0.1,
                 unknown_share: float = 0.1, seed: int = 1, skip_bad: bool = False, splits: tuple[str, ...] = SPLITS,
                 limit_per_label: int | None = None, negatives: list[Path] = (), synthetic: list[Path] = (),
                 real_positives: bool = True, silence_dbfs: tuple[float, float] = TrainConfig.silence_dbfs
                 ) -> Dataset:
    plans, bank = plan_splits(data_dir, labels, cfg, silence_share, unknown_share, seed, splits, limit_per_label,
                              negatives, synthetic, real_positives, silence_dbfs)
    return open_splits(plans, bank, cfg, cache_dir, skip_bad)


def load_test_set(test_dir: Path, labels: list[str], cfg: FeatureConfig, cache_dir: Path, bank: NoiseBank,
                  skip_bad: bool = False) -> Dataset:
    """A canonical test set as a Dataset with one split, "testing"."""
    return open_splits({"testing": plan_test_set(test_dir, labels)}, bank, cfg, cache_dir, skip_bad)
