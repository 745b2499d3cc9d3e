"""One device contract: a setting changed in a fresh export (nowhere else) reaches the host build of the core,
the simulator, the footprint report and the benchmark's replay; manifests compare runs; multi-word labels
travel through the C header and the protocol."""
import ctypes
import json
from dataclasses import replace

import numpy as np
import pytest

from conftest import REPO_ROOT, require_tool, run_module
from firmware_build import ARTIFACT, MANIFEST, available
from host_tools import benchmark, core as core_module, footprint, simulate
from host_tools.protocol import Boot, Detection, boot_differences, parse_line
from host_tools.pty_port import Outputs
from training.artifact import Manifest, load_artifact
from training.export import export

CHANGES = ["app.inference_every_hops=5", "detection.detection_threshold=0.55"]


@pytest.fixture(scope="module")
def changed(tmp_path_factory):
    """The committed model re-exported by `python -m training.export` with two settings changed."""
    firmware = tmp_path_factory.mktemp("contract") / "firmware"
    result = run_module("training.export", REPO_ROOT / "firmware" / "src" / "generated", "--firmware-dir", firmware,
                        *[arg for change in CHANGES for arg in ("--set", change)])
    assert result.returncode == 0, result.stderr
    assert "changed app.inference_every_hops: 10 -> 5" in result.stdout
    return load_artifact(firmware / "src" / "generated")


def test_the_export_differs_from_the_committed_one_in_exactly_the_changed_settings(changed):
    assert MANIFEST.differences(changed.manifest) == [
        "app.inference_every_hops: 10 -> 5", f"detection.detection_threshold: {MANIFEST.detection.detection_threshold!r} -> 0.55"]
    assert changed.model == ARTIFACT.model and changed.manifest.digest() != MANIFEST.digest()
    settings = (changed.source / "kws_settings.h").read_text()
    assert "#define KWS_INFERENCE_EVERY_HOPS 5\n" in settings and "#define KWS_DETECTION_THRESHOLD 0.550000012f\n" in settings
    on_disk = json.loads((changed.source / "kws_manifest.json").read_text())
    assert Manifest.from_dict(on_disk) == changed.manifest  # the JSON twin of the header


def test_the_host_build_follows_the_export_and_two_models_share_a_process(changed):
    committed, other = available(core_module.load_core, ARTIFACT), available(core_module.load_core, changed)
    assert committed.library != other.library
    assert other.recognizer_default_config().detection_threshold == np.float32(0.55)
    assert committed.recognizer_default_config().detection_threshold == np.float32(MANIFEST.detection.detection_threshold)
    assert (other.pipeline_config().inference_every_hops, committed.pipeline_config().inference_every_hops) == (5, 10)


def simulated(artifact, clip, tmp_path):
    record, log = [], tmp_path / f"{artifact.manifest.digest()[:8]}.txt"
    outputs = Outputs(log, False, None)
    simulate.simulate(artifact, [clip], outputs, simulate.StreamOptions(), record)
    outputs.close()
    return record, [parse_line(line) for line in log.read_bytes().decode().split("\r\n")[:-1]]


def test_the_simulator_runs_the_exported_cadence_and_threshold(changed, shared_data, tmp_path):
    clip = shared_data / "micro_speech_testdata" / "yes_1000ms.wav"
    for artifact, every in ((ARTIFACT, 10), (changed, 5)):
        record, records = simulated(artifact, clip, tmp_path)
        boot = records[0]
        assert isinstance(boot, Boot) and boot.inference_every_hops == every and boot_differences(boot, artifact.manifest) == []
        times = [t for t, _ in record]
        # ms between inferences: the exported cadence (device time advances by whole 16 ms PDM blocks)
        assert np.mean(np.diff(times)) == pytest.approx(every * 20, abs=8) and np.ptp(np.diff(times)) <= 16
    changed_boot = simulated(changed, clip, tmp_path)[1][0]
    assert changed_boot.detection_threshold == np.float32(0.55)
    assert [line.split(":")[0] for line in boot_differences(changed_boot, MANIFEST)] == [
        "manifest", "detection_threshold", "inference_every_hops"]


def test_the_footprint_report_follows_the_cadence(changed):
    require_tool("qemu-system-arm", "qemu-system-arm")
    committed, other = available(footprint.measure, ARTIFACT), available(footprint.measure, changed)
    assert (committed["inference_every_hops"], other["inference_every_hops"]) == (10, 5)
    assert other["duty"]["mid"] > committed["duty"]["mid"]
    assert other["hop"] == committed["hop"] and other["model_flash"] == committed["model_flash"]
    assert "every 5 hops (100 ms)" in footprint.report(changed, other)


def test_the_benchmark_replay_follows_the_threshold(changed, mini_set, tmp_path):
    from host_tools.stream import build_stream

    stream = build_stream(mini_set, MANIFEST.keywords[0], [], duration_s=60, keyword_count=4, seed=3)
    wav, reference = tmp_path / "stream.wav", tmp_path / "stream.csv"
    stream.write(wav, reference)
    result = benchmark.run_stream(changed, wav, reference, tmp_path / "device.txt")
    assert result["default_threshold"] == 0.55 and result["replay_equals_device"] is True
    assert 0.55 in [point["detection_threshold"] for point in result["sweep"]]
    committed = benchmark.run_stream(ARTIFACT, wav, reference, tmp_path / "committed.txt")
    assert result["inferences"] == pytest.approx(2 * committed["inferences"], abs=2)


def test_multi_word_labels_travel_through_the_header_and_the_protocol(tmp_path):
    """A label with a space ("hey nano") in the C header, in DET and BOOT lines (sent as hey+nano), parsed back."""
    labels = (*MANIFEST.labels[:2], "hey nano", *MANIFEST.labels[3:])
    manifest = replace(MANIFEST, labels=labels)
    export(tmp_path, manifest, ARTIFACT.model, "tests/test_contract.py")
    assert '"hey nano"' in (tmp_path / "kws_settings.h").read_text()
    core = available(core_module.load_core, load_artifact(tmp_path))
    buf, length = ctypes.create_string_buffer(512), ctypes.c_size_t()
    assert core.format_detection(buf, 512, 1234, 2, 0.9, 5, ctypes.byref(length)) == 0
    assert b"label=hey+nano " in buf.value
    assert parse_line(buf.value.decode()) == Detection(1234, "hey nano", 0.9, 5)
    boot_settings = core_module.BootSettings(ctypes.pointer(core.recognizer_default_config()), 10, 20)
    assert core.format_boot(buf, 512, ctypes.byref(boot_settings), None) == 0
    assert parse_line(buf.value.decode()).labels == labels


def test_a_listener_warns_when_the_board_runs_another_export(changed, shared_data, tmp_path):
    """listen.py, given the committed artifact, hears a (simulated) board running the changed export over a pty."""
    from test_host_listen import of, session

    clip = shared_data / "micro_speech_testdata" / "yes_1000ms.wav"
    _, events, _, err = session(tmp_path, [clip], ["--model", changed.source])
    (boot,) = of(events, "boot")
    assert [line.split(":")[0] for line in boot["differences"]] == ["manifest", "detection_threshold",
                                                                    "inference_every_hops"]
    assert "listen: warning: the board does not run" in err and "inference_every_hops: board 5, artifact 10" in err
    (tmp_path / "same").mkdir()
    _, events, _, err = session(tmp_path / "same", [clip], ["--model", changed.source], ["--model", changed.source])
    assert of(events, "boot")[0]["differences"] == [] and "warning" not in err
