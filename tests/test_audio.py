"""Reading any user audio, and every bad input named with a clear error before training starts."""
import os

import numpy as np
import pytest
import soundfile

from conftest import run_module
from training.config import FeatureConfig, labels_for
from training.augment import NoiseBank
from training.data import DataError, fit_length, read_audio
from training.dataset import load_dataset, load_test_set, plan_splits

CFG = FeatureConfig()


def test_reads_8khz_wav_22khz_ogg_and_flac_at_16khz(shared_data):
    negatives = shared_data / "negatives"
    digit = negatives / "free_spoken_digits_8khz" / "0_george_0.wav"
    ogg = next((negatives / "librispeech_ogg").glob("*.ogg"))
    flac = next((negatives / "picovoice_wake_words" / "alexa").glob("*.flac"))
    for path in (digit, ogg, flac):
        info = soundfile.info(str(path))
        audio = read_audio(path, 16000)
        assert audio.dtype == np.float32 and audio.ndim == 1
        assert abs(len(audio) - info.frames * 16000 / info.samplerate) <= 2, path
        assert 0.001 < np.abs(audio).max() <= 1.0, path


def test_stereo_is_mixed_down(shared_data, tmp_path):
    clip = read_audio(shared_data / "micro_speech_testdata" / "yes_1000ms.wav", 16000)
    soundfile.write(tmp_path / "stereo.wav", np.stack([clip, 0.5 * clip], axis=1), 16000, subtype="FLOAT")
    np.testing.assert_allclose(read_audio(tmp_path / "stereo.wav", 16000), 0.75 * clip, atol=1e-6)


def test_short_clips_are_padded_and_long_ones_cropped_to_their_loudest_second(shared_data):
    short = read_audio(shared_data / "micro_speech_testdata" / "yes_30ms.wav", 16000)
    padded = fit_length(short, 16000)
    assert len(short) == 480 and len(padded) == 16000
    np.testing.assert_array_equal(padded[:480], short)
    assert not padded[480:].any()
    long = read_audio(next((shared_data / "negatives" / "picovoice_wake_words" / "jarvis").glob("*.flac")), 16000)
    assert len(long) > 2 * 16000
    cropped = fit_length(long, 16000)
    energies = [np.sum(long[s : s + 16000] ** 2) for s in range(0, len(long) - 16000, 160)]
    assert np.sum(cropped.astype(np.float64) ** 2) >= max(energies) - 1e-6


@pytest.mark.parametrize(
    "content, message",
    [
        (b"this is not audio at all", "cannot read audio"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "cannot read audio"),  # a WAV header cut short
    ],
)
def test_unreadable_and_corrupt_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad clip.wav"
    path.write_bytes(content)
    with pytest.raises(DataError, match=f"bad clip.wav: {message}"):
        read_audio(path, 16000)


def test_empty_file_is_named(tmp_path):
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.int16), 16000)
    with pytest.raises(DataError, match="empty.wav: contains no audio samples"):
        read_audio(path, 16000)


def test_bad_files_fail_by_default_or_are_skipped_and_counted(small_dataset, tmp_path):
    bad = small_dataset / "yes" / "broken_nohash_0.flac"
    bad.write_bytes(b"fLaC but not really")
    labels = labels_for("wakeword", ["yes"])
    with pytest.raises(DataError, match="broken_nohash_0.flac: cannot read audio.*--skip-bad-audio"):
        load_dataset(small_dataset, labels, CFG, tmp_path / "cache", splits=("training",))
    dataset = load_dataset(small_dataset, labels, CFG, tmp_path / "cache", splits=("training",), skip_bad=True)
    training = dataset.splits["training"]
    assert training.counts(labels)["yes"] == 20 and len(training.skipped) == 1 and "broken_nohash_0" in training.skipped[0]
    assert training.audio[np.arange(len(training))].shape == (len(training), 16000)


@pytest.fixture
def small_dataset(mini_set, tmp_path):
    """A dataset in the official layout made of links to real clips, to break in each test."""
    root = tmp_path / "sc"
    for word in ("yes", "no", "bed", "_background_noise_"):
        (root / word).mkdir(parents=True)
        for clip in sorted((mini_set / word).iterdir())[:20]:
            os.symlink(clip, root / word / clip.name)
    for name in ("validation_list.txt", "testing_list.txt"):
        (root / name).write_text("")
    return root


def test_dataset_errors_name_the_problem(small_dataset):
    labels = labels_for("wakeword", ["yes"])
    with pytest.raises(DataError, match="keyword 'marvin' is not a word folder in .*words with clips: bed, no, yes"):
        plan_splits(small_dataset, labels_for("wakeword"), CFG)
    (small_dataset / "marvin").mkdir()
    with pytest.raises(DataError, match="keyword 'marvin' is an empty folder"):
        plan_splits(small_dataset, labels_for("wakeword"), CFG)
    with pytest.raises(DataError, match="the validation split has no clips of yes"):
        plan_splits(small_dataset, labels, CFG)
    (small_dataset / "testing_list.txt").unlink()
    with pytest.raises(DataError, match="testing_list.txt is missing"):
        plan_splits(small_dataset, labels, CFG)
    with pytest.raises(DataError, match="does not exist"):
        plan_splits(small_dataset / "nope", labels, CFG)


def test_missing_background_noise_is_named(small_dataset):
    for clip in (small_dataset / "_background_noise_").iterdir():
        clip.unlink()
    with pytest.raises(DataError, match="_background_noise_ has no audio"):
        plan_splits(small_dataset, labels_for("wakeword", ["yes"]), CFG)


def test_canonical_test_set_layout(shared_data, tmp_path):
    test_set = shared_data / "speech_commands_test_set_v0.02_mini"
    bank = NoiseBank.of([np.zeros(16000, np.float32)])
    clips = load_test_set(test_set, labels_for("kws12"), CFG, tmp_path, bank).splits["testing"]
    assert len(clips) == 570 and clips.audio[np.arange(570)].shape == (570, 16000)  # 570 clips and a LICENSE
    counts = clips.counts(labels_for("kws12"))
    assert counts["_silence_"] == len(list((test_set / "_silence_").iterdir()))
    # a wake word found among _unknown_'s <word>_... files keeps its label; the core words become unknown
    wake = load_test_set(test_set, labels_for("wakeword", ["yes", "bird"]), CFG, tmp_path, bank).splits["testing"]
    assert wake.counts(labels_for("wakeword", ["yes", "bird"]))["bird"] == len(list((test_set / "_unknown_").glob("bird_*")))
    with pytest.raises(DataError, match="has no clips of marvinx"):
        load_test_set(test_set, labels_for("wakeword", ["marvinx"]), CFG, tmp_path, bank)


def test_train_reports_bad_data_before_training_starts(small_dataset):
    result = run_module("training.train", "--data-dir", small_dataset, "--keywords", "nope", "--no-export", timeout=120)
    assert result.returncode == 2
    assert "error: keyword 'nope' is not a word folder" in result.stderr
    assert "Traceback" not in result.stderr and "Epoch" not in result.stdout
    result = run_module("training.train", "--data-dir", small_dataset / "absent", "--no-export", timeout=120)
    assert result.returncode == 2 and "absent does not exist" in result.stderr


def test_negative_shares_are_refused_and_shares_above_one_accepted(small_dataset):
    refused = run_module("training.train", "--data-dir", small_dataset, "--unknown-share", "-0.5", "--no-export", timeout=120)
    assert refused.returncode == 2 and "--unknown-share must be a number >= 0, not -0.5" in refused.stderr
    # more negatives than keywords (a wake word's need): capped by the clips there are, not an error
    labels = labels_for("wakeword", ["yes"])
    plans, _ = plan_splits(small_dataset, labels, CFG, silence_share=0.0, unknown_share=5.0, splits=("training",))
    others = sum(len(list((small_dataset / word).iterdir())) for word in ("no", "bed"))
    assert {name: sum(k == labels.index(name) for _, k in plans["training"].items) for name in labels} == {"_silence_": 0, "_unknown_": others, "yes": 20}


def test_silence_clips_span_the_levels_a_microphone_hears(mini_set):
    """The recordings lie at -53 to -45 dBFS; silence clips are drawn over the given range whatever their
    recording level (Google's canonical test set has silence up to -10 dBFS), and never clip the cat."""
    from training.augment import SilenceDraws, rms
    from training.data import read_background_noise, to_float

    bank = NoiseBank.of(read_background_noise(mini_set, CFG))
    draws = SilenceDraws.draw(600, bank, CFG.clip_samples, (-70.0, -10.0), np.random.default_rng(0))
    clips = to_float(draws.rows(np.arange(len(draws)), bank, CFG.clip_samples))
    level = 20 * np.log10(np.maximum(rms(clips), 1e-9))
    peaked = np.abs(clips).max(axis=1) >= 0.99  # scaled down to full scale instead of reaching their level
    assert np.abs(level - draws.levels)[~peaked].max() < 0.5
    assert np.all(level[peaked] < draws.levels[peaked]) and peaked.mean() < 0.2
    assert level.min() < -65 and level.max() > -15
