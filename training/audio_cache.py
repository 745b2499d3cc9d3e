"""Decode audio once into a compact on-disk cache, and MFCCs of it into another: both memory-mapped.

    cache = open_audio_cache(paths, cfg, cache_dir)        # int16 (n_kept, clip_samples), file-backed
    features = open_feature_cache(cache, cfg, cache_dir)   # float32 (n_kept, frames, n_mfcc), file-backed

A cache file is the array's raw bytes followed by a JSON trailer, its length and a magic tag
(`cachefile.py`), written to a temporary file of the writer's own and renamed into place: readers
never see half a file and concurrent writers cannot collide. Every open checks the trailer, size,
shape, checksum and (audio) each source file's size and mtime; a corrupt or stale cache is rebuilt
with a message saying why. Memory stays bounded: audio is decoded and written a chunk at a time,
features computed a chunk at a time; neither ever holds the dataset's float audio.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from training import cachefile, data, features
from training.progress import Progress
from training.config import FeatureConfig
from training.data import DataError

AUDIO_FORMAT = 1  # bump when the way rows are written changes
FEATURE_FORMAT = 1
PARALLEL_MIN_CLIPS = 20_000  # below this, one process beats starting workers (measured: see the report)


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _source_closure(function, seen: dict) -> None:
    """`function`'s source and that of every function of its own module it calls, however deep."""
    if function.__qualname__ in seen:
        return
    seen[function.__qualname__] = inspect.getsource(function)
    codes = [function.__code__]
    while codes:  # nested generators and lambdas have their own names
        code = codes.pop()
        codes.extend(c for c in code.co_consts if inspect.iscode(c))
        for name in code.co_names:
            called = function.__globals__.get(name)
            if inspect.isfunction(called) and called.__module__ == function.__module__:
                _source_closure(called, seen)


def _code_digest(*functions, packages: tuple[str, ...] = ()) -> str:
    """The source of the code that makes a cache's content, and the versions of the libraries it calls."""
    sources: dict = {}
    for function in functions:
        _source_closure(function, sources)
    digest = hashlib.sha256(json.dumps(sources, sort_keys=True).encode())
    for package in packages:
        try:
            digest.update(f"{package}={version(package)}".encode())
        except PackageNotFoundError:
            digest.update(f"{package}=none".encode())
    return digest.hexdigest()


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)  # follows links: a linked clip is keyed by the file it points to
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1  # missing: decoding will name the file


# ---------------------------------------------------------------- audio


@dataclass
class AudioCache:
    """Decoded clips, file-backed: `audio[i]` is the clip of `paths[kept[i]]`."""

    path: Path
    audio: np.ndarray  # np.memmap, int16 (n_kept, clip_samples), read-only
    kept: np.ndarray  # indices into the paths given
    errors: list[str]  # messages of the files skipped (skip_bad)
    sha256: str  # of the audio bytes: keys the feature cache

    def __len__(self) -> int:
        return len(self.audio)


def audio_identity(paths: list[Path], cfg: FeatureConfig) -> str:
    """What a cache file is for: these paths, read by this code at this rate and length."""
    code = _code_digest(data.read_audio, data.fit_length, data.to_int16, packages=("soundfile", "soxr", "librosa"))
    digest = hashlib.sha256(json.dumps([AUDIO_FORMAT, cfg.sample_rate, cfg.clip_samples, code]).encode())
    for path in paths:
        digest.update(str(path).encode() + b"\0")
    return digest.hexdigest()


def _decode(path: Path, cfg: FeatureConfig) -> tuple[np.ndarray | None, str | None]:
    try:  # the same reading as training.data.read_clips
        return data.to_int16(data.fit_length(data.read_audio(path, cfg.sample_rate), cfg.clip_samples)), None
    except DataError as error:
        return None, str(error)


def _bad_files_error(errors: list[str], seen: int) -> DataError:
    more = f" (and {len(errors) - 1} more bad files among the first {seen:,})" if len(errors) > 1 else ""
    return DataError(f"{errors[0]}{more}; pass --skip-bad-audio to skip and count them")


def _decoded_chunks(paths: list[Path], cfg: FeatureConfig, skip_bad: bool, workers: int, chunk: int, progress, report: dict):
    """int16 chunks of the readable clips, in order; decoding runs one chunk ahead of the writer."""
    with ThreadPoolExecutor(workers) as pool:  # libsndfile and soxr release the GIL
        pending: deque = deque()
        for start in range(0, len(paths), chunk):
            pending.append((start, pool.map(_decode, paths[start : start + chunk], [cfg] * chunk)))
            if len(pending) == 2:
                yield _collect(*pending.popleft(), skip_bad, progress, report)
        while pending:
            yield _collect(*pending.popleft(), skip_bad, progress, report)


def _collect(start: int, results, skip_bad: bool, progress, report: dict) -> np.ndarray:
    """The readable clips of one chunk; bad files are recorded in `report` (or raise without skip_bad)."""
    clips = []
    for offset, (clip, error) in enumerate(results):
        if error is None:
            clips.append(clip)
        else:
            report["errors"].append(error)
            report["skipped"].append(start + offset)
    done = start + offset + 1
    if report["errors"] and not skip_bad:
        raise _bad_files_error(report["errors"], done)
    progress(done)
    return np.stack(clips) if clips else np.zeros((0, 0), np.int16)


def _build_audio(path: Path, paths: list[Path], stats: list, identity: str, cfg: FeatureConfig,
                 skip_bad: bool, workers: int, chunk: int, out) -> None:
    progress = Progress("decoding audio", len(paths), out)
    report: dict = {"errors": [], "skipped": []}
    meta = {"kind": "audio", "format": AUDIO_FORMAT, "identity": identity, "sources": len(paths), "stats": stats}
    chunks = _decoded_chunks(paths, cfg, skip_bad, workers, chunk, progress, report)
    cachefile.write(path, chunks, np.int16, (cfg.clip_samples,), meta, extra=lambda: report)
    progress(len(paths), final=True)


def _check_audio(meta: dict, identity: str, stats: list, paths: list[Path], cfg: FeatureConfig) -> str | None:
    """Why a structurally sound audio cache is not the one wanted, or None."""
    if meta.get("kind") != "audio" or meta.get("format") != AUDIO_FORMAT or meta.get("identity") != identity:
        return "it was written for other files, settings or code"
    if meta["dtype"] != "int16" or list(meta["shape"][1:]) != [cfg.clip_samples]:
        return f"it holds {meta['dtype']} rows of shape {meta['shape'][1:]}, not int16 [{cfg.clip_samples}]"
    if len(meta.get("stats", [])) != len(stats):
        return "the number of source files differs"
    changed = [i for i, (old, new) in enumerate(zip(meta["stats"], stats)) if list(old) != list(new)]
    if changed:
        return f"stale: {len(changed):,} source file(s) changed since it was written (first: {paths[changed[0]]})"
    return None


def open_audio_cache(
    paths: list[Path], cfg: FeatureConfig, cache_dir: Path, skip_bad: bool = False,
    workers: int | None = None, chunk: int = 256, verify: bool = True, out=None,
) -> AudioCache:
    """The decoded clips of `paths`, from the cache in `cache_dir` or decoded into it on every core.

    A bad file raises training.data.DataError naming it, or with `skip_bad` is skipped and reported
    in `errors` (and `kept` says which files the rows are). `verify` checksums the whole file on open.
    """
    out = out or sys.stderr
    paths = [Path(p) for p in paths]
    identity = audio_identity(paths, cfg)
    stats = [list(_stat(p)) for p in paths]
    path = Path(cache_dir) / f"audio-{identity[:24]}.cache"
    opened, reason = cachefile.open_checked(path, verify)
    if opened is not None:
        reason = _check_audio(opened[1], identity, stats, paths, cfg)
    if reason is None:
        array, meta = opened
    else:
        if path.exists():
            out.write(f"audio cache {path} is not usable ({reason}): rebuilding it\n")
        path.parent.mkdir(parents=True, exist_ok=True)
        _build_audio(path, paths, stats, identity, cfg, skip_bad, workers or cpu_count(), chunk, out)
        opened, reason = cachefile.open_checked(path, verify=False)
        if opened is None:
            raise DataError(f"{path}: the audio cache just written cannot be read back ({reason})")
        array, meta = opened
    if meta["errors"] and not skip_bad:
        raise _bad_files_error(meta["errors"], len(paths))
    kept = np.setdiff1d(np.arange(len(paths)), np.asarray(meta["skipped"], np.int64))
    return AudioCache(path, array, kept, list(meta["errors"]), meta["sha256"])


# ---------------------------------------------------------------- features


def _mfcc_rows(job: tuple) -> int:
    """Worker: MFCCs of rows [start, stop) of a memory-mapped int16 file, written into the output file."""
    src, src_shape, dst, dst_shape, start, stop, cfg = job
    audio = np.memmap(src, np.int16, "r", shape=tuple(src_shape))
    out = np.memmap(dst, np.float32, "r+", shape=tuple(dst_shape))
    out[start:stop] = features.mfcc(data.to_float(audio[start:stop]), cfg)
    out.flush()
    return stop - start


def _feature_chunks(audio: np.ndarray, cfg: FeatureConfig, chunk: int, progress):
    """MFCC chunks computed in this process (for arrays that are not a cache file)."""
    for start in range(0, len(audio), chunk):
        yield features.mfcc(data.to_float(audio[start : start + chunk]), cfg)
        progress(min(start + chunk, len(audio)))


def _worker_context():
    """fork on Linux: workers start at once and share the parent's pages. A forkserver or spawned worker
    re-imports the main module (training.train, so TensorFlow): we measured 2x slower and +0.3 GB on 10k clips.
    The workers only run numpy/librosa, never TensorFlow, as Keras' own PyDataset workers (also forked)."""
    return get_context("fork" if sys.platform == "linux" else "spawn")


def _parallel_features(source: AudioCache, tmp: Path, shape: tuple, cfg: FeatureConfig, workers: int, chunk: int, progress):
    """Fill the (already sized) file `tmp` with MFCCs, chunks spread over worker processes."""
    jobs = [(str(source.path), source.audio.shape, str(tmp), shape, s, min(s + chunk, shape[0]), cfg)
            for s in range(0, shape[0], chunk)]
    done = 0
    with ProcessPoolExecutor(workers, mp_context=_worker_context()) as pool:
        for count in pool.map(_mfcc_rows, jobs):
            done += count
            progress(done)


def feature_identity(audio_sha256: str, cfg: FeatureConfig) -> str:
    code = _code_digest(features.mfcc, data.to_float, packages=("librosa", "numpy", "scipy"))
    return hashlib.sha256(json.dumps([FEATURE_FORMAT, audio_sha256, cfg.to_dict(), code]).encode()).hexdigest()


def _check_features(meta: dict, identity: str, shape: tuple) -> str | None:
    if meta.get("kind") != "mfcc" or meta.get("format") != FEATURE_FORMAT or meta.get("identity") != identity:
        return "it was written for other audio, settings or code"
    if meta["dtype"] != "float32" or tuple(meta["shape"]) != shape:
        return f"it holds {meta['dtype']} {meta['shape']}, not float32 {list(shape)}"
    return None


def open_feature_cache(
    audio: AudioCache | np.ndarray, cfg: FeatureConfig, cache_dir: Path, workers: int | None = None,
    chunk: int = 512, verify: bool = True, out=None, min_parallel: int = PARALLEL_MIN_CLIPS,
) -> np.ndarray:
    """`training.features.mfcc` of every clip, float32 (n, frames, n_mfcc), memory-mapped from `cache_dir`.

    From an AudioCache of at least `min_parallel` clips the chunks are computed in worker processes that
    read the audio file and write the feature file directly (starting them costs seconds); otherwise,
    and for a plain int16 array (hashed first), here, a chunk at a time.
    """
    out = out or sys.stderr
    array = audio.audio if isinstance(audio, AudioCache) else np.asarray(audio)
    if array.dtype != np.int16 or array.ndim != 2:
        raise ValueError(f"features are computed from int16 audio (n, samples), not {array.dtype} {array.shape}")
    sha = audio.sha256 if isinstance(audio, AudioCache) else cachefile.sha256_of(array)
    identity = feature_identity(sha, cfg)
    path = Path(cache_dir) / f"mfcc-{identity[:24]}.cache"
    shape = (len(array), cfg.n_frames, cfg.n_mfcc)
    opened, reason = cachefile.open_checked(path, verify)
    if opened is not None:
        reason = _check_features(opened[1], identity, shape)
        if reason is None:
            return opened[0]
    if path.exists():
        out.write(f"feature cache {path} is not usable ({reason}): rebuilding it\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"kind": "mfcc", "format": FEATURE_FORMAT, "identity": identity, "features": cfg.to_dict()}
    progress = Progress("computing MFCCs", len(array), out)
    workers = workers or cpu_count()
    if isinstance(audio, AudioCache) and workers > 1 and len(array) >= min_parallel:
        cachefile.write_filled(path, np.float32, shape, meta,
                               lambda tmp: _parallel_features(audio, tmp, shape, cfg, workers, chunk, progress))
    else:
        cachefile.write(path, _feature_chunks(array, cfg, chunk, progress), np.float32, shape[1:], meta)
    progress(len(array), final=True)
    return cachefile.open_checked(path, verify=False)[0][0]
