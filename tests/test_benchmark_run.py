"""`python -m host_tools.benchmark` in a reduced form (one kws12 model, a 1-epoch wake-word model, a 2-minute
stream of real clips), run as a user runs it: the stream's score equals the one obtained independently
from the simulator's own serial output, and a second run reuses the trained models."""
import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, run_module
from host_tools import scoring
from host_tools.protocol import Detection, parse_line


@pytest.fixture(scope="module")
def benchmark_run(tmp_path_factory, shared_data, mini_set):
    out = tmp_path_factory.mktemp("benchmark")
    args = ["--data-dir", mini_set, "--test-set", shared_data / "speech_commands_test_set_v0.02_mini",
            "--negatives", shared_data / "negatives" / "picovoice_wake_words", "--archs", "tiny_conv",
            "--epochs", "1", "--wakeword-epochs", "1", "--validation-minutes", "2", "--target-fa-per-hour", "1000",
            "--limit-per-label", "20", "--stream-minutes", "2", "--stream-keywords", "6", "--out", out]
    first = run_module("host_tools.benchmark", *args, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return out, args, first


def test_the_stream_score_equals_the_simulators_own_detections_scored_by_hand(benchmark_run):
    out, _, _ = benchmark_run
    report = json.loads((out / "report.json").read_text())
    stream = report["stream"]
    (run,) = [p for p in (out / "runs").iterdir() if p.name.startswith("wakeword-dscnn-yes-") and p.is_dir()]
    # the simulator as a user runs it on the written stream, its core built for the wake-word run
    simulated = subprocess.run([sys.executable, "host_tools/simulate.py", "--gap", "0", "--model", run,
                                out / "stream.wav"], cwd=REPO_ROOT, capture_output=True, timeout=300)
    assert simulated.returncode == 0, simulated.stderr.decode()
    records = [parse_line(line) for line in simulated.stdout.decode().split("\r\n")[:-1]]
    assert records[-1].uptime_ms == 120_000  # the last STAT: the whole stream was heard
    detections = [(r.time_ms / 1000, r.label) for r in records if isinstance(r, Detection)]
    expected = scoring.score(detections, scoring.read_reference(out / "stream.csv"), 120.0)
    assert {k: stream["device"][k] for k in expected.summary()} == expected.summary()
    assert stream["device"]["false_alarm_times_s"] == [t for t, _ in expected.false_alarms]
    assert stream["replay_equals_device"] is True
    assert expected.summary()["hits"] + expected.summary()["misses"] == stream["keywords"] == 6
    # the sweep replays the recognizer at every threshold: at the default one it is the device
    (default,) = [p for p in stream["sweep"] if round(p["detection_threshold"], 3) == round(stream["default_threshold"], 3)]
    assert {k: default[k] for k in expected.summary()} == expected.summary()
    assert stream["sweep"][0]["hits"] >= stream["sweep"][-1]["hits"]


def test_the_report_states_what_a_short_stream_can_resolve(benchmark_run):
    out, _, _ = benchmark_run
    text = (out / "report.md").read_text()
    assert "one false accept in this stream is 30.00/h" in text  # 2 minutes
    assert "FRR at 0.5 FA/h (openWakeWord): not resolvable" in text
    assert "| `tiny_conv` (kws12) |" in text and "Published figures (not measured here)" in text
    assert (out / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "stream.csv").read_text().startswith("start_s,end_s,label\n")
    negatives = json.loads((out / "report.json").read_text())["negatives_only"]
    assert negatives["files"] > 100 and negatives["audio_s"] > 600  # the test share of 1,124 three-second files
    assert f"{negatives['false_accepts']} false accepts = {negatives['fa_per_hour']:.2f} per hour" in text


def test_a_second_run_reuses_the_trained_models(benchmark_run):
    out, args, first = benchmark_run
    logs = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.log")}
    assert len(logs) == 2 and first.stdout.count(": training (1 epochs)") == 2
    second = run_module("host_tools.benchmark", *args, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count(": reused") == 2 and ": training" not in second.stdout
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*.log")} == logs
