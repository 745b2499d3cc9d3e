"""Speech Commands: audio reading, the official split, the negatives folders' split, background noise.
(Downloads: training/download.py; the splits training sees: training/dataset.py; augmentation: training/augment.py.)"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import soundfile

from training.config import BACKGROUND_NOISE_DIR, FeatureConfig

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")


class DataError(ValueError):
    """A problem with the user's data, stated in terms of the user's files."""


# ---------------------------------------------------------------- audio


def audio_in(folder: Path, recursive: bool = False) -> list[Path]:
    """The WAV/FLAC/Ogg files of a folder (and below it, when `recursive`), sorted, maybe none."""
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
    files = audio_in(folder, recursive)
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


def negatives_split(path: Path) -> str:
    """The split of a file of a negatives folder (audio without any keyword, e.g. ../shared/data/negatives):
    a quarter each for training (hard-negative mining) and validation (the validation stream), half for
    testing (the benchmark's streams), drawn from a hash of its name and size, so every tool agrees whichever
    folder above it the user names, and a file never serves two of them."""
    import hashlib

    key = f"{Path(path).name}:{Path(path).stat().st_size}".encode()
    bucket = int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % 4
    return ("training", "validation", "testing", "testing")[bucket]


SYNTHETIC_FILE = re.compile(r"^tts-.+_nohash_\d+\.wav$")  # training/synthesize.py names its clips so


def is_synthetic(path: Path | str) -> bool:
    """Whether a clip is one training.synthesize wrote (text-to-speech): it never reaches a test split."""
    return bool(SYNTHETIC_FILE.match(Path(path).name))


def synthetic_split(path: Path) -> str:
    """A synthetic clip's split, by its file name: one clip in five validates, the rest train; none tests, so
    every test figure is of real recordings. Not by voice, as recordings go by speaker: an engine has 1 to 5
    voices, and holding one out left piper's only voice out of training altogether."""
    import hashlib

    return "validation" if int.from_bytes(hashlib.sha256(Path(path).name.encode()).digest()[:4], "big") % 5 == 0 else "training"


def split_negatives(folder: Path, split: str) -> list[Path]:
    """The audio files of a negatives folder (searched recursively) that belong to `split`."""
    return [p for p in audio_files(folder, recursive=True) if negatives_split(p) == split]


def list_words(data_dir: Path) -> dict[str, list[Path]]:
    """Word folder -> its audio files, for a dataset in the official layout."""
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    try:
        folders = sorted(d for d in data_dir.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))
    except OSError as error:
        raise DataError(f"data directory {data_dir} cannot be listed: {error.strerror}") from None
    words = {d.name: audio_in(d) for d in folders}
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


SPLITS = ("training", "validation", "testing")
