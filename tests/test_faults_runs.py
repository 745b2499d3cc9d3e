"""Nothing silently wrong, for runs, models and downloads: each bad input or fault gives a clear error naming
the file or value and the fix (no traceback), or the correct result, with nothing half-written.
(tests/README.md's reliability table lists these cases.)"""
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, interruptible, run_module
from firmware_build import ARTIFACT
from test_download import server  # noqa: F401  (the local HTTP server fixture)
from training import download, run_folder
from training.artifact import ArtifactError, load_artifact
from training.flatbuffer import ModelError, inspect_model

QUICK = ["--preset", "kws12", "--epochs", "1", "--limit-per-label", "3", "--no-export"]


def train(mini_set, out, *extra, cache=None, timeout=600):
    return run_module("training.train", "--data-dir", mini_set, *QUICK, "--out", out,
                      "--cache-dir", cache or out.parent / "cache", *extra, timeout=timeout)


def clean_error(result, *fragments):
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-2000:])


@pytest.fixture(scope="module")
def finished_run(mini_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = train(mini_set, out, "--test-set", mini_set.parent / "speech_commands_test_set_v0.02_mini")
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def snapshot(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- run folders


def test_an_existing_run_is_never_replaced_without_overwrite(finished_run, mini_set):
    before = snapshot(finished_run)
    started = time.monotonic()
    clean_error(train(mini_set, finished_run), f"--out {finished_run} already holds a run: pass --overwrite")
    assert time.monotonic() - started < 30 and snapshot(finished_run) == before  # said before any data was read


def test_an_interrupted_rerun_leaves_the_previous_run_whole(finished_run, mini_set):
    before = snapshot(finished_run)
    command = [sys.executable, "-m", "training.train", "--data-dir", str(mini_set), *QUICK[:-1], "--epochs", "50",
               "--no-export", "--out", str(finished_run), "--overwrite", "--cache-dir", str(finished_run.parent / "cache")]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=interruptible, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    for line in process.stdout:  # interrupt once training has written its first checkpoint
        if line.startswith("epoch 3/"):  # training.train's progress line as epoch 3 ends
            break
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 130 and "Traceback" not in output and "interrupted" in output
    assert snapshot(finished_run) == before
    assert not list(finished_run.parent.glob(f".{finished_run.name}.partial-*"))
    load_artifact(finished_run)  # still a consistent artifact


def test_a_complete_rerun_replaces_the_whole_folder(mini_set, tmp_path):
    out = tmp_path / "run"
    assert train(mini_set, out, "--test-set", mini_set.parent / "speech_commands_test_set_v0.02_mini").returncode == 0
    assert (out / "confusion_test_set.png").is_file()
    result = train(mini_set, out, "--overwrite", "--seed", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (out / "confusion_test_set.png").exists()  # no stale file of the older run
    assert json.loads((out / "report.json").read_text())["seed"] == 2
    assert not list(tmp_path.glob(".run.*"))


@pytest.mark.parametrize("where", ["file", "cache"])
def test_an_unwritable_out_or_cache_folder_is_named(mini_set, tmp_path, where):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    if where == "file":
        clean_error(train(mini_set, blocker / "run"), f"--out {blocker / 'run'}")
    else:
        clean_error(train(mini_set, tmp_path / "run", cache=blocker / "cache"), "--cache-dir", str(blocker))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("option, value, message", [
    ("--learning-rate", "nan", "--learning-rate must be a positive number, not nan"),
    ("--silence-share", "nan", "--silence-share must be a number >= 0, not nan"),
    ("--unknown-share", "inf", "--unknown-share must be a number >= 0, not inf"),
    ("--set", "detection.detection_threshold=1.5", "detection_threshold 1.5 must be in (0, 1]"),
    ("--set", "app.audio_ring_samples=1000", "audio_ring_samples 1000 must be a power of two"),
    ("--set", "app.no_such=1", "app has no setting 'no_such'"),
])
def test_bad_training_values_are_refused_by_name(mini_set, tmp_path, option, value, message):
    clean_error(train(mini_set, tmp_path / "run", option, value, timeout=120), message)


def test_a_diverging_run_exports_nothing(mini_set, tmp_path):
    firmware = tmp_path / "firmware"
    result = run_module("training.train", "--data-dir", mini_set, *QUICK[:-1], "--learning-rate", "1e30",
                        "--out", tmp_path / "run", "--firmware-dir", firmware, "--cache-dir", tmp_path / "cache")
    clean_error(result, "not fully int8")
    assert not (tmp_path / "run").exists() and not firmware.exists()


# ---------------------------------------------------------------- model artifacts


def evaluate(model, mini_set):
    return run_module("training.evaluate", "--model", model, "--test-set",
                      mini_set.parent / "speech_commands_test_set_v0.02_mini", "--engines", "tflm", timeout=120)


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "model_int8.tflite").write_bytes((run / "model_int8.tflite").read_bytes()[:5000]),
     "is not the one its manifest describes"),
    (lambda run: (run / "model_int8.tflite").write_bytes(b""), "is not the one its manifest describes"),
    (lambda run: (run / "model_int8.tflite").write_bytes(ARTIFACT.model), "is not the one its manifest describes"),
    (lambda run: (run / "report.json").write_text('{"manifest": {"format": 1, "labels": '), "cannot read it as JSON"),
    (lambda run: (run / "report.json").unlink(), "has neither kws_manifest.json nor report.json"),
])
def test_a_damaged_or_mixed_run_is_refused_naming_the_file(finished_run, mini_set, tmp_path, damage, message):
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", finished_run, run], check=True)
    damage(run)
    clean_error(evaluate(run, mini_set), message, str(run))


def test_a_model_with_a_nan_scale_is_not_a_model(tmp_path):
    from ai_edge_litert import schema_py_generated as schema
    import flatbuffers

    model = schema.ModelT.InitFromPackedBuf(bytearray(ARTIFACT.model), 0)
    model.subgraphs[0].tensors[3].quantization.scale[0] = float("nan")
    builder = flatbuffers.Builder(0)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    with pytest.raises(ModelError, match="non-finite quantization scale"):
        inspect_model(bytes(builder.Output()))
    for garbage in (b"", b"\0" * 64, ARTIFACT.model[:2000]):
        with pytest.raises(ModelError):
            inspect_model(garbage)


def test_a_generated_folder_whose_model_was_replaced_is_refused(tmp_path):
    generated = tmp_path / "generated"
    subprocess.run(["cp", "-r", ARTIFACT.source, generated], check=True)
    (generated / "kws_model.tflite").write_bytes(ARTIFACT.model[::-1])
    with pytest.raises(ArtifactError, match="kws_model.tflite: the model .* is not the one its manifest describes"):
        load_artifact(generated)


# ---------------------------------------------------------------- downloads


def test_a_file_under_the_final_name_is_verified_whatever_its_origin(server, tmp_path):  # noqa: F811
    handler, base = server
    body = bytes(range(256)) * 300
    handler.files["/sc.tar.gz"] = body
    dest, digest = tmp_path / "sc.tar.gz", hashlib.sha256(body).hexdigest()
    dest.write_bytes(body[:10000])  # truncated: resumed
    progress = io.StringIO()
    assert download.download(f"{base}/sc.tar.gz", dest, len(body), digest, progress).read_bytes() == body
    assert "shorter than the pinned" in progress.getvalue() and handler.requests[-1] == ("/sc.tar.gz", "bytes=10000-")
    dest.write_bytes(b"x" * len(body))  # foreign, same size: set aside, the pinned one downloaded
    progress = io.StringIO()
    assert download.download(f"{base}/sc.tar.gz", dest, len(body), digest, progress).read_bytes() == body
    assert "not the pinned archive" in progress.getvalue()
    assert (tmp_path / "sc.tar.gz.rejected").read_bytes() == b"x" * len(body)  # the user's file is kept
    requests = len(handler.requests)
    assert download.download(f"{base}/sc.tar.gz", dest, len(body), digest, progress) == dest
    assert len(handler.requests) == requests  # verified once, then trusted while unchanged


def test_a_part_file_longer_than_the_archive_starts_over(server, tmp_path):  # noqa: F811
    handler, base = server
    body = b"archive" * 1000
    handler.files["/a.tar.gz"] = body
    (tmp_path / "a.tar.gz.part").write_bytes(b"y" * (len(body) + 10))
    progress = io.StringIO()
    download.download(f"{base}/a.tar.gz", tmp_path / "a.tar.gz", len(body), hashlib.sha256(body).hexdigest(), progress)
    assert "longer than the pinned" in progress.getvalue() and handler.requests == [("/a.tar.gz", None)]


def test_every_pinned_archive_is_fetched_over_https():
    assert all(archive.url.startswith("https://") for archive in download.ARCHIVES.values())


# ---------------------------------------------------------------- data and caches


def test_damaged_caches_are_named_and_rebuilt(mini_set, tmp_path, capsys):
    import numpy as np

    from training.config import FeatureConfig, labels_for
    from training.dataset import load_dataset

    def features():
        dataset = load_dataset(mini_set, labels_for("wakeword", ["yes"]), FeatureConfig(), tmp_path,
                               splits=("testing",), limit_per_label=4)
        return dataset.features("testing")

    first = features()
    for cache in (*tmp_path.glob("features/mfcc-*.cache"), *tmp_path.glob("audio/audio-*.cache")):
        cache.write_bytes(cache.read_bytes()[:1000])
        capsys.readouterr()
        np.testing.assert_array_equal(features(), first)
        said = capsys.readouterr().err
        assert f"{cache} is not usable (truncated or incomplete: no trailer at its end): rebuilding it" in said


def test_an_unreadable_split_list_is_named(tmp_path, mini_set):
    data = tmp_path / "sc"
    for word in ("yes", "no", "_background_noise_"):
        (data / word).mkdir(parents=True)
        for clip in sorted((mini_set / word).iterdir())[:8]:
            (data / word / clip.name).symlink_to(clip)
    (data / "validation_list.txt").write_text("")
    (data / "testing_list.txt").mkdir()  # not a file: unreadable
    clean_error(run_module("training.train", "--data-dir", data, "--keywords", "yes", "--no-export",
                           "--out", tmp_path / "run", timeout=120), f"split list {data / 'testing_list.txt'} is not a file")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_benchmark_leaves_no_training_running(tmp_path, stop):
    # The parent stands for `make benchmark`/`make ablation` waiting on a training; the child for the training.
    pid_file, cleaned = tmp_path / "child.pid", tmp_path / "cleaned"
    # The PID is written inside the try, so that a stop that comes as soon as it is seen is caught.
    child = (f"import os, time\ntry:\n    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n    time.sleep(120)\n"
             f"except KeyboardInterrupt:\n    open({str(cleaned)!r}, 'w').close()  # as training removes its scratch")
    parent = ("import sys; from host_tools.benchmark import run_bound; "
              f"sys.exit(run_bound([sys.executable, '-c', {child!r}], open({str(tmp_path / 'log')!r}, 'w')))")
    process = subprocess.Popen([sys.executable, "-c", parent], cwd=REPO_ROOT, preexec_fn=interruptible,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    process.send_signal(stop)
    _, errors = process.communicate(timeout=30)
    assert process.returncode != 0
    assert f"interrupted: stopped the training it ran (its log: {tmp_path / 'log'})" in errors  # said, not silent
    with pytest.raises(ProcessLookupError):  # stopped and reaped by the parent before it ended
        os.kill(child_pid, 0)
    assert cleaned.is_file()  # stopped as by Ctrl-C, so it could clean up


def test_a_killed_writers_scratch_folder_is_removed_by_the_next(tmp_path):
    # SIGKILL leaves a run's (or a synthetic set's) scratch folder; a writer that still runs keeps its own.
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        abandoned = [tmp_path / f".run.partial-{gone.pid}", tmp_path / f".run.replaced-{gone.pid}"]
        busy = tmp_path / f".run.partial-{running.pid}"
        for folder in [*abandoned, busy]:
            folder.mkdir()
            (folder / "model_int8.tflite").write_bytes(b"half")
        with run_folder.writing(tmp_path / "run", overwrite=False) as scratch:
            (scratch / "report.json").write_text("{}")
        assert (tmp_path / "run" / "report.json").is_file()
        assert not any(folder.exists() for folder in abandoned) and (busy / "model_int8.tflite").is_file()
    finally:
        running.kill()
        running.wait()


def test_ctrl_c_on_an_ablation_ends_it_with_a_line_not_a_traceback(mini_set, tmp_path):
    out = tmp_path / "ablation"
    process = subprocess.Popen(
        [sys.executable, "-m", "host_tools.ablation", "--data-dir", mini_set, "--seeds", "1", "--variants",
         "+ hard negatives", "--limit-per-label", "3", "--stream-minutes", "1", "--stream-keywords", "2",
         "--validation-minutes", "1", "--cache-dir", tmp_path / "cache", "--out", out],
        cwd=REPO_ROOT, preexec_fn=interruptible, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    def training_log() -> str:
        return "".join(log.read_text() for log in (out / "runs").glob("*.log")) if (out / "runs").is_dir() else ""
    deadline = time.monotonic() + 300
    while "training dscnn" not in training_log() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # until the training is under way, in its scratch folder
    process.send_signal(signal.SIGINT)  # as Ctrl-C: the terminal's foreground job is the ablation
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 130, errors[-2000:]
    assert "Traceback" not in errors, errors
    assert "interrupted: stopped the training it ran (its log: " in errors
    assert errors.rstrip().endswith("ablation: interrupted; the runs that completed stay cached"), errors[-2000:]
    assert "was left as it was" in training_log() and not list((out / "runs").glob(".*partial*"))  # it cleaned up
