"""Speech Commands: audio reading, the official split, silence and unknown clips, augmentation.
(Downloads: training/download.py.)"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from training.config import BACKGROUND_NOISE_DIR, SILENCE, UNKNOWN, AugmentConfig, FeatureConfig

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")


class DataError(ValueError):
    """A problem with the user's data, stated in terms of the user's files."""


# ---------------------------------------------------------------- audio


def _audio_in(folder: Path, recursive: bool = False) -> list[Path]:
    try:
        candidates = folder.rglob("*") if recursive else folder.iterdir()
        return sorted(p for p in candidates if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    except OSError as error:
        raise DataError(f"{folder}: cannot list it: {error.strerror}") from None


def audio_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The WAV/FLAC/Ogg files of a folder (and below it, when `recursive`), sorted; DataError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder of audio files")
    files = _audio_in(folder, recursive)
    if not files:
        raise DataError(f"{folder}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in it" + (" or below it" if recursive else ""))
    return files


def audio_blocks(path: Path, sample_rate: int, block_samples: int = 1 << 16) -> Iterator[np.ndarray]:
    """Any WAV, FLAC or Ogg file as mono float32 blocks at `sample_rate`, read, mixed down and resampled
    (soxr, high quality) in bounded memory; the blocks joined equal `read_audio` exactly. Errors, also
    ones found hours into a file, are DataError naming the file."""
    import soxr

    try:
        with soundfile.SoundFile(str(path)) as f:
            rate, heard, sent = f.samplerate, 0, 0
            resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ") if rate != sample_rate else None
            while True:
                block = f.read(block_samples, dtype="float32", always_2d=True).mean(axis=1)
                heard += len(block)
                if not np.all(np.isfinite(block)):
                    raise DataError(f"{path}: contains NaN or infinite samples")
                last = len(block) == 0
                if resampler is not None:
                    block = resampler.resample_chunk(block, last=last)
                    if last:  # as librosa.resample's fix_length: exactly ceil(input * ratio) samples
                        wanted = math.ceil(heard * sample_rate / rate)
                        block = np.pad(block, (0, max(0, wanted - sent - len(block))))[: max(0, wanted - sent)]
                sent += len(block)
                if len(block):
                    yield np.clip(block, -1.0, 32767 / 32768).astype(np.float32)
                if last:
                    break
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read audio: {error}") from None
    if heard == 0:
        raise DataError(f"{path}: contains no audio samples")


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Any WAV, FLAC or Ogg file as mono float32 at `sample_rate`; errors name the file."""
    return np.concatenate(list(audio_blocks(path, sample_rate)))


def fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """Pad a short clip with silence at the end; crop a long one to its loudest window."""
    if len(audio) < samples:
        return np.pad(audio, (0, samples - len(audio)))
    if len(audio) > samples:
        energy = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
        start = int(np.argmax(energy[samples:] - energy[:-samples]))
        return audio[start : start + samples]
    return audio


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(audio) * 32768).clip(-32768, 32767).astype(np.int16)


def to_float(audio: np.ndarray) -> np.ndarray:
    return (np.asarray(audio, np.float32) / 32768).astype(np.float32)


def _read_clip(args):
    path, cfg = args
    try:
        return to_int16(fit_length(read_audio(path, cfg.sample_rate), cfg.clip_samples)), None
    except DataError as error:
        return None, str(error)


@dataclass
class Clips:
    """Decoded 1-second clips as int16 (n, samples), with integer labels and their sources."""

    audio: np.ndarray
    labels: np.ndarray
    sources: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self, label_names: list[str]) -> dict[str, int]:
        return {name: int(np.sum(self.labels == i)) for i, name in enumerate(label_names)}


def read_clips(paths: list[Path], cfg: FeatureConfig, skip_bad: bool = False) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode files on every core: (int16 audio, indices kept, error messages of skipped files).

    Threads, not processes: libsndfile and soxr release the GIL, and threads need no `__main__` guard.
    """
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        results = list(pool.map(_read_clip, [(p, cfg) for p in paths]))
    errors = [error for _, error in results if error]
    if errors and not skip_bad:
        more = f" (and {len(errors) - 1} more bad files)" if len(errors) > 1 else ""
        raise DataError(f"{errors[0]}{more}; pass --skip-bad-audio to skip and count them")
    kept = [i for i, (audio, _) in enumerate(results) if audio is not None]
    audio = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, cfg.clip_samples), np.int16)
    return audio, kept, errors


# ---------------------------------------------------------------- the official split


def speaker_of(relpath: str) -> str:
    """Speech Commands names clips <speaker>_nohash_<n>.wav; the speaker decides the split."""
    return Path(relpath).name.split("_nohash_")[0]


def read_list(path: Path) -> set[str]:
    if path.exists() and not path.is_file():
        raise DataError(f"split list {path} is not a file")
    if not path.is_file():
        raise DataError(f"split list {path} is missing (the official layout has validation_list.txt and testing_list.txt)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"split list {path} cannot be read: {getattr(error, 'strerror', None) or error}") from None
    return {line.strip() for line in text.splitlines() if line.strip()}


def split_of(relpath: str, validation: set[str], testing: set[str]) -> str:
    """The official rule: listed clips are validation or testing; every other clip is training."""
    if relpath in testing:
        return "testing"
    if relpath in validation:
        return "validation"
    return "training"


def negatives_split(path: Path, folder: Path) -> str:
    """The split of a file of a negatives folder (audio without any keyword, e.g. ../shared/data/negatives):
    a quarter each for training (hard-negative mining) and validation (the validation stream), half for
    testing (the benchmark's streams), drawn from a hash of its path inside the folder, so every tool
    agrees and a file never serves two of them."""
    import hashlib

    bucket = int.from_bytes(hashlib.sha256(Path(path).relative_to(folder).as_posix().encode()).digest()[:4], "big") % 4
    return ("training", "validation", "testing", "testing")[bucket]


def split_negatives(folder: Path, split: str) -> list[Path]:
    """The audio files of a negatives folder (searched recursively) that belong to `split`."""
    return [p for p in audio_files(folder, recursive=True) if negatives_split(p, folder) == split]


def list_words(data_dir: Path) -> dict[str, list[Path]]:
    """Word folder -> its audio files, for a dataset in the official layout."""
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    try:
        folders = sorted(d for d in data_dir.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    except OSError as error:
        raise DataError(f"data directory {data_dir} cannot be listed: {error.strerror}") from None
    words = {d.name: _audio_in(d) for d in folders}
    if not words:
        raise DataError(f"{data_dir} has no word folders: expected the Speech Commands layout (one folder per word)")
    return words


def read_background_noise(data_dir: Path, cfg: FeatureConfig) -> list[np.ndarray]:
    folder = data_dir / BACKGROUND_NOISE_DIR
    try:
        files = audio_files(folder)
    except DataError:
        raise DataError(f"{folder} has no audio: silence clips and noise augmentation are cut from it") from None
    noises = [read_audio(p, cfg.sample_rate) for p in files]
    short = [str(p) for p, n in zip(files, noises) if len(n) < cfg.clip_samples]
    if short:
        raise DataError(f"background noise shorter than one clip: {', '.join(short)}")
    return noises


def cut_silence(noises: list[np.ndarray], count: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Silence clips: random stretches of background noise at a random volume (as TensorFlow's speech_commands)."""
    clips = np.zeros((count, samples), np.float32)
    for row in clips:
        noise = noises[rng.integers(len(noises))]
        start = rng.integers(len(noise) - samples + 1)
        row[:] = noise[start : start + samples] * rng.uniform(0, 1)
    return clips


SPLITS = ("training", "validation", "testing")


def load_dataset(
    data_dir: Path,
    labels: list[str],
    cfg: FeatureConfig,
    silence_share: float = 0.1,
    unknown_share: float = 0.1,
    seed: int = 1,
    skip_bad: bool = False,
    splits: tuple[str, ...] = SPLITS,
    limit_per_label: int | None = None,
) -> tuple[dict[str, Clips], list[np.ndarray]]:
    """The official split of a full-layout dataset, with silence and unknown clips added to each split.

    Returns the clips of each split and the background noise recordings (for augmentation).
    Every check on the user's data runs before any audio is decoded.
    """
    data_dir = Path(data_dir)
    words = list_words(data_dir)
    validation = read_list(data_dir / "validation_list.txt")
    testing = read_list(data_dir / "testing_list.txt")
    keywords = [label for label in labels if label not in (SILENCE, UNKNOWN)]
    for keyword in keywords:
        if not words.get(keyword):
            state = "is an empty folder" if keyword in words else "is not a word folder"
            raise DataError(
                f"keyword {keyword!r} {state} in {data_dir}; words with clips: {', '.join(w for w in words if words[w])}"
            )
    noises = read_background_noise(data_dir, cfg)
    chosen: dict[str, list[tuple[Path, int]]] = {split: [] for split in SPLITS}
    others: dict[str, list[Path]] = {split: [] for split in SPLITS}
    for word, files in words.items():
        for path in files:
            split = split_of(f"{word}/{path.name}", validation, testing)
            if word in keywords:
                chosen[split].append((path, labels.index(word)))
            else:
                others[split].append(path)
    result = {}
    for split in splits:
        rng = np.random.default_rng([seed, SPLITS.index(split)])  # a split's picks never depend on the others
        keyword_items = chosen[split]
        if limit_per_label:  # a small slice, for quick runs and tests
            keyword_items = [i for k in range(len(labels)) for i in [i for i in keyword_items if i[1] == k][:limit_per_label]]
        if not keyword_items:
            raise DataError(f"{data_dir}: the {split} split has no clips of {', '.join(keywords)}")
        n_unknown = min(math.ceil(unknown_share * len(keyword_items)), len(others[split]))
        n_silence = math.ceil(silence_share * len(keyword_items))
        unknown_paths = [others[split][i] for i in sorted(rng.choice(len(others[split]), n_unknown, replace=False))]
        items = keyword_items + [(p, labels.index(UNKNOWN)) for p in unknown_paths]
        audio, kept, errors = read_clips([p for p, _ in items], cfg, skip_bad)
        items = [items[i] for i in kept]
        silence = to_int16(cut_silence(noises, n_silence, cfg.clip_samples, rng))
        result[split] = Clips(
            audio=np.concatenate([audio, silence]),
            labels=np.array([k for _, k in items] + [labels.index(SILENCE)] * n_silence, np.int32),
            sources=[str(p) for p, _ in items] + [f"{BACKGROUND_NOISE_DIR} (silence)"] * n_silence,
            skipped=errors,
        )
    return result, noises


def load_test_set(test_dir: Path, labels: list[str], cfg: FeatureConfig, skip_bad: bool = False) -> Clips:
    """Google's canonical test-set layout: one folder per label, including _silence_ and _unknown_.

    A clip of a word that is not one of `labels` counts as unknown; files in _unknown_
    are named <word>_<speaker>_nohash_<n>.wav, so a keyword among them keeps its label.
    """
    test_dir = Path(test_dir)
    if not test_dir.is_dir():
        raise DataError(f"test set directory {test_dir} does not exist")
    items = []
    for folder in sorted(d for d in test_dir.iterdir() if d.is_dir()):
        for path in _audio_in(folder):
            word = path.name.split("_")[0] if folder.name == UNKNOWN else folder.name
            if folder.name == SILENCE:
                word = SILENCE
            items.append((path, labels.index(word) if word in labels else labels.index(UNKNOWN)))
    if not items:
        raise DataError(f"{test_dir} has no audio in label folders (expected {SILENCE}/, {UNKNOWN}/, yes/, ...)")
    present = {k for _, k in items}
    missing = [labels[k] for k in range(len(labels)) if k not in present]
    if missing:
        raise DataError(f"{test_dir} has no clips of {', '.join(missing)}")
    audio, kept, errors = read_clips([p for p, _ in items], cfg, skip_bad)
    items = [items[i] for i in kept]
    return Clips(audio, np.array([k for _, k in items], np.int32), [str(p) for p, _ in items], errors)


# ---------------------------------------------------------------- augmentation


def augment(audio: np.ndarray, noises: list[np.ndarray], cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Speed, time shift, gain and background noise, drawn afresh by `rng`: int16 (n, samples) -> float32 (n, samples)."""
    clean = to_float(audio)
    n, samples = clean.shape
    out = np.zeros_like(clean)
    speeds = rng.uniform(*cfg.speed, n)
    shifts = rng.integers(-cfg.time_shift_samples, cfg.time_shift_samples + 1, n)
    gains = (10 ** (rng.uniform(*cfg.gain_db, n) / 20)).astype(np.float32)
    positions = np.arange(samples, dtype=np.float64)
    for row, source, speed, shift, gain in zip(out, clean, speeds, shifts, gains):
        # Read the clip `speed` times faster, centred; linear interpolation, silence outside it.
        source = np.interp((positions - samples / 2) * speed + samples / 2, positions, source, left=0, right=0)
        if shift >= 0:
            row[shift:] = source[: samples - shift] * gain
        else:
            row[:shift] = source[-shift:] * gain
    noisy = np.flatnonzero(rng.uniform(size=n) < cfg.noise_probability)
    volumes = rng.uniform(*cfg.noise_volume, size=len(noisy)).astype(np.float32)
    for i, volume in zip(noisy, volumes):
        noise = noises[rng.integers(len(noises))]
        start = rng.integers(len(noise) - samples + 1)
        out[i] += volume * noise[start : start + samples]
    return np.clip(out, -1.0, 1.0)
