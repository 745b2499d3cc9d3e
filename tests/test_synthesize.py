"""Synthetic positives from offline text-to-speech (training/synthesize.py, tts_engines.py, confusables.py).

Tests that need an engine skip naming its package (they fail under KWS_STRICT=1, as in CI).
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from tests.conftest import REPO_ROOT, missing
from training.config import FeatureConfig
from training.confusables import (
    near_miss_phrases,
    phonemizer,
    spelling_candidates,
    syllables,
)
from training.data import is_synthetic, list_words, speaker_of
from training.synthesize import (
    Placement,
    SynthesisError,
    synthesize,
    to_clip,
)
from training.tts_engines import ENGINES, WHERE_TO_GET, find_engines

PHRASES = ["yes", "hey nano"]


@pytest.fixture(scope="session")
def installed() -> dict[str, object]:
    engines, _ = find_engines()
    return {engine.name: engine for engine in engines}


def need(installed: dict, name: str) -> None:
    if name not in installed:
        missing(f"text-to-speech engine {name} is missing: install the {WHERE_TO_GET[name]}")


def run_cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.synthesize", *map(str, args)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300, env=env)


def speech_band_share(clip: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(clip.astype(np.float64))) ** 2
    frequencies = np.fft.rfftfreq(len(clip), 1 / 16000)
    return float(spectrum[(frequencies >= 80) & (frequencies <= 5000)].sum() / spectrum.sum())


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_speaks_one_and_two_word_phrases(installed, engine, tmp_path):
    need(installed, engine)
    summary = synthesize(PHRASES, tmp_path, count=4, seed=3, jobs=2, engine_names=(engine,), log=io.StringIO())
    assert summary.written == 4 and summary.engines == {engine: len(installed[engine].voices)}
    manifest = json.loads(summary.manifest.read_text())
    for entry in manifest["clips"]:
        clip, rate = soundfile.read(tmp_path / entry["file"], dtype="int16")
        info = soundfile.info(tmp_path / entry["file"])
        assert (rate, info.channels, info.subtype, len(clip)) == (16000, 1, "PCM_16", 16000)
        assert entry["engine"] == engine and Path(entry["file"]).parent.name == entry["phrase"]
        peak_dbfs = 20 * np.log10(np.abs(clip).max() / 32768)
        assert peak_dbfs == pytest.approx(entry["level_dbfs"], abs=0.1)  # not silent: at its drawn level
        low, high = (0.15, 0.9) if entry["phrase"] == "yes" else (0.3, 1.0)  # plausible spoken durations
        assert low <= entry["speech_seconds"] <= high, entry
        assert speech_band_share(clip) > 0.9  # its energy lies where speech has it, not in hum or hiss


def test_missing_engines_are_reported_not_fatal(installed, tmp_path):
    need(installed, "espeak-ng")
    only_espeak = tmp_path / "bin"
    only_espeak.mkdir()
    (only_espeak / "espeak-ng").symlink_to(shutil.which("espeak-ng"))
    env = {**os.environ, "PATH": str(only_espeak)}  # flite and festival are not on this PATH
    done = run_cli("--phrase", "yes", "--out", tmp_path / "out", "--count", 2,
                   "--engines", "espeak-ng", "flite", "festival", env=env)
    assert done.returncode == 0, done.stderr
    assert "engines: espeak-ng" in done.stderr
    assert f"skipped flite: not installed or without an English voice; install the {WHERE_TO_GET['flite']}" in done.stderr
    assert "skipped festival" in done.stderr and "festvox-kallpc16k" in done.stderr
    manifest = json.loads((tmp_path / "out" / "yes.synthesis.json").read_text())
    assert set(manifest["missing"]) == {"flite", "festival"} and manifest["written"] == 2


def test_no_engine_at_all_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_cli("--phrase", "yes", "--out", tmp_path / "out", "--engines", "espeak-ng", "flite", "festival",
                   env={**os.environ, "PATH": str(empty)})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "error: no text-to-speech engine found" in done.stderr and "Debian package espeak-ng" in done.stderr


@pytest.mark.parametrize("args, message", [
    (["--phrase", "", "--count", 2], "phrase ''"),
    (["--phrase", "hey, nano!", "--count", 2], "phrase 'hey, nano!'"),
    (["--phrase", "yes", "--count", 0], "--count 0"),
    (["--phrase", "yes", "--count", 2, "--jobs", 0], "--jobs 0"),
])
def test_bad_input_is_named(tmp_path, args, message):
    done = run_cli(*args, "--out", tmp_path)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


def test_unwritable_out_is_named(installed, tmp_path):
    if not installed:
        missing(f"no text-to-speech engine: install the {WHERE_TO_GET['espeak-ng']}")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_cli("--phrase", "yes", "--out", blocker / "out", "--count", 2)
    assert done.returncode == 2 and f"--out {blocker / 'out'}: cannot write there" in done.stderr
    assert "Traceback" not in done.stderr


def test_same_seed_same_bytes_whatever_the_jobs(installed, tmp_path):
    if not installed:
        missing(f"no text-to-speech engine: install the {WHERE_TO_GET['espeak-ng']}")
    runs = []
    for jobs in (1, 2):
        synthesize(["hey nano"], tmp_path / str(jobs), count=2 * len(installed), seed=7, jobs=jobs, log=io.StringIO())
        folder = tmp_path / str(jobs)
        runs.append({p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()})
    assert runs[0] == runs[1] and len(runs[0]) == 2 * len(installed) + 1  # the clips and the manifest
    other = synthesize(["hey nano"], tmp_path / "other", count=2 * len(installed), seed=8, jobs=2, log=io.StringIO())
    assert other.manifest.read_bytes() != runs[0][Path("hey nano.synthesis.json")]  # another seed, other clips


def test_layout_is_what_training_reads(installed, tmp_path):
    need(installed, "espeak-ng")
    synthesize(["hey nano"], tmp_path, count=3, engine_names=("espeak-ng",), log=io.StringIO())
    words = list_words(tmp_path)
    assert list(words) == ["hey nano"] and len(words["hey nano"]) == 3
    for path in words["hey nano"]:
        assert is_synthetic(path) and speaker_of(f"hey nano/{path.name}").startswith("tts-espeak-ng-")
    assert not is_synthetic("yes/0a7c2a8d_nohash_0.wav")  # a Speech Commands clip
    with pytest.raises(SynthesisError, match="--overwrite"):  # an earlier run's clips are never mixed in silently
        synthesize(["hey nano"], tmp_path, count=2, engine_names=("espeak-ng",), log=io.StringIO())
    synthesize(["hey nano"], tmp_path, count=2, engine_names=("espeak-ng",), overwrite=True, log=io.StringIO())
    assert len(list_words(tmp_path)["hey nano"]) == 2


def test_too_long_renderings_are_sped_up_or_dropped(installed, tmp_path):
    need(installed, "espeak-ng")
    summary = synthesize(["okay nano wake up now"], tmp_path, count=6, engine_names=("espeak-ng",), log=io.StringIO())
    clips = json.loads(summary.manifest.read_text())["clips"]
    assert summary.written == 6 and summary.sped_up > 0 and all(c["speech_seconds"] <= 1.0 for c in clips)
    with pytest.raises(SynthesisError, match="longer than 1 s even at"):
        synthesize(["the quick brown fox jumps over the lazy dog"], tmp_path, count=2, engine_names=("espeak-ng",),
                   log=io.StringIO())


def test_to_clip_trims_and_places_speech_in_one_second():
    rate, cfg = 22050, FeatureConfig()
    burst = np.zeros(rate, np.float32)
    burst[5000:12000] = 0.5 * np.sin(np.arange(7000) * 0.3)
    clip, seconds = to_clip(burst, rate, Placement(shift=0.0, level_dbfs=-6.0, position=0.0), cfg)
    assert len(clip) == 16000 and seconds == pytest.approx(7000 / rate, abs=0.02)
    assert 20 * np.log10(np.abs(clip).max() / 32768) == pytest.approx(-6.0, abs=0.05)
    loud = np.flatnonzero(np.abs(clip) > 0.01 * 32768)
    assert abs((loud[0] + loud[-1]) / 2 - 8000) < 200  # centred at position 0
    assert to_clip(np.ones(int(1.2 * rate), np.float32) * 0.1, rate, Placement(0.0, -6.0, 0.0), cfg)[0] is None


def test_near_misses_follow_the_rule(installed):
    assert syllables("nano") == [["n", "a", ""], ["n", "o", ""]] and syllables("yes") == [["y", "e", "s"]]
    kinds = {kind for kind, _ in spelling_candidates("hey nano")}
    assert kinds == {"vowel", "consonant", "drop"}
    to_ipa = phonemizer()
    if to_ipa is None:
        missing(f"no phonemizer for near misses: install the {WHERE_TO_GET['espeak-ng']}")
    target = to_ipa("hey nano")
    misses = near_miss_phrases("hey nano", limit=12)
    assert len(misses) == 12 and {m.kind for m in misses} == {"vowel", "consonant", "drop"}
    assert not any(target in m.phonemes for m in misses)  # none holds the wake word whole
    assert all(0 < m.distance <= 3 and m.phonemes != target for m in misses)
    assert len({m.phonemes for m in misses}) == 12  # no two sound the same
    assert "hay nano" not in {m.phrase for m in misses}  # a homophone is the wake word, not a near miss


def test_confusable_cli_writes_near_misses_as_their_own_words(installed, tmp_path):
    need(installed, "espeak-ng")
    done = run_cli("--phrase", "marvin", "--out", tmp_path, "--confusable", "--near-misses", 4, "--count", 8,
                   "--engines", "espeak-ng")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "marvin.confusable.json").read_text())
    words = list_words(tmp_path)
    assert manifest["role"] == "confusable" and sorted(words) == sorted(manifest["phrases"]) and "marvin" not in words
    assert sum(map(len, words.values())) == 8 and all(len(files) == 2 for files in words.values())
