"""Nothing silently wrong, for the simulator, its serial link and listen.py: stale links, interrupted runs,
corrupt audio mid-stream, overnight-length files in bounded memory, implausible device records and ports
that cannot exist. (tests/README.md's reliability table lists these cases.)"""
import json
import os
import signal
import subprocess
import sys
import time
import tty

import numpy as np
import pytest
import soundfile

from conftest import REPO_ROOT, interruptible
from firmware_build import MANIFEST

CLIP = "micro_speech_testdata/yes_1000ms.wav"
MONITOR = """import sys, serial
port = serial.Serial(sys.argv[1])
try:
    while True:
        port.read(port.in_waiting or 1)
except serial.SerialException:  # the simulator went away, as it is meant to
    pass
"""


def start_simulator(tmp_path, *args, reader=True):
    """simulate.py --pty with a link, and (if `reader`) a process holding the port open as a monitor does."""
    link = tmp_path / "ttyKWS"
    simulator = subprocess.Popen([sys.executable, "host_tools/simulate.py", "--pty", "--pty-link", link, "--realtime",
                                  *map(str, args)], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
                                 preexec_fn=interruptible)
    deadline = time.monotonic() + 30
    while not link.is_symlink():
        assert time.monotonic() < deadline and simulator.poll() is None, simulator.stderr.read()
        time.sleep(0.05)
    holder = subprocess.Popen([sys.executable, "-c", MONITOR, link]) if reader else None
    time.sleep(1.5)
    return simulator, link, holder


def stop(*processes):
    for process in processes:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_simulator_removes_its_link_without_a_traceback(shared_data, tmp_path, how):
    simulator, link, holder = start_simulator(tmp_path, shared_data / "negatives" / "librispeech_ogg")
    try:
        simulator.send_signal(how)
        _, err = simulator.communicate(timeout=30)
    finally:
        stop(simulator, holder)
    assert simulator.returncode == 130 and "interrupted" in err and "Traceback" not in err
    assert not link.is_symlink()


def test_a_killed_simulators_link_leads_nowhere_even_when_its_pty_number_is_reused(shared_data, tmp_path):
    simulator, link, holder = start_simulator(tmp_path, shared_data / "negatives" / "librispeech_ogg")
    target = os.readlink(link)
    simulator.kill()  # SIGKILL: nothing of the simulator runs any more
    simulator.wait()
    stop(holder)
    pts = target.split("/root", 1)[1]  # /proc/<pid>/root/dev/pts/N
    assert target.startswith(f"/proc/{simulator.pid}/root/dev/pts/")
    terminals = []
    try:
        while len(terminals) < 64:  # another terminal gets the same /dev/pts number
            master, slave = os.openpty()
            terminals += [master, slave]
            if os.ttyname(slave) == pts:
                break
        assert os.ttyname(terminals[-1]) == pts
        tty.setraw(terminals[-1])
        os.write(terminals[-2], b"KWS2 DET t=1000 label=yes score=0.990 us=1\r\n")  # typed on that terminal
        assert link.is_symlink() and not link.exists()  # the link dangles: it went through the dead simulator
        listener = subprocess.run([sys.executable, "host_tools/listen.py", link, "--json", "--duration", "2"],
                                  cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    finally:
        for fd in terminals:
            os.close(fd)
    summary = [json.loads(line) for line in listener.stdout.splitlines()][-1]
    assert listener.returncode == 0 and summary["lines"] == 0 and summary["detections"] == 0
    assert "cannot open" in listener.stderr


def test_corrupt_audio_mid_stream_stops_naming_it_or_is_skipped(shared_data, tmp_path):
    folder = tmp_path / "night"
    folder.mkdir()
    clip = shared_data / CLIP
    (folder / "1.wav").symlink_to(clip)
    wav = clip.read_bytes()
    (folder / "2.wav").write_bytes(wav[:44] + wav[44:] * 3 + b"\x00")  # header says 1 s; then garbage
    (folder / "2.flac").write_bytes(b"fLaC" + os.urandom(3000))  # unreadable from its first block
    (folder / "3.wav").symlink_to(clip)
    command = [sys.executable, "host_tools/simulate.py", folder, "--out", tmp_path / "out.txt"]
    stopped = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert stopped.returncode == 2 and str(folder / "2.flac") in stopped.stderr and "Traceback" not in stopped.stderr
    skipped = subprocess.run([*command, "--skip-bad-audio"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert skipped.returncode == 0, skipped.stderr
    assert f"skipped the rest of {folder / '2.flac'}" in skipped.stderr and "1 unreadable file(s) skipped" in skipped.stderr
    last = (tmp_path / "out.txt").read_bytes().decode().split("\r\n")[-2]
    # 1.wav, 2.wav and 3.wav with their 1 s gaps, and the gap after 2.flac, which ended where it failed
    assert last.startswith("KWS2 STAT up_ms=7000 ")


def test_an_hour_of_44khz_stereo_streams_in_bounded_memory(tmp_path):
    """One hour of 44.1 kHz stereo (635 MB as WAV; 1.9 GB as float samples): the simulator's peak resident
    memory stays under 300 MB, because it reads, mixes down and resamples block by block."""
    path = tmp_path / "hour.wav"
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", 44100, 2, "PCM_16") as f:
        for _ in range(60):
            f.write((rng.standard_normal((44100 * 60, 2)) * 0.05).astype(np.float32))
    # a fresh parent whose only child is the simulator: its children's peak RSS is the simulator's
    measure = ("import resource, subprocess, sys; status = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(status)")
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "host_tools/simulate.py", path,
                             "--out", tmp_path / "out.txt"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    peak_mb = int(result.stdout.split()[-1]) / 1024
    print(f"\none hour of 44.1 kHz stereo: simulator peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 300
    assert " up_ms=3601000 " in (tmp_path / "out.txt").read_bytes().decode().split("\r\n")[-2]  # all of it heard


class FakeBoard:
    """A pty the test writes records to, standing in for a board, with listen.py reading it."""

    def __init__(self, tmp_path):
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.path = os.ttyname(slave)
        os.close(slave)
        self.listener = subprocess.Popen([sys.executable, "host_tools/listen.py", self.path, "--json", "--expect", "none"],
                                         cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(2)

    def send(self, *lines: str) -> None:
        for line in lines:
            os.write(self.master, line.encode() + b"\r\n")
            time.sleep(0.02)

    def finish(self):
        time.sleep(0.5)
        self.listener.send_signal(signal.SIGINT)
        out, err = self.listener.communicate(timeout=30)
        os.close(self.master)
        return [json.loads(line) for line in out.splitlines()], err


def boot_line() -> str:
    from host_tools.protocol import VERSION

    m, d = MANIFEST, MANIFEST.detection
    return (f"KWS{VERSION} BOOT proto={VERSION} model={m.model_sha256[:16]} manifest={m.digest()[:16]} "
            f"labels={','.join(label.replace(' ', '+') for label in m.labels)} rate=16000 window=640 hop=320 fft=640 "
            f"mels=40 mfcc=10 frames=49 in_scale={m.input.scale:.9g} in_zp={m.input.zero_point} "
            f"out_scale={m.output.scale:.9g} out_zp={m.output.zero_point} avg_ms={d.average_window_ms} "
            f"threshold={d.detection_threshold:.9g} suppress_ms={d.suppression_ms} min_count={d.minimum_count} "
            f"every={m.app.inference_every_hops} gain={m.app.pdm_gain}")


def stat(up_ms: int) -> str:
    return f"KWS2 STAT up_ms={up_ms} ips=5.00 inf_mean_us=100 inf_max_us=120 feat_mean_us=3 overruns=0"


def test_implausible_records_are_counted_and_shown_never_used(tmp_path):
    board = FakeBoard(tmp_path)
    keyword = MANIFEST.keywords[0]
    board.send(boot_line(), stat(5000), f"KWS2 DET t=7000 label={keyword} score=0.950 us=100", stat(10000),
               stat(3_610_000),  # one hour ahead of a clock that ticks every 5 s: a corrupted record
               f"KWS2 DET t=11000 label={keyword} score=nan us=100",
               f"KWS2 DET t=12000 label={keyword} score=1.500 us=100",
               f"KWS2 DET t=-5 label={keyword} score=0.900 us=100",  # not a uint32: malformed
               stat(2000),  # back in time without a BOOT or a reconnect
               stat(15000), "garbled line \x01", stat(25000))  # one lost line: two periods are fine
    events, err = board.finish()
    summary = events[-1]
    assert "Traceback" not in err
    assert summary["implausible"] == 4 and summary["malformed"] == 1 and summary["detections"] == 1
    assert summary["listened_s"] == 25.0  # the hour-ahead STAT moved nothing
    assert summary["false_triggers"]["per_hour"] == pytest.approx(3600 / 25)
    shown = [e["why"] for e in events if e["event"] == "implausible"]
    assert "jumped 3600000 ms ahead" in shown[0] and "not a probability" in shown[1] and "went back" in shown[3]


def regular_file(folder):
    (folder / "port.txt").write_text("not a port")
    return folder / "port.txt"


@pytest.mark.parametrize("make, message", [
    (regular_file, "is a regular file, not a serial port"),
    (lambda tmp: "/dev/null", "is a device but not a terminal"),
    (lambda tmp: tmp, "is a folder, not a serial port"),
])
def test_a_port_that_cannot_exist_fails_at_once(tmp_path, make, message):
    started = time.monotonic()
    result = subprocess.run([sys.executable, "host_tools/listen.py", make(tmp_path), "--duration", "60"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert time.monotonic() - started < 20


@pytest.mark.parametrize("args, message", [
    (["--gap", "-1"], "--gap: -1 must be a number of seconds >= 0"),
    (["--gap", "1e12"], "at most 604800"),
    (["--reset-after", "0"], "--reset-after: 0 must be a number of seconds > 0"),
    (["--garbage-every", "nan"], "--garbage-every: nan must be"),
    (["--speed", "-2"], "--speed: -2 must be a positive number"),
    (["--model", "/nonexistent"], "/nonexistent does not exist"),
])
def test_bad_simulator_arguments_are_refused_by_name(shared_data, args, message):
    result = subprocess.run([sys.executable, "host_tools/simulate.py", shared_data / CLIP, *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--duration", "-5"], "--duration: -5 must be a number of seconds > 0"),
    (["--baud", "0"], "--baud 0 is not a serial baud rate"),
    (["--offset", "inf"], "--offset: inf must be"),
])
def test_bad_listener_arguments_are_refused_by_name(args, message):
    result = subprocess.run([sys.executable, "host_tools/listen.py", "/dev/ttyACM9", *args], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
