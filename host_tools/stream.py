"""A long labelled stream for the streaming wake-word benchmark: keyword clips and negatives (other words,
other speech) mixed at set signal-to-noise ratios over continuous background noise.

    stream = build_stream(data_dir, "yes", [negatives_dir], duration_s=1200, keyword_count=50)
    stream.write(Path("stream.wav"), Path("stream.csv"))   # play it to a board: listen.py --play/--reference

Keywords are the split's clips of the keyword (testing for the benchmark, validation for calibration; the
official split rule, training.data), repeated in a new order when there are fewer clips than occurrences;
"other words" are the split's clips of every other word folder; other speech is the split's share of the
audio files under the negatives folders (training.data.negatives_split; a long file contributes a random
stretch of at most MAX_NEGATIVE_S). The background is the dataset's _background_noise_ recordings,
joined end to end in a random order and looped, at a constant level (noise_dbfs).

Signal-to-noise ratio: the placed clip's RMS over the RMS of the background beneath it, in dB, cycled through
`snr_db` event by event. The ground truth (stream.csv, scoring.COLUMNS) marks each keyword clip where it was
placed, [start, start + clip length) (to the sample: 7 decimals); scoring's hit window then reaches 0.5 s beyond its end.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from itertools import cycle
from pathlib import Path

import numpy as np

from host_tools.scoring import COLUMNS, Keyword
from training.config import FeatureConfig

RATE = FeatureConfig().sample_rate  # the stream is written at the rate the models hear
MAX_NEGATIVE_S = 6.0  # a LibriSpeech utterance is 10-35 s: a stretch of it, so that many sources are heard
GAP_S = (0.5, 2.0)  # silence (background only) after each negative, drawn uniformly
KEYWORD_CLEARANCE_S = 2.0  # background only before and after a keyword: its 1 s average and its
# [start, end + 1 s) no-false-alarm window hold the keyword alone


@dataclass(frozen=True)
class Placed:
    start_s: float
    end_s: float
    kind: str  # "keyword", "word" (another Speech Commands word) or "speech" (a negatives folder)
    label: str  # the keyword, the other word, or the negatives folder's name
    source: str
    snr_db: float


@dataclass
class Stream:
    audio: np.ndarray  # int16, RATE
    events: list[Placed]
    background: np.ndarray  # float32, the noise bed alone (for checking the mix)
    skipped: list[str]  # unreadable negatives (with skip_bad), each with why

    @property
    def seconds(self) -> float:
        return len(self.audio) / RATE

    def keywords(self) -> list[Keyword]:
        return [Keyword(e.start_s, e.end_s, e.label) for e in self.events if e.kind == "keyword"]

    def negative_seconds(self) -> float:
        """Audio time outside every keyword's [start, end + 1 s): where a detection can be a false accept."""
        from host_tools.scoring import NOT_FALSE_WINDOW_S

        return self.seconds - sum(k.end_s + NOT_FALSE_WINDOW_S - k.start_s for k in self.keywords())

    def write(self, wav: Path, reference: Path) -> None:
        import soundfile

        soundfile.write(str(wav), self.audio, RATE, subtype="PCM_16")
        with open(reference, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            writer.writerows([f"{k.start_s:.7f}", f"{k.end_s:.7f}", k.label] for k in self.keywords())


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def split_clips(data_dir: Path, split: str = "testing") -> dict[str, list[Path]]:
    """Word -> its clips of one split, by the official rule (training.data.split_of)."""
    from training.data import list_words, read_list, split_of

    testing = read_list(Path(data_dir) / "testing_list.txt")
    validation = read_list(Path(data_dir) / "validation_list.txt")
    return {word: [p for p in files if split_of(f"{word}/{p.name}", validation, testing) == split]
            for word, files in list_words(Path(data_dir)).items()}


def background_bed(data_dir: Path, samples: int, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    from training.data import read_background_noise

    noises = [n / max(rms(n), 1e-9) for n in read_background_noise(Path(data_dir), FeatureConfig())]
    order = rng.permutation(len(noises))
    joined = np.concatenate([noises[i] for i in order])
    bed = np.resize(joined, samples)  # loops when the stream is longer than the recordings
    return (bed * (10 ** (dbfs / 20) / rms(bed))).astype(np.float32)


def negative_pools(data_dir: Path, clips: dict[str, list[Path]], keywords: list[str], negatives: list[Path],
                   split: str) -> dict:
    """Kind -> [(label, path)]: the other words' clips, and each negatives folder's share of the split."""
    from training.data import DataError, split_negatives

    pools = {"word": [(p.parent.name, p) for word, paths in clips.items() if word not in keywords for p in paths]}
    for folder in map(Path, negatives):
        try:
            pools[f"speech:{folder.name}"] = [(folder.name, p) for p in split_negatives(folder, split)]
        except DataError as error:
            raise DataError(f"--negatives {error}") from None
    pools = {kind: items for kind, items in pools.items() if items}
    if not pools:
        raise DataError(f"{data_dir}: no negatives: no other word has {split}-split clips and no --negatives folder")
    return pools


def build_stream(data_dir: Path, keyword: str, negatives: list[Path] = (), duration_s: float = 1200.0,
                 keyword_count: int = 50, snr_db: tuple[float, ...] = (20.0, 15.0, 10.0), noise_dbfs: float = -50.0,
                 seed: int = 1, skip_bad: bool = False, split: str = "testing", keywords: tuple[str, ...] = (),
                 keyword_clips: list[Path] | None = None) -> Stream:
    """Keyword occurrence i is centred near (i + 0.5) * duration / keyword_count (jittered); negatives fill
    the time between keywords, KEYWORD_CLEARANCE_S away from them, each followed by a gap of background.
    The keyword clips are the split's recordings of it, or `keyword_clips` (training's validation split,
    which may hold synthetic ones). An unreadable negative stops with its name, or with `skip_bad` is listed
    in Stream.skipped and another is drawn (as training's --skip-bad-audio)."""
    from training.data import DataError, read_audio

    rng = np.random.default_rng(seed)
    clips = split_clips(data_dir, split)
    placed = list(keyword_clips) if keyword_clips is not None else clips.get(keyword, [])
    if not placed:
        raise DataError(f"{data_dir}: no {split}-split clips of the keyword {keyword!r}")
    keyword_paths = [placed[i] for i in np.concatenate(
        [rng.permutation(len(placed)) for _ in range(-(-keyword_count // len(placed)))])][:keyword_count]
    # every keyword of the model (`keywords`) is kept out of the negatives, not only the one placed
    pools = negative_pools(data_dir, clips, [keyword, *keywords], negatives, split)
    interval = duration_s / keyword_count
    if interval < 2 * KEYWORD_CLEARANCE_S + 1.5:
        raise DataError(f"{keyword_count} keywords do not fit in {duration_s:g} s: at least "
                        f"{2 * KEYWORD_CLEARANCE_S + 1.5:g} s each")
    samples = round(duration_s * RATE)
    background = background_bed(data_dir, samples, noise_dbfs, rng)
    audio = background.astype(np.float64)
    events: list[Placed] = []
    snrs = cycle(snr_db)

    def place(clip: np.ndarray, start: int, kind: str, label: str, source: Path) -> None:
        level = rms(clip)
        if level == 0:
            raise DataError(f"{source}: silent: it cannot be mixed at a signal-to-noise ratio")
        snr = float(next(snrs))
        gain = rms(background[start : start + len(clip)]) * 10 ** (snr / 20) / level
        audio[start : start + len(clip)] += gain * clip
        events.append(Placed(start / RATE, (start + len(clip)) / RATE, kind, label, str(source), snr))

    skipped: list[str] = []

    def read_negative(path: Path) -> np.ndarray | None:
        try:
            return read_audio(path, RATE)
        except DataError as error:
            if not skip_bad:
                raise DataError(f"{error}; pass --skip-bad-audio to skip and list it") from None
            skipped.append(str(error))
            return None

    cursor = 0  # samples: where the next negative may start
    for i, path in enumerate(keyword_paths):
        clip = read_audio(path, RATE)
        jitter = rng.uniform(-0.25, 0.25) * (interval - 2 * KEYWORD_CLEARANCE_S - len(clip) / RATE)
        start = round(((i + 0.5) * interval + jitter) * RATE - len(clip) / 2)
        fill_negatives(cursor, start - round(KEYWORD_CLEARANCE_S * RATE), pools, rng, place, read_negative)
        place(clip, start, "keyword", keyword, path)
        cursor = start + len(clip) + round(KEYWORD_CLEARANCE_S * RATE)
    fill_negatives(cursor, samples, pools, rng, place, read_negative)
    return Stream(np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768).astype(np.int16), events, background, skipped)


def fill_negatives(start: int, stop: int, pools: dict, rng: np.random.Generator, place, read_negative) -> None:
    """Negatives one after another from `start`, each from a kind drawn uniformly, while they end before `stop`."""
    kinds = sorted(pools)
    cursor = start
    while True:
        kind = kinds[rng.integers(len(kinds))]
        label, path = pools[kind][rng.integers(len(pools[kind]))]
        clip = read_negative(path)
        if clip is None:
            continue
        longest = round(MAX_NEGATIVE_S * RATE)
        if len(clip) > longest:
            offset = rng.integers(len(clip) - longest + 1)
            clip = clip[offset : offset + longest]
        if cursor + len(clip) > stop:
            return
        place(clip, cursor, kind.split(":")[0], label, path)
        cursor += len(clip) + round(rng.uniform(*GAP_S) * RATE)
