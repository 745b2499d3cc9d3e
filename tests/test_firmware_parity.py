"""The exported model decides the same on the core's streamed features as on training's features,
and `make firmware-check` (host_tools.firmware_check) reports it on real audio."""
import re

import pytest

from conftest import run_module
from firmware_build import MANIFEST, core  # noqa: F401  (core is a fixture)
from host_tools import firmware_check


def test_predictions_agree_on_the_mini_sets_test_split(core, mini_set):
    """TFLM on the core's features (int16 through the ring buffer, streaming MFCC, C int8 window) vs
    TFLM on training.features.mfcc + quantize, every clip of testing_list.txt."""
    paths = [mini_set / name for name in (mini_set / "testing_list.txt").read_text().split()]
    parity = firmware_check.compare(core, paths)
    print(f"\n{len(paths)} test clips: predictions agree {parity.agreement:.4%}, int8 features identical "
          f"{parity.identical_share:.5%}, max {parity.max_step} step, max float difference {parity.float_difference:.3g}")
    for line in parity.disagreements:
        print("  " + line)
    assert len(paths) == 366
    assert parity.agreement >= 0.995
    assert parity.identical_share >= 0.999 and parity.max_step <= 1
    # the model really discriminates: both sides predict several different labels (a wake word: the keyword and not)
    assert len(set(parity.training_labels.tolist())) >= min(5, len(core.manifest.labels) - 1)


FIGURES = {
    "identical": r"int8 features identical: ([\d.]+)% of (\d+) values",
    "max_step": r"largest int8 difference: (\d+) quantization step",
    "float": r"largest float difference: ([\d.e+-]+) \(one int8 step",
    "agreement": r"prediction agreement \(TFLM, arena (\d+) B\): (\d+)/(\d+) clips",
    "total": r"total\s+(\d+)\s+(\d+)\s+(\d+)",
}


@pytest.fixture
def mixed_clips(shared_data, tmp_path):
    """Links (no copies) to real clips in every format and rate the check accepts, in subfolders."""
    negatives = shared_data / "negatives"
    picks = {"wav16k": sorted((shared_data / "micro_speech_testdata").glob("*_1000ms.wav")),
             "wav8k": sorted((negatives / "free_spoken_digits_8khz").glob("*.wav"))[:2],
             "flac": sorted((negatives / "picovoice_wake_words" / "computer").iterdir())[:2],
             "ogg": sorted((negatives / "librispeech_ogg").iterdir())[:1]}
    for folder, paths in picks.items():
        (tmp_path / folder).mkdir()
        for path in paths:
            (tmp_path / folder / path.name).symlink_to(path)
    (tmp_path / "notes.txt").write_text("not audio")
    return tmp_path, sum(len(paths) for paths in picks.values())


def test_firmware_check_prints_parity_and_sizes_for_real_clips(mixed_clips):
    folder, count = mixed_clips
    result = run_module("host_tools.firmware_check", folder)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    found = {name: re.search(pattern, result.stdout) for name, pattern in FIGURES.items()}
    assert all(found.values()), {name: bool(m) for name, m in found.items()}
    assert float(found["identical"].group(1)) >= 99.9
    assert int(found["identical"].group(2)) == count * MANIFEST.features.n_frames * MANIFEST.features.n_mfcc
    assert int(found["max_step"].group(1)) <= 1
    assert float(found["float"].group(1)) < MANIFEST.input.scale / 20
    arena, agree, total = map(int, found["agreement"].groups())
    assert arena == MANIFEST.arena_bytes and total == count and agree == count
    text, data, bss = map(int, found["total"].groups())
    assert text > 5000 and data == 0 and bss == 0  # code and tables only: the state is the application's


def test_firmware_check_names_a_folder_without_audio(tmp_path):
    (tmp_path / "readme.txt").write_text("no clips here")
    result = run_module("host_tools.firmware_check", tmp_path)
    assert result.returncode == 2
    assert str(tmp_path) in result.stderr and "no audio files" in result.stderr


def test_firmware_check_fails_below_the_required_agreement(shared_data):
    """Agreement is at most 100%, so asking for more must fail: the exit status carries the verdict."""
    result = run_module("host_tools.firmware_check", shared_data / "micro_speech_testdata", "--min-agreement", "1.01")
    assert result.returncode == 1
    assert "below --min-agreement" in result.stderr
