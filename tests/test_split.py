"""The official Speech Commands split, on the real official lists and the mini set."""
from collections import Counter

import pytest

from training.config import BACKGROUND_NOISE_DIR, SILENCE, UNKNOWN, KWS12_WORDS, labels_for
from training.data import DataError, list_words, read_list, speaker_of, split_of


def test_official_lists_have_the_published_counts_and_no_shared_speaker(shared_data):
    lists = shared_data / "speech_commands_v0.02_official_lists"
    validation = read_list(lists / "validation_list.txt")
    testing = read_list(lists / "testing_list.txt")
    assert len(validation) == 9981
    assert len(testing) == 11005
    assert not validation & testing
    assert not {speaker_of(p) for p in validation} & {speaker_of(p) for p in testing}
    assert all(not p.startswith(BACKGROUND_NOISE_DIR) for p in validation | testing)


def test_every_unlisted_clip_is_training_and_speakers_stay_in_one_split(mini_set):
    validation = read_list(mini_set / "validation_list.txt")
    testing = read_list(mini_set / "testing_list.txt")
    splits = Counter()
    speakers = {"training": set(), "validation": set(), "testing": set()}
    for word, files in list_words(mini_set).items():
        for path in files:
            split = split_of(f"{word}/{path.name}", validation, testing)
            splits[split] += 1
            speakers[split].add(speaker_of(path.name))
    # The mini set's README: 2,419 training, 539 validation and 366 testing clips.
    assert splits == {"training": 2419, "validation": 539, "testing": 366}
    assert not speakers["training"] & speakers["validation"]
    assert not speakers["training"] & speakers["testing"]
    assert not speakers["validation"] & speakers["testing"]


def test_background_noise_is_never_a_word_or_class(mini_set):
    assert BACKGROUND_NOISE_DIR not in list_words(mini_set)
    for preset in ("kws12", "wakeword"):
        assert BACKGROUND_NOISE_DIR not in labels_for(preset)


def test_label_presets():
    assert labels_for("kws12") == [SILENCE, UNKNOWN, *KWS12_WORDS]
    assert labels_for("wakeword") == [SILENCE, UNKNOWN, "marvin"]
    assert labels_for("wakeword", ["yes", "no"]) == [SILENCE, UNKNOWN, "yes", "no"]
    with pytest.raises(ValueError, match="kws12 has a fixed word set"):
        labels_for("kws12", ["yes"])
    with pytest.raises(ValueError, match="unknown preset 'foo'"):
        labels_for("foo")


def test_missing_list_is_named(tmp_path):
    with pytest.raises(DataError, match="validation_list.txt is missing"):
        read_list(tmp_path / "validation_list.txt")


def test_the_negatives_folders_split_the_same_whichever_folder_is_named(shared_data):
    """A quarter for training (mining), a quarter for validation (calibration), half for testing (the benchmark),
    decided by each file's name and size: naming the folder or its parent gives every file the same split."""
    from training.data import negatives_split, split_negatives

    negatives = shared_data / "negatives"
    by_parent = {split: set(split_negatives(negatives, split)) for split in ("training", "validation", "testing")}
    by_child = {split: set(split_negatives(negatives / "picovoice_wake_words", split)) for split in by_parent}
    for split in by_parent:
        assert by_child[split] == {p for p in by_parent[split] if "picovoice_wake_words" in p.parts}
    every = set().union(*by_parent.values())
    assert sum(len(files) for files in by_parent.values()) == len(every) > 1500  # disjoint, and all of them
    shares = {split: len(files) / len(every) for split, files in by_parent.items()}
    assert abs(shares["training"] - 0.25) < 0.04 and abs(shares["validation"] - 0.25) < 0.04
    assert abs(shares["testing"] - 0.5) < 0.04
    assert all(negatives_split(p) == "testing" for p in by_parent["testing"])
