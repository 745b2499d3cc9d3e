"""listen.py against simulate.py --pty, both run as a user runs them, over a real pseudo-terminal, on real
clips: detections, false triggers, the log, resets, garbage, Ctrl-C, --reference and --play."""
import ctypes.util
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO_ROOT, missing
from firmware_build import ARTIFACT, MANIFEST
from host_tools import scoring
from host_tools.protocol import Detection, ProtocolError, parse_line

KEYWORDS = list(MANIFEST.keywords)
GAP_S = 1.0  # simulate.py's default silence after each file


def keyword_clips(mini_set, count=20):
    """The first test-split clips of the current model's keywords (one second each), about `count` in all, spread
    over the keywords (a wake word: `count` of its one keyword; kws12: 2 of each of 10)."""
    listed = (mini_set / "testing_list.txt").read_text().split()
    per_label = -(-count // len(KEYWORDS))
    return [mini_set / name for label in KEYWORDS for name in [n for n in listed if n.startswith(label + "/")][:per_label]]


def session(tmp_path, audio, simulate_args=(), listen_args=(), log_before=""):
    """Runs simulate.py --pty and listen.py --json on its port until the simulator is done, then Ctrl-C.
    Returns (lines sent, listen's JSON events, the log entries, listen's stderr)."""
    link, sent, log = tmp_path / "ttyKWS", tmp_path / "sent.txt", tmp_path / "listen.jsonl"
    log.write_text(log_before)
    simulator = subprocess.Popen([sys.executable, "host_tools/simulate.py", "--pty", "--pty-link", link, "--out", sent,
                                  "--pty-timeout", "30", *map(str, simulate_args), *map(str, audio)],
                                 cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    listener = subprocess.Popen([sys.executable, "host_tools/listen.py", link, "--json", "--log", log,
                                 *map(str, listen_args)], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    try:
        assert simulator.wait(timeout=60) == 0, simulator.stderr.read()
        listener.send_signal(signal.SIGINT)
        out, err = listener.communicate(timeout=30)
    finally:
        for process in (simulator, listener):
            if process.poll() is None:
                process.kill()
    assert listener.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    lines = [line.decode("ascii", "backslashreplace") for line in sent.read_bytes().split(b"\r\n")[:-1]]
    return lines, events, [json.loads(line) for line in log.read_text().splitlines()[1 if log_before else 0:]], err


def records(lines):
    """The lines that are records (garbage and cut-off lines are not)."""
    parsed = []
    for line in lines:
        try:
            parsed.append(parse_line(line))
        except ProtocolError:
            pass
    return parsed


def of(events, kind):
    return [e for e in events if e["event"] == kind]


def test_keywords_resets_garbage_and_ctrl_c_over_a_pty(tmp_path, mini_set):
    clips = keyword_clips(mini_set)
    earlier = json.dumps({"host_time": 0, "line": "an earlier session"}) + "\n"
    lines, events, log, _ = session(tmp_path, clips, ["--reset-after", 15, "--garbage-every", 6], log_before=earlier)
    # the log: appended to, every line received with its host time, exactly what was sent
    assert (tmp_path / "listen.jsonl").read_text().startswith(earlier)
    assert [entry["line"] for entry in log if "line" in entry] == lines
    assert all(entry["host_time"] > 0 for entry in log)
    summary = of(events, "summary")[-1]
    boots = sum(" BOOT " in line for line in lines)
    resets = boots - 1
    audio_s = len(clips) * (1 + GAP_S)
    assert resets == int(audio_s // 15) >= 2
    detections = [r for r in records(lines) if isinstance(r, Detection)]
    assert summary["detections"] == len(detections) == len(of(events, "detection"))
    assert summary["boots"] == boots and summary["partial"] == resets
    assert summary["malformed"] == sum(line.startswith("KWS2 DET t=12 label=") for line in lines) == int(audio_s // 6)
    assert summary["other"] == int(audio_s // 6)  # the noise lines
    assert summary["disconnects"] == resets + 1  # each reset, and the simulator's end
    assert summary["lines"] == len(lines)
    # device time, up to the last STAT/DET of each boot: a reset loses up to a STAT period (5 s), the end of
    # the stream nothing (the simulator's last STAT)
    assert audio_s - 5 * resets <= summary["listened_s"] <= audio_s
    # keywords are detected with the label of the clip then heard (device time restarts at each reset)
    boot, heard = -1, []
    for event in events:
        boot += event["event"] == "boot"
        if event["event"] == "detection":
            clip = clips[int((15 * boot + event["time_ms"] / 1000) // (1 + GAP_S))]
            heard.append((event["label"], clip.parent.name))
    print(f"\n{len(clips)} keyword clips, {resets} resets: detected (label, clip) {heard}")
    assert len(heard) >= len(clips) // 3 and all(label == clip for label, clip in heard)


def test_negatives_count_as_false_triggers_with_a_poisson_interval(tmp_path, shared_data):
    negatives = sorted((shared_data / "negatives" / "picovoice_wake_words" / "computer").iterdir())[:25]
    lines, events, _, _ = session(tmp_path, negatives, ["--gap", "0"], ["--expect", "none"])
    summary = of(events, "summary")[-1]
    count = sum(isinstance(r, Detection) for r in records(lines))
    triggers = summary["false_triggers"]
    assert triggers["count"] == count == summary["detections"]
    rate, low, high = scoring.rate_per_hour(count, summary["listened_s"])
    assert (triggers["per_hour"], triggers["low"], triggers["high"]) == pytest.approx((rate, low, high))
    assert summary["listened_s"] >= 60
    print(f"\n{len(negatives)} negative clips, {summary['listened_s']:.0f} s: {count} false triggers, "
          f"{rate:.0f}/h [{low:.0f}, {high:.0f}]")


def test_reference_scoring_of_a_simulated_track(tmp_path, mini_set):
    clips = keyword_clips(mini_set, count=10)
    track = tmp_path / "track.csv"  # each clip is one second, followed by GAP_S of silence, from device time 0
    track.write_text("start_s,end_s,label\n" + "".join(
        f"{i * (1 + GAP_S)},{i * (1 + GAP_S) + 1},{clip.parent.name}\n" for i, clip in enumerate(clips)))
    lines, events, _, _ = session(tmp_path, clips, [], ["--reference", track])
    reference = of(events, "summary")[-1]["reference"]
    sent = records(lines)
    detections = [(r.time_ms / 1000, r.label) for r in sent if isinstance(r, Detection)]
    covered = max(getattr(r, "time_ms", getattr(r, "uptime_ms", 0)) for r in sent) / 1000
    assert covered == len(clips) * (1 + GAP_S)  # the last STAT: every keyword of the track is scored
    expected = scoring.score(detections, scoring.read_reference(track), covered)
    assert reference == {**expected.summary(), "offset_s": 0.0, "false_alarm_times_s": [t for t, _ in expected.false_alarms],
                         "scored_boots": 1, "later_boots_not_scored": 0}
    assert reference["not_covered"] == 0 and reference["hits"] >= len(clips) // 3
    assert reference["hits"] + reference["misses"] == len(clips)
    print(f"\nreference: {reference}; detections {detections}")


def test_play_runs_through_the_real_audio_library_into_alsas_null_device(tmp_path, shared_data):
    try:
        import sounddevice  # noqa: F401
    except ImportError:
        missing("sounddevice not installed: pip install -e '.[host]'")
    except OSError:
        missing("PortAudio not found: apt-get install libportaudio2")
    if ctypes.util.find_library("asound") is None:
        missing("ALSA's library not found: apt-get install libasound2")
    home = tmp_path / "home"
    home.mkdir()
    (home / ".asoundrc").write_text("pcm.!default { type null }\nctl.!default { type null }\n")
    clip = shared_data / "micro_speech_testdata" / "yes_1000ms.wav"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "host_tools/listen.py", tmp_path / "no-such-port", "--play", clip, "--json"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                            env={"HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 4  # the 1 s track, then PLAY_TAIL_S of listening
    assert of([json.loads(line) for line in result.stdout.splitlines()], "summary")[0]["lines"] == 0


def test_simulator_refuses_an_artifact_whose_model_disagrees_with_its_manifest(tmp_path, shared_data):
    """A run folder whose report describes another model (a mixed or damaged artifact) is refused, naming the
    file, before anything runs; so is one whose labels do not fit the model's output."""
    run = tmp_path / "run"
    run.mkdir()
    manifest = MANIFEST.to_dict()
    (run / "model_int8.tflite").write_bytes(ARTIFACT.model[:-100])
    (run / "report.json").write_text(json.dumps({"manifest": manifest}))
    clip = shared_data / "micro_speech_testdata" / "yes_1000ms.wav"

    def simulate():
        return subprocess.run([sys.executable, "-m", "host_tools.simulate", "--model", run, clip],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)

    result = simulate()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(run / "model_int8.tflite") in result.stderr and "not the one its manifest describes" in result.stderr
    (run / "model_int8.tflite").write_bytes(ARTIFACT.model)
    labels = [*MANIFEST.labels, "marvin"]  # one label more than the model has outputs
    keywords = [*MANIFEST.keywords, "marvin"]
    (run / "report.json").write_text(json.dumps({"manifest": {**manifest, "labels": labels, "keywords": keywords}}))
    result = simulate()
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(run / "model_int8.tflite") in result.stderr
    assert f"{len(labels)} labels need int8 [1, {len(labels)}]" in result.stderr
