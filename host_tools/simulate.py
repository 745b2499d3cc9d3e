"""Device simulator: the board's own loop (firmware/lib/kws_core kws_pipeline) on the host, hearing audio files.

    python host_tools/simulate.py AUDIO... [--out FILE] [--pty [--pty-link PATH]] [--speed X | --realtime]
    python -m host_tools.simulate --benchmark AUDIO...          (make host-benchmark)

AUDIO: WAV, FLAC or Ogg files, or folders searched for them; any sample rate and channel count, converted
as training converts (training.data.read_audio). The files make one continuous stream, each followed by
--gap seconds of silence (default 1 s: a one-second clip then stands alone, as a spoken command would,
instead of sharing the recognizer's averaging window and suppression with its neighbours). The stream
enters the core's ring buffer in PDM blocks (KWS_PDM_BLOCK_SAMPLES, 16 ms) and the loop runs after each,
as on the board, with the model of firmware/src/generated (what would be flashed) under TFLM's Python
runtime, or --model RUN/model_int8.tflite when its report.json agrees with the generated settings.

Output: exactly the firmware's serial protocol (firmware/PROTOCOL.md), BOOT first, a STAT last when the
audio ends (so a reader's device time reaches the end of the stream), lines ending in "\\r\\n", to stdout,
--out FILE and/or --pty (a pseudo-terminal; its path, or --pty-link, is printed on stderr). Clocks: device time (DET t=, STAT up_ms and its period) is the audio's sample time, samples
heard / 16 kHz; the durations (DET us=, STAT inf_*_us, feat_mean_us) are the host's, measured around
the TFLM invoke and the C feature frame: the simulated board is this computer.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import select
import struct
import sys
import termios
import time
import tty
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python host_tools/simulate.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from host_tools import firmware_core
from host_tools.firmware_core import SETTINGS, app_setting

RATE = SETTINGS["KWS_SAMPLE_RATE"]
BLOCK = app_setting("KWS_PDM_BLOCK_SAMPLES")
WINDOW_VALUES = SETTINGS["KWS_FRAME_COUNT"] * SETTINGS["KWS_MFCC_COUNT"]
# Line noise and a record cut short, as a serial line shows them (--garbage-every).
GARBAGE = (b"\xff\xfe\x00\x1b[0m#@! line noise \xc3\x28", b"KWS1 DET t=12 label=")
CUT_OFF = b"KWS1 STAT up_ms="  # what the port carries when it closes in the middle of a line (--reset-after)


class SimulatorError(Exception):
    """A problem with the user's input or the port, stated in its terms."""


# ---------------------------------------------------------------- input


def audio_paths(items: list[Path]) -> list[Path]:
    from host_tools.firmware_check import audio_files
    from training.data import AUDIO_SUFFIXES

    paths = []
    for item in map(Path, items):
        if item.is_dir():
            paths += audio_files(item)
        elif not item.is_file():
            raise SimulatorError(f"{item}: no such file or folder")
        elif item.suffix.lower() not in AUDIO_SUFFIXES:
            raise SimulatorError(f"{item}: not an audio file ({', '.join(AUDIO_SUFFIXES)})")
        else:
            paths.append(item)
    return paths


def stream(paths: list[Path], gap_s: float):
    """(path, int16 audio followed by the gap's silence) for each file, read when it is reached."""
    from training.data import read_audio, to_int16

    silence = np.zeros(round(gap_s * RATE), np.int16)
    for path in paths:
        yield path, np.concatenate([to_int16(read_audio(path, RATE)), silence])


REPORT_MUST_MATCH = {  # report.json entry -> the generated setting the compiled core was built with
    ("labels",): "KWS_LABELS",
    ("features", "sample_rate"): "KWS_SAMPLE_RATE", ("features", "window_samples"): "KWS_WINDOW_SAMPLES",
    ("features", "hop_samples"): "KWS_HOP_SAMPLES", ("features", "n_fft"): "KWS_FFT_SIZE",
    ("features", "n_mels"): "KWS_MEL_BANDS", ("features", "n_mfcc"): "KWS_MFCC_COUNT",
    ("features", "n_frames"): "KWS_FRAME_COUNT",
    ("quantization", "input_scale"): "KWS_INPUT_SCALE", ("quantization", "input_zero_point"): "KWS_INPUT_ZERO_POINT",
    ("quantization", "output_scale"): "KWS_OUTPUT_SCALE", ("quantization", "output_zero_point"): "KWS_OUTPUT_ZERO_POINT",
}


def load_model(path: Path | None) -> tuple[bytes, int]:
    """(model, arena bytes): the generated model, or a run's when its report.json matches the generated settings."""
    if path is None:
        return firmware_core.exported_model(), SETTINGS["KWS_ARENA_BYTES"]
    report_path = Path(path).parent / "report.json"
    if not Path(path).is_file():
        raise SimulatorError(f"--model {path}: no such file")
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as error:
        raise SimulatorError(f"--model {path}: cannot read the run's report {report_path}: {error}") from None
    for keys, setting in REPORT_MUST_MATCH.items():
        value = report
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        expected = SETTINGS[setting]
        same = list(value) == expected if isinstance(expected, list) else (
            value is not None and np.float32(value) == np.float32(expected))
        if not same:
            raise SimulatorError(f"--model {path}: {report_path} has {'.'.join(keys)}={value!r}, but the core is built "
                                 f"with {setting}={expected!r} (firmware/src/generated): export that run first "
                                 "(training/export.py) or simulate the generated model")
    return Path(path).read_bytes(), int(report["arena_bytes"])


# ---------------------------------------------------------------- the board


class Board:
    """kws_pipeline with TFLM's Python runtime as its model and the samples heard as its clock."""

    def __init__(self, core: firmware_core.Core, model: bytes, arena: int, send, record: list | None = None):
        # TFLM's runtime directly, not training.quantize: that module imports TensorFlow (3 s).
        from tflite_micro.python.tflite_micro import runtime as tflm

        self.interpreter = tflm.Interpreter.from_bytes(model, arena_size=arena)
        self.input_shape = self.interpreter.get_input_details(0)["shape"]
        self.samples = 0
        self.invoke_s = 0.0
        self.record = record  # (device ms, int8 outputs) of every inference, for replaying the recognizer
        self.pipeline = firmware_core.Pipeline(core, self.invoke, self.now_ms, now_us, send)

    def now_ms(self) -> int:
        return (self.samples * 1000 // RATE) & 0xFFFFFFFF

    def invoke(self, features, scores) -> bool:
        start = time.perf_counter()
        try:
            self.interpreter.set_input(np.ctypeslib.as_array(features, (WINDOW_VALUES,)).reshape(self.input_shape), 0)
            self.interpreter.invoke()
            output = np.ascontiguousarray(self.interpreter.get_output(0), np.int8)
        except (RuntimeError, ValueError) as error:  # reported by the pipeline as ERR code=8
            print(f"simulate: TFLM invoke failed: {error}", file=sys.stderr)
            return False
        ctypes.memmove(scores, output.ctypes.data, output.size)
        if self.record is not None:  # the recognizer gets this inference at the same device time
            self.record.append((self.now_ms(), output.reshape(-1).copy()))
        self.invoke_s += time.perf_counter() - start
        return True

    def hear(self, block: np.ndarray) -> None:
        """One PDM block into the ring, then one pass of the loop."""
        self.pipeline.write(block)
        self.samples += len(block)
        self.pipeline.step()


def now_us() -> int:
    return (time.perf_counter_ns() // 1000) & 0xFFFFFFFF


# ---------------------------------------------------------------- outputs


class PseudoTerminal:
    """A pty standing in for the board's USB serial port. Like the board, which waits for a monitor
    before its banner, nothing is written until a reader has opened the port: pyserial flushes the
    input when it opens, which packet mode (TIOCPKT) shows here; a reader that never flushes is
    assumed ready half a second after it opened. `link` is a stable path (a symlink) to the current
    pty, as /dev/serial/by-id/ is for a board that re-enumerates after a reset."""

    READY_WITHOUT_FLUSH_S = 0.5

    def __init__(self, link: Path | None, timeout_s: float):
        self.link, self.timeout_s = link, timeout_s
        self.master = -1
        self.open()

    def open(self) -> None:
        self.master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line editing: bytes pass as a USB CDC port passes them
        self.path = os.ttyname(slave)
        os.close(slave)  # the reader's open is then visible: the master stops reporting a hang-up
        fcntl.ioctl(self.master, termios.TIOCPKT, struct.pack("i", 1))
        os.set_blocking(self.master, False)
        if self.link is not None:
            temporary = self.link.with_name(self.link.name + ".new")
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(self.path)
            temporary.replace(self.link)  # atomic: a reader never finds the link missing
        print(f"simulate: serial port {self.link or self.path}" + (f" -> {self.path}" if self.link else ""),
              file=sys.stderr, flush=True)
        self._wait_for_reader()

    def _wait_for_reader(self) -> None:
        poll = select.poll()
        poll.register(self.master, select.POLLIN)
        deadline, opened = time.monotonic() + self.timeout_s, None
        while time.monotonic() < deadline:
            events = poll.poll(50)
            if any(event & select.POLLHUP for _, event in events):  # nobody has the port open
                opened = None
                time.sleep(0.02)
                continue
            opened = opened or time.monotonic()
            if any(event & select.POLLIN for _, event in events):
                packet = os.read(self.master, 4096)
                if packet and packet[0] & termios.TIOCPKT_FLUSHREAD:
                    return
            if time.monotonic() - opened >= self.READY_WITHOUT_FLUSH_S:
                return
        raise SimulatorError(f"no reader opened {self.link or self.path} within {self.timeout_s:g} s (--pty-timeout)")

    def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:  # the reader is behind: wait, as the board's USB stack would
                if not select.select([], [self.master], [], self.timeout_s)[1]:
                    raise SimulatorError(f"the reader of {self.link or self.path} stopped reading for "
                                         f"{self.timeout_s:g} s (--pty-timeout)") from None

    def _unread(self) -> int:
        """Bytes the reader has not read yet (0 when nobody has the port open)."""
        try:
            slave = os.open(self.path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            return struct.unpack("i", fcntl.ioctl(slave, termios.FIONREAD, b"\0" * 4))[0]
        finally:
            os.close(slave)

    def close(self) -> None:
        """After the reader has read everything (or --pty-timeout), as a board's port disappears."""
        deadline, idle = time.monotonic() + self.timeout_s, 0
        while idle < 2 and time.monotonic() < deadline:  # twice empty: nothing was still on its way
            idle = idle + 1 if self._unread() == 0 else 0
            time.sleep(0.05)
        os.close(self.master)


class Outputs:
    """Where the simulated board's serial output goes: stdout, a file and/or a pty."""

    def __init__(self, out: Path | None, to_stdout: bool, pty: PseudoTerminal | None):
        self.file = open(out, "wb") if out is not None else None
        self.stdout = sys.stdout.buffer if to_stdout else None
        self.pty = pty

    def line(self, text: bytes) -> None:
        self.raw(text + b"\r\n")

    def raw(self, data: bytes) -> None:
        for sink in (self.file, self.stdout):
            if sink is not None:
                sink.write(data)
                sink.flush()
        if self.pty is not None:
            self.pty.write(data)

    def reset(self, gap_s: float) -> None:
        """The board resets: the port closes in the middle of a line and comes back after `gap_s`.
        The cut-off bytes go to the port as they are; a file records them on a line of their own."""
        if self.pty is not None:
            self.pty.write(CUT_OFF)
            for sink in (self.file, self.stdout):
                if sink is not None:
                    sink.write(CUT_OFF + b"\r\n")
            self.pty.close()
            time.sleep(gap_s)
            self.pty.open()

    def close(self) -> None:
        if self.pty is not None:
            self.pty.close()
            if self.pty.link is not None:  # the board is gone for good, not resetting
                self.pty.link.unlink(missing_ok=True)
        if self.file is not None:
            self.file.close()


# ---------------------------------------------------------------- the run


def simulate(args, outputs: Outputs, paths: list[Path], model: bytes, arena: int, record: list | None = None) -> dict:
    """Streams every file through the board, then sends a last STAT (so a reader's device time reaches the
    stream's end); returns timing figures (seconds) for --benchmark. With `record`, every inference's
    (device ms, int8 outputs) of the first boot (the one listen.py scores) is appended to it."""
    core = firmware_core.load_core()
    board = Board(core, model, arena, outputs.line, record)
    heard = booted_at = garbage_at = 0  # samples: in all, at the last boot, at the last garbage
    read_s = run_s = 0.0
    wall_start = time.monotonic()
    audio_files = iter(stream(paths, args.gap))
    while True:
        started = time.perf_counter()
        try:
            _, audio = next(audio_files)
        except StopIteration:
            break
        run_start = time.perf_counter()
        read_s += run_start - started
        for start in range(0, len(audio), BLOCK):
            if args.speed:
                delay = wall_start + heard / RATE / args.speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            board.hear(np.ascontiguousarray(audio[start : start + BLOCK]))
            heard += min(BLOCK, len(audio) - start)
            if args.garbage_every and heard - garbage_at >= args.garbage_every * RATE:
                garbage_at = heard
                for line in GARBAGE:
                    outputs.line(line)
            if args.reset_after and heard - booted_at >= args.reset_after * RATE:
                booted_at = heard
                outputs.reset(args.reset_gap)
                board = Board(core, model, arena, outputs.line)  # a new boot: device time starts at 0
        run_s += time.perf_counter() - run_start
    board.pipeline.send_stats()
    return {"audio_s": heard / RATE, "read_s": read_s, "run_s": run_s, "invoke_s": board.invoke_s}


def benchmark(args, paths: list[Path], model: bytes, arena: int) -> None:
    """Speed as a multiple of real time, on one core, writing nowhere."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    figures = simulate(args, Outputs(None, False, None), paths, model, arena)
    audio_s, run_s, invoke_s = figures["audio_s"], figures["run_s"], figures["invoke_s"]
    print(f"simulator speed, one core: {audio_s / run_s:.0f}x real time ({audio_s:.1f} s of audio in {run_s:.2f} s; "
          f"with reading and resampling the files: {audio_s / (run_s + figures['read_s']):.0f}x)")
    print(f"  TFLM Python runtime invoke: {invoke_s:.2f} s ({invoke_s / run_s:.0%}); ring buffer, MFCC, window, "
          f"recognizer, ctypes and Python per block: {run_s - invoke_s:.2f} s ({1 - invoke_s / run_s:.0%})")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="+", type=Path, help="WAV/FLAC/Ogg files or folders, streamed in this order")
    parser.add_argument("--out", type=Path, help="write the serial output to FILE (with --pty: a copy)")
    parser.add_argument("--pty", action="store_true", help="write to a new pseudo-terminal (its path goes to stderr)")
    parser.add_argument("--pty-link", type=Path, help="with --pty: a symlink to the current pty, kept across resets")
    parser.add_argument("--pty-timeout", type=float, default=30.0,
                        help="seconds to wait for a reader to open, read and finish reading the pty (default 30)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, help="pace device time at X times real time (default: as fast as it can)")
    pace.add_argument("--realtime", dest="speed", action="store_const", const=1.0, help="pace as the board: --speed 1")
    parser.add_argument("--gap", type=float, default=1.0, help="seconds of silence after each file (default 1)")
    parser.add_argument("--model", type=Path, help="RUN/model_int8.tflite instead of firmware/src/generated's model")
    parser.add_argument("--reset-after", type=float, metavar="S",
                        help="reset the board every S seconds of audio: BOOT again, device time from 0; "
                             "with --pty the port closes mid-line and reopens as a new pty")
    parser.add_argument("--reset-gap", type=float, default=0.5, help="seconds the pty stays away on a reset (0.5)")
    parser.add_argument("--garbage-every", type=float, metavar="S",
                        help="inject a line of noise and a truncated record every S seconds of audio")
    parser.add_argument("--benchmark", action="store_true", help="print the speed on one core instead of the output")
    args = parser.parse_args(argv)
    if args.pty_link is not None and not args.pty:
        parser.error("--pty-link needs --pty")
    if args.speed is not None and args.speed <= 0:
        parser.error(f"--speed must be positive, not {args.speed:g}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training.data import DataError

    try:
        paths, (model, arena) = audio_paths(args.audio), load_model(args.model)  # before the board boots
        if args.benchmark:
            benchmark(args, paths, model, arena)
            return 0
        pty = PseudoTerminal(args.pty_link, args.pty_timeout) if args.pty else None
        outputs = Outputs(args.out, not args.pty and args.out is None, pty)
        simulate(args, outputs, paths, model, arena)
        outputs.close()
    except (SimulatorError, DataError, FileNotFoundError, firmware_core.FirmwareBuildError) as error:
        print(f"simulate: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout's reader went away (| head): not an error of the simulation
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
