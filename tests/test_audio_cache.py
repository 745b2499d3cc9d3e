"""The on-disk audio and feature caches (training/audio_cache.py, training/cachefile.py), on real clips."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from training import cachefile
from training.audio_cache import open_audio_cache, open_feature_cache
from training.config import FeatureConfig
from training.data import DataError, fit_length, read_audio, to_float, to_int16
from training.features import mfcc

CFG = FeatureConfig()
REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def clips(mini_set, shared_data) -> list[Path]:
    """Real clips: 16 kHz Speech Commands and 8 kHz spoken digits (resampled on reading)."""
    words = sorted((mini_set / "yes").iterdir())[:30] + sorted((mini_set / "marvin").iterdir())[:6]
    digits = sorted((shared_data / "negatives" / "free_spoken_digits_8khz").rglob("*.wav"))[:4]
    return words + digits


def decoded(paths) -> np.ndarray:
    """The clips decoded directly, as training reads them."""
    return np.stack([to_int16(fit_length(read_audio(p, CFG.sample_rate), CFG.clip_samples)) for p in paths])


def _reopen(paths, cache_dir, capsys, **kwargs):
    cache = open_audio_cache(paths, CFG, cache_dir, **kwargs)
    return cache, capsys.readouterr().err


def test_cache_equals_decoding_directly_and_is_reused(clips, tmp_path, capsys):
    cache, err = _reopen(clips, tmp_path, capsys)
    assert "decoding audio" in err and "rebuilding" not in err
    direct = decoded(clips)
    assert isinstance(cache.audio, np.memmap) and cache.audio.dtype == np.int16
    assert np.array_equal(cache.audio, direct) and list(cache.kept) == list(range(len(clips))) and not cache.errors
    again, err = _reopen(clips, tmp_path, capsys)
    assert err == "" and again.sha256 == cache.sha256 and np.array_equal(again.audio, direct)


def _flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


@pytest.mark.parametrize("damage, reason", [
    (lambda p: os.truncate(p, p.stat().st_size - 100), "no trailer"),
    (lambda p: os.truncate(p, 1000), "no trailer"),
    (lambda p: _flip_byte(p, 12345), "checksum"),
    (lambda p: _flip_byte(p, p.stat().st_size - 20), "trailer"),
    (lambda p: p.write_bytes(b""), "truncated"),
])
def test_corrupt_audio_cache_is_detected_and_rebuilt(clips, tmp_path, capsys, damage, reason):
    cache, _ = _reopen(clips[:8], tmp_path, capsys)
    expected = np.array(cache.audio)
    damage(cache.path)
    rebuilt, err = _reopen(clips[:8], tmp_path, capsys)
    assert "is not usable" in err and reason in err and "rebuilding" in err
    assert np.array_equal(rebuilt.audio, expected)


def test_a_cache_of_the_wrong_dtype_or_shape_is_rebuilt(clips, tmp_path, capsys):
    cache, _ = _reopen(clips[:4], tmp_path, capsys)
    expected, meta = np.array(cache.audio), cachefile.read_meta(cache.path)[0]
    forged = {k: v for k, v in meta.items() if k not in ("dtype", "shape", "sha256", "crc32")}
    cachefile.write(cache.path, [np.zeros((4, 8000), np.float32)], np.float32, (8000,), forged)
    rebuilt, err = _reopen(clips[:4], tmp_path, capsys)
    assert "not int16 [16000]" in err and np.array_equal(rebuilt.audio, expected)


def test_a_changed_source_file_makes_the_cache_stale(clips, tmp_path, capsys):
    folder = tmp_path / "clips"
    folder.mkdir()
    paths = [Path(shutil.copy(p, folder / f"{i}_{p.name}")) for i, p in enumerate(clips[:5])]
    first, _ = _reopen(paths, tmp_path / "cache", capsys)
    audio, rate = soundfile.read(paths[2], dtype="int16")
    soundfile.write(paths[2], (audio // 2).astype(np.int16), rate)
    os.utime(paths[2], ns=(time.time_ns(), time.time_ns() + 10**9))  # a new mtime even on coarse clocks
    second, err = _reopen(paths, tmp_path / "cache", capsys)
    assert "stale" in err and str(paths[2]) in err and "rebuilding" in err
    assert np.array_equal(second.audio, decoded(paths)) and not np.array_equal(second.audio, first.audio)


def test_bad_files_are_named_or_skipped(clips, tmp_path, capsys):
    bad, empty = tmp_path / "bad.wav", tmp_path / "empty.wav"
    bad.write_bytes(b"RIFF not really a wave file" * 10)
    empty.write_bytes(b"")
    paths = [clips[0], bad, clips[1], empty, clips[2]]
    with pytest.raises(DataError, match="bad.wav") as error:
        open_audio_cache(paths, CFG, tmp_path / "cache")
    assert "--skip-bad-audio" in str(error.value) and not list((tmp_path / "cache").glob("*"))
    skipped = open_audio_cache(paths, CFG, tmp_path / "cache", skip_bad=True)
    assert list(skipped.kept) == [0, 2, 4] and len(skipped.errors) == 2
    assert "bad.wav" in skipped.errors[0] and "empty.wav" in skipped.errors[1]
    assert np.array_equal(skipped.audio, decoded([clips[0], clips[1], clips[2]]))
    with pytest.raises(DataError, match="bad.wav"):  # the cached result keeps the policy
        open_audio_cache(paths, CFG, tmp_path / "cache")


WRITER = """
import sys, time
from pathlib import Path
from training.audio_cache import open_audio_cache
from training.config import FeatureConfig
print("ready", flush=True)
while not Path(sys.argv[2]).exists():  # start decoding together
    time.sleep(0.01)
cache = open_audio_cache([Path(p) for p in sys.argv[3:]], FeatureConfig(), Path(sys.argv[1]), workers=1, chunk=8)
print(cache.sha256, flush=True)
"""


def test_concurrent_writers_are_safe_and_readers_never_see_half_a_file(mini_set, tmp_path):
    paths = [str(p) for p in sorted((mini_set / "no").iterdir())[:240]]
    cache_dir, go = tmp_path / "cache", tmp_path / "go"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(cache_dir), str(go), *paths], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for writer in writers:
        assert writer.stdout.readline().strip() == "ready"
    go.touch()
    seen = set()
    while any(w.poll() is None for w in writers):  # a reader polling all along
        for path in cache_dir.glob("audio-*.cache") if cache_dir.exists() else []:
            opened, reason = cachefile.open_checked(path)
            seen.add("valid" if opened is not None else reason)
        time.sleep(0.005)
    outputs = [w.communicate() for w in writers]
    assert all(w.returncode == 0 for w in writers), outputs
    assert all("decoding audio" in err for _, err in outputs)  # both wrote: neither found the other's file first
    assert seen <= {"valid", "missing"}, seen  # never truncated, never a checksum mismatch
    digests = {out.strip() for out, _ in outputs}
    assert len(digests) == 1
    assert not list(cache_dir.glob(".*.tmp"))  # every writer's temporary file was renamed or removed
    final = open_audio_cache([Path(p) for p in paths], CFG, cache_dir)
    assert final.sha256 in digests and np.array_equal(final.audio, decoded([Path(p) for p in paths]))


def test_feature_cache_equals_mfcc_and_is_rebuilt_when_corrupt(clips, tmp_path, capsys):
    cache, _ = _reopen(clips, tmp_path, capsys)
    expected = mfcc(to_float(np.array(cache.audio)), CFG)
    parallel = open_feature_cache(cache, CFG, tmp_path, workers=2, chunk=16, min_parallel=0)  # worker processes
    assert isinstance(parallel, np.memmap) and parallel.shape == (len(clips), CFG.n_frames, CFG.n_mfcc)
    assert np.abs(parallel - expected).max() < 1e-4  # librosa's own result varies this much with batch size
    path = next(tmp_path.glob("mfcc-*.cache"))
    _flip_byte(path, 100)
    capsys.readouterr()
    rebuilt = open_feature_cache(cache, CFG, tmp_path, workers=1)
    assert "checksum" in capsys.readouterr().err and np.abs(rebuilt - expected).max() < 1e-4
    plain = open_feature_cache(np.array(cache.audio), CFG, tmp_path / "plain")  # an ordinary array: hashed, same features
    assert np.array_equal(plain, rebuilt)
