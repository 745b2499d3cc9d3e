"""The synthetic clips training uses (training.train's --synthetic-positives, --near-misses and
--synthetic-others): folders under CACHE/synthetic/ made once by training.synthesize, reused while their
manifest says they hold the same request from the same engines and voices. A folder is written under a
temporary name beside it and renamed when whole, so a training started meanwhile (or after an interrupted
one) never reads half of it.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Callable

from training import run_folder
from training.config import OTHER_WORDS
from training.synthesize import NEAR_MISSES, SynthesisError, near_misses_of, normalize_phrase, sampling_ranges, synthesize
from training.tts_engines import ENGINES, find_engines


def other_words(keywords: list[str]) -> list[str]:
    """Speech Commands' other words that are none of the keywords, hold none and are held by none."""
    return [w for w in OTHER_WORDS if not any(w in k.split() or k in w.split() for k in map(normalize_phrase, keywords))]


def engines_for_training(preferred: tuple[str, ...], log=sys.stderr) -> tuple[str, ...]:
    """The preferred engines if all are installed (a part of them was never measured: piper alone is one voice);
    else every engine, with a note naming what to install."""
    missing = find_engines(preferred)[1]
    if missing:
        log.write(f"note: {'; '.join(missing.values())}. Synthetic clips come from every engine found instead, "
                  "which trained weaker wake words (README, Custom wake words)\n")
    return ENGINES if missing else preferred


def voices_found(engines: tuple[str, ...]) -> dict[str, int]:
    """Each of `engines` found and its number of voices: what a cached folder's manifest must match."""
    return {e.name: len(e.voices) for e in find_engines(engines)[0]}


def cached(folder: Path, manifest_name: str, count: int, role: str, seed: int, jobs: int, engines: tuple[str, ...],
           request: Callable[[], tuple[list[str], dict]], log=sys.stderr) -> Path:
    """`count` clips in `folder` of the phrases `request()` gives (with what their manifest records), written
    once: reused while the manifest says it holds as many from the same engines and `voices`, drawn from the
    same ranges (a code change to them remakes the clips). The folder's name holds everything the phrases
    follow from."""
    voices = voices_found(engines)
    try:
        made = json.loads((folder / manifest_name).read_text())
    except (OSError, ValueError):
        made = {}
    if (made.get("engines"), made.get("count_requested"), made.get("ranges")) == (voices, count, sampling_ranges()):
        log.write(f"synthetic {role} clips: reusing {made['written']:,} in {folder}\n")
        return folder
    phrases, about = request()
    log.write(f"synthetic {role} clips of {', '.join(map(repr, phrases[:4]))}{', ...' * (len(phrases) > 4)}: "
              f"writing {count:,} into {folder}\n")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SynthesisError(f"{folder.parent}: cannot write synthetic clips there ({error.strerror or error})") from None
    with run_folder.writing(folder, overwrite=True) as scratch:  # renamed into place when whole, as a run is
        synthesize(phrases, scratch, count, seed, jobs, engines, role=role, about=about, log=log)
    return folder


def for_training(phrase: str, positives: int, near_misses: int, cache_dir: Path, jobs: int, engines: tuple[str, ...],
                 seed: int = 1, log=sys.stderr) -> list[Path]:
    """Folders of `positives` clips of `phrase` and `near_misses` clips of its near misses (training.train's
    --synthetic-positives), under cache_dir/synthetic/."""
    phrase = normalize_phrase(phrase)
    stem = f"{re.sub(r'[^a-z0-9]+', '-', phrase)}-{'+'.join(engines)}"
    folders = []
    if positives >= 1:
        folders.append(cached(Path(cache_dir) / "synthetic" / f"{stem}-positive-{positives}-seed{seed}",
                              f"{phrase}.synthesis.json", positives, "positive", seed, jobs, engines, lambda: ([phrase], {}),
                              log))
    if near_misses >= 1:
        folders.append(cached(Path(cache_dir) / "synthetic" / f"{stem}-confusable-{near_misses}-seed{seed}",
                              f"{phrase}.confusable.json", near_misses, "confusable", seed, jobs, engines,
                              lambda: near_misses_of(phrase, NEAR_MISSES, jobs, log), log))
    return folders


def others_for_training(keywords: list[str], count: int, cache_dir: Path, jobs: int, engines: tuple[str, ...],
                        seed: int = 1, log=sys.stderr) -> Path:
    """A folder of `count` clips of the keywords' other words (other_words), which train as unknown."""
    words = other_words(keywords)
    digest = hashlib.sha256(" ".join(words).encode()).hexdigest()[:8]
    folder = Path(cache_dir) / "synthetic" / f"other-words-{'+'.join(engines)}-{count}-seed{seed}-{digest}"
    return cached(folder, f"{words[0]}.other.json", count, "other", seed, jobs, engines, lambda: (words, {}),
                  log)
