"""Speech Commands: download, safe extraction, audio reading, the official split, augmentation."""
from __future__ import annotations

import hashlib
import math
import os
import sys
import tarfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile

from training.config import BACKGROUND_NOISE_DIR, SILENCE, UNKNOWN, AugmentConfig, FeatureConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE_DIR = REPO_ROOT / "data"
DATA_DIR_ENV = "KWS_DATA_DIR"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")


class DataError(ValueError):
    """A problem with the user's data, stated in terms of the user's files."""


# ---------------------------------------------------------------- download


@dataclass(frozen=True)
class Archive:
    url: str
    size: int
    sha256: str
    folder: str  # extracted under the cache directory


ARCHIVES = {
    "v0.02": Archive(
        "http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz",
        2_428_923_189,
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
        "speech_commands_v0.02",
    ),
    "v0.01": Archive(
        "http://download.tensorflow.org/data/speech_commands_v0.01.tar.gz",
        1_489_096_277,
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
        "speech_commands_v0.01",
    ),
    "test-v0.02": Archive(
        "http://download.tensorflow.org/data/speech_commands_test_set_v0.02.tar.gz",
        112_563_277,
        "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
        "speech_commands_test_set_v0.02",
    ),
    # Other speech for the streaming benchmark's negatives (5.4 h of read speech, FLAC). OpenSLR
    # publishes size and MD5; the SHA-256 is the one recorded by projects that pinned this archive.
    "librispeech-test-clean": Archive(
        "https://www.openslr.org/resources/12/test-clean.tar.gz",
        346_663_984,
        "39fde525e59672dc6d1551919b1478f724438a95aa55f874b576be21967e6c23",
        "librispeech_test_clean",
    ),
}


def _progress(name: str, done: int, total: int, started: float, out) -> None:
    rate = done / max(time.monotonic() - started, 1e-6)
    out.write(f"\r{name}: {100 * done / total:5.1f}%  {done / 1e6:,.1f} / {total / 1e6:,.1f} MB  {rate / 1e6:.1f} MB/s")
    out.flush()


def download(url: str, dest: Path, size: int, sha256: str, out=sys.stderr, chunk: int = 1 << 20) -> Path:
    """Download `url` to `dest`, resuming a partial `dest.part`, and verify size and SHA-256."""
    dest = Path(dest)
    if dest.exists():
        return dest
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    if have < size:
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            response = urllib.request.urlopen(request, timeout=60)
        except (urllib.error.URLError, OSError) as error:
            raise DataError(f"cannot download {url}: {error}. Use --data-dir or {DATA_DIR_ENV} for a local copy") from None
        with response:
            if have and response.status != 206:  # the server ignored the range: start over
                have = 0
            if have:
                out.write(f"resuming {dest.name} at {have / 1e6:,.1f} MB\n")
            started = time.monotonic()
            with open(part, "ab" if have else "wb") as f:
                done = have
                while block := response.read(chunk):
                    f.write(block)
                    done += len(block)
                    _progress(dest.name, done, size, started, out)
            out.write("\n")
    got = part.stat().st_size
    if got != size:
        raise DataError(f"{url}: got {got:,} bytes, expected {size:,}; run again to resume ({part} is kept)")
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    if digest.hexdigest() != sha256:
        part.unlink()
        raise DataError(
            f"{url}: SHA-256 {digest.hexdigest()} does not match the pinned {sha256}; the corrupt download was deleted"
        )
    part.replace(dest)
    return dest


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a tar archive, refusing absolute paths, '..', links and device files."""
    dest = Path(dest).resolve()
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                name = member.name
                if name.startswith(("/", "\\")) or Path(name).is_absolute():
                    raise DataError(f"{archive}: refusing absolute path {name!r}")
                if ".." in Path(name).parts:
                    raise DataError(f"{archive}: refusing path outside the destination {name!r}")
                if member.issym() or member.islnk():
                    raise DataError(f"{archive}: refusing link {name!r} -> {member.linkname!r}")
                if not (member.isfile() or member.isdir()):
                    raise DataError(f"{archive}: refusing special file {name!r}")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(f"{archive}: cannot extract: {error}") from None


def fetch(version: str = "v0.02", cache_dir: Path = DEFAULT_CACHE_DIR, out=sys.stderr) -> Path:
    """The extracted folder of one of ARCHIVES, downloaded and extracted once into `cache_dir`."""
    if version not in ARCHIVES:
        raise DataError(f"unknown dataset version {version!r}: choose one of {', '.join(ARCHIVES)}")
    archive = ARCHIVES[version]
    folder = Path(cache_dir) / archive.folder
    complete = folder / ".extracted"
    if complete.exists():
        return folder
    tarball = download(archive.url, Path(cache_dir) / Path(archive.url).name, archive.size, archive.sha256, out)
    out.write(f"extracting {tarball} into {folder}\n")
    safe_extract(tarball, folder)
    complete.touch()
    return folder


def resolve_data_dir(data_dir: str | None, version: str = "v0.02", cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """--data-dir, else $KWS_DATA_DIR, else the official archive downloaded into `cache_dir`."""
    chosen = data_dir or os.environ.get(DATA_DIR_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_dir():
            raise DataError(f"data directory {path} does not exist")
        return path
    return fetch(version, cache_dir)


# ---------------------------------------------------------------- audio


def read_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Any WAV, FLAC or Ogg file as mono float32 at `sample_rate`; errors name the file."""
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as error:
        raise DataError(f"{path}: cannot read audio: {error}") from None
    if audio.size == 0:
        raise DataError(f"{path}: contains no audio samples")
    audio = audio.mean(axis=1)
    if not np.all(np.isfinite(audio)):
        raise DataError(f"{path}: contains NaN or infinite samples")
    if rate != sample_rate:
        import librosa  # only needed for the odd file, and slow to import

        audio = librosa.resample(audio, orig_sr=rate, target_sr=sample_rate, res_type="soxr_hq")
    return np.clip(audio, -1.0, 32767 / 32768).astype(np.float32)


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
    if not path.is_file():
        raise DataError(f"split list {path} is missing (the official layout has validation_list.txt and testing_list.txt)")
    return {line.strip() for line in path.read_text().splitlines() if line.strip()}


def split_of(relpath: str, validation: set[str], testing: set[str]) -> str:
    """The official rule: listed clips are validation or testing; every other clip is training."""
    if relpath in testing:
        return "testing"
    if relpath in validation:
        return "validation"
    return "training"


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(AUDIO_SUFFIXES))


def list_words(data_dir: Path) -> dict[str, list[Path]]:
    """Word folder -> its audio files, for a dataset in the official layout."""
    if not data_dir.is_dir():
        raise DataError(f"data directory {data_dir} does not exist")
    words = {
        d.name: _audio_files(d)
        for d in sorted(data_dir.iterdir())
        if d.is_dir() and not d.name.startswith((".", "_"))
    }
    if not words:
        raise DataError(f"{data_dir} has no word folders: expected the Speech Commands layout (one folder per word)")
    return words


def read_background_noise(data_dir: Path, cfg: FeatureConfig) -> list[np.ndarray]:
    folder = data_dir / BACKGROUND_NOISE_DIR
    files = _audio_files(folder) if folder.is_dir() else []
    if not files:
        raise DataError(f"{folder} has no audio: silence clips and noise augmentation are cut from it")
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
        for path in _audio_files(folder):
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
