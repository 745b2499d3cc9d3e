"""Synthetic positives in training: the split rule (by clip, never testing), --no-real-positives, near misses as
unknown, and a phrase with a space through training, export, the C header and the device's BOOT record."""
import io
import json
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, missing, run_module
from training.config import SILENCE, UNKNOWN, FeatureConfig
from training.data import is_synthetic, synthetic_split
from training.dataset import plan_splits
from training.synthesize import SynthesisError
from training.synthetic_sets import engines_for_training, for_training, other_words, others_for_training, voices_found
from training.tts_engines import ENGINES, TRAINING_ENGINES, find_engines

ESPEAK = ("espeak-ng",)  # hundreds of voices, and fast


@pytest.fixture(scope="module")
def espeak_clips(tmp_path_factory):
    """60 synthetic clips of "yes" and 30 of its near misses (espeak-ng's hundreds of voices: both splits get some)."""
    engines, _ = find_engines()
    if "espeak-ng" not in {e.name for e in engines}:
        pytest.skip("espeak-ng not installed: apt-get install espeak-ng")
    cache = tmp_path_factory.mktemp("synthetic-cache")
    return for_training("yes", 60, 30, cache, jobs=2, engines=ESPEAK, log=io.StringIO()), cache


def test_every_voice_of_an_engine_with_few_voices_trains_and_validates():
    """One clip in five validates, whatever its voice: an engine's only voice (piper's) is never held out of training."""
    for voice in ("tts-piper-en_us-joe-medium", "tts-pico-en-gb", "tts-rhvoice-slt"):
        splits = [synthetic_split(f"{voice}_nohash_{i}.wav") for i in range(200)]
        assert 20 <= splits.count("validation") <= 60 and splits.count("training") + splits.count("validation") == 200


def test_synthetic_clips_split_by_clip_and_never_reach_testing(espeak_clips, mini_set):
    folders, _ = espeak_clips
    labels = [SILENCE, UNKNOWN, "yes"]
    plans, _ = plan_splits(mini_set, labels, FeatureConfig(), synthetic=folders, negatives=[])
    made = {split: [(p, k) for p, k in plan.items if is_synthetic(p)] for split, plan in plans.items()}
    assert not made["testing"] and made["training"] and made["validation"]
    assert all(synthetic_split(p) == split for split in ("training", "validation") for p, _ in made[split])
    positives = sum(1 for split in made for p, k in made[split] if labels[k] == "yes")
    near_misses = [p for split in made for p, k in made[split] if labels[k] == UNKNOWN]
    assert positives == 60 and len(near_misses) == 30 and all(p.parent.name != "yes" for p in near_misses)

    real = {split: [p for p, k in plan.items if labels[k] == "yes" and not is_synthetic(p)] for split, plan in plans.items()}
    assert all(real.values())  # real positives stay beside the synthetic ones by default
    alone, _ = plan_splits(mini_set, labels, FeatureConfig(), synthetic=folders, real_positives=False)
    for split in ("training", "validation"):
        assert all(is_synthetic(p) for p, k in alone[split].items if labels[k] == "yes")
    assert [p for p, k in alone["testing"].items if labels[k] == "yes"] == real["testing"]  # testing: recordings


def test_synthesis_for_training_is_made_once_and_reused(espeak_clips):
    folders, cache = espeak_clips
    before = {p: p.stat().st_mtime_ns for folder in folders for p in folder.rglob("*.wav")}
    log = io.StringIO()
    assert for_training("yes", 60, 30, cache, jobs=2, engines=ESPEAK, log=log) == folders
    assert log.getvalue().count("reusing") == 2
    assert {p: p.stat().st_mtime_ns for folder in folders for p in folder.rglob("*.wav")} == before


def test_clips_drawn_from_other_ranges_are_made_again(espeak_clips, tmp_path, monkeypatch):
    """A cached folder is reused only while the code draws its clips from the same ranges."""
    def synthesised() -> str:
        log = io.StringIO()
        for_training("no", 6, 0, tmp_path, jobs=1, engines=ESPEAK, log=log)
        return log.getvalue()
    assert "writing 6" in synthesised() and "reusing 6" in synthesised()
    monkeypatch.setattr("training.synthesize.SHIFT_RANGE", (-2.5, 2.5))
    assert "writing 6" in synthesised() and "reusing 6" in synthesised()


def test_a_folder_being_synthesised_is_never_seen_half_written(espeak_clips, tmp_path):
    """While a training writes its clips, their folder is the earlier (stale) one or the whole new one: a training
    started meanwhile never reads half of it, and nothing is left beside it."""
    folder = tmp_path / "synthetic" / "no-espeak-ng-positive-24-seed1"
    (folder / "no").mkdir(parents=True)
    (folder / "no.synthesis.json").write_text(json.dumps({"engines": {"an engine no longer here": 1}, "count_requested": 24}))
    stray = folder / "no" / "tts-gone_nohash_0.wav"
    stray.write_bytes(b"")
    make = "import io, sys; from training.synthetic_sets import for_training; for_training('no', 24, 0, sys.argv[1], 1, ('espeak-ng',), log=io.StringIO())"
    process = subprocess.Popen([sys.executable, "-c", make, str(tmp_path)], cwd=REPO_ROOT)
    seen = set()
    while process.poll() is None:
        try:
            manifest = json.loads((folder / "no.synthesis.json").read_text())
            seen.add("stale" if stray.exists() else ("whole" if len(list((folder / "no").iterdir())) == manifest.get("written")
                                                      else "half"))
        except FileNotFoundError:
            seen.add("absent")  # between setting the stale folder aside and renaming the new one
        time.sleep(0.001)
    assert process.wait() == 0 and "half" not in seen and "stale" in seen, seen
    manifest = json.loads((folder / "no.synthesis.json").read_text())
    assert not stray.exists() and manifest["count_requested"] == 24 and len(list((folder / "no").glob("*.wav"))) == 24
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temporary folder left
    (tmp_path / "made-by-mkdir").mkdir()
    assert folder.stat().st_mode == (tmp_path / "made-by-mkdir").stat().st_mode  # readable as the umask allows


def test_training_takes_its_engines_where_installed_and_every_engine_without_them(monkeypatch):
    """--synthetic-engines: those engines if all are installed; if one is missing, every engine, and a note naming
    its packages."""
    installed = {engine.name for engine in find_engines()[0]}
    if not set(TRAINING_ENGINES) <= installed:
        missing(f"the engines training uses by default, {', '.join(TRAINING_ENGINES)}: pip install -e '.[tts]'; "
                "apt-get install rhvoice rhvoice-english (Debian's non-free section)")
    log = io.StringIO()
    assert engines_for_training(TRAINING_ENGINES, log) == TRAINING_ENGINES and not log.getvalue()
    assert engines_for_training(("espeak-ng", "rhvoice"), log) == ("espeak-ng", "rhvoice")
    monkeypatch.setenv("PATH", "/nonexistent")  # no engine run as a program is found; piper (a Python package) is
    assert engines_for_training(TRAINING_ENGINES, log) == ENGINES
    assert "rhvoice: not installed or without an English voice; install the Debian packages rhvoice and rhvoice-english" \
        in log.getvalue() and "piper" not in log.getvalue()


def test_an_unwritable_cache_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SynthesisError, match=f"{blocker / 'synthetic'}: cannot write synthetic clips there"):
        for_training("yes", 4, 0, blocker, jobs=1, engines=ESPEAK, log=io.StringIO())
    assert blocker.read_text() == ""


def test_other_words_train_as_unknown_and_never_as_a_keyword(espeak_clips, mini_set):
    """Synthetic clips of Speech Commands' other words sit beside synthetic keywords as unknown, leaving out
    every keyword and any word a keyword holds (or that holds one)."""
    _, cache = espeak_clips
    assert "sheila" not in other_words(["sheila"]) and "three" in other_words(["tree"])
    assert "marvin" not in other_words(["hey marvin"]) and len(other_words(["hey nano"])) == 25
    labels = [SILENCE, UNKNOWN, "yes", "marvin"]
    folder = others_for_training(["yes", "marvin"], 40, cache, jobs=2, engines=ESPEAK, log=io.StringIO())
    assert sorted(d.name for d in folder.iterdir() if d.is_dir()) == sorted(other_words(["yes", "marvin"]))
    plans, _ = plan_splits(mini_set, labels, FeatureConfig(), synthetic=[folder], negatives=[])
    made = {split: [(p, k) for p, k in plan.items if is_synthetic(p)] for split, plan in plans.items()}
    assert not made["testing"] and sum(map(len, made.values())) == 40
    assert {labels[k] for items in made.values() for _, k in items} == {UNKNOWN}


def test_a_phrase_without_recordings_trains_exports_and_boots(espeak_clips, kws12_run, mini_set, shared_data, tmp_path):
    """"hey nano" has no recording: it trains on synthetic clips alone, starting from a kws12 run's features
    (--init-from, kept but for the last block: --freeze-loaded), its test split holds only negatives, and the
    exported firmware settings and the device's BOOT record carry the phrase."""
    import numpy as np

    from host_tools.protocol import Boot, parse_line
    from host_tools.simulate import StreamOptions, simulate
    from host_tools.pty_port import Outputs
    from training.artifact import load_artifact
    from training.model import keras

    _, cache = espeak_clips
    run, firmware, base = tmp_path / "run", tmp_path / "firmware", kws12_run[0] / "run"
    result = run_module("training.train", "--data-dir", mini_set, "--keywords", "hey nano", "--synthetic-positives",
                        "80", "--near-misses", "20", "--epochs", "2", "--unknown-share", "2", "--negatives",
                        shared_data / "negatives" / "free_spoken_digits_8khz", "--validation-minutes", "2",
                        "--init-from", base, "--freeze-loaded", "--cache-dir", cache, "--out", run, "--firmware-dir", firmware)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"started from {base}: 18 layers' weights, frozen up to the last block" in result.stdout
    before, after = (keras.models.load_model(folder / "model_float.keras") for folder in (base, run))
    pairs = [(b, a) for b, a in zip(before.layers, after.layers) if b.weights]
    last_block = max(i for i, (b, _) in enumerate(pairs) if isinstance(b, keras.layers.DepthwiseConv2D))
    assert all(np.array_equal(x, y) for b, a in pairs[:last_block] for x, y in zip(b.get_weights(), a.get_weights()))
    assert not np.array_equal(pairs[-2][0].get_weights()[0], pairs[-2][1].get_weights()[0])  # the last block learnt
    assert before.output_shape[-1] == 12 and after.output_shape[-1] == 3
    report = json.loads((run / "report.json").read_text())
    assert report["manifest"]["labels"][-1] == "hey nano" and report["dataset"]["synthetic_clips"]["testing"] == 0
    assert report["dataset"]["splits"]["testing"]["hey nano"] == 0 and report["dataset"]["synthetic_clips"]["training"]
    assert '"hey nano"' in (firmware / "src" / "generated" / "kws_settings.h").read_text()
    engines = engines_for_training(TRAINING_ENGINES, io.StringIO())  # the default: piper and rhvoice, as in CI
    assert report["dataset"]["synthetic_engines"] == list(TRAINING_ENGINES)
    positives = cache / "synthetic" / f"hey-nano-{'+'.join(engines)}-positive-80-seed1"
    assert json.loads((positives / "hey nano.synthesis.json").read_text())["engines"] == voices_found(engines)

    lines = []

    class Collect(Outputs):
        def line(self, text: bytes) -> None:
            lines.append(text.decode())

    clip = next((positives / "hey nano").glob("*.wav"))
    simulate(load_artifact(run), [clip], Collect(None, False, None), StreamOptions(), [])
    boot = next(record for record in map(parse_line, lines) if isinstance(record, Boot))
    assert "hey nano" in boot.labels and any("BOOT" in line and "hey+nano" in line for line in lines)


@pytest.mark.parametrize("options, message", [
    (["--arch", "tiny_conv"], "its model is dscnn with input (49, 10, 1), this run's tiny_conv"),
    (["--init-from", "{root}/cache"], "no readable model_float.keras there"),
])
def test_a_base_run_of_another_kind_is_refused_before_training(kws12_run, options, message):
    root = kws12_run[0]
    result = run_module("training.train", "--init-from", root / "run", *[o.format(root=root) for o in options])
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
