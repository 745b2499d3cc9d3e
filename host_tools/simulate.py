"""Device simulator: the board's own loop (firmware/lib/kws_core kws_pipeline) on the host, hearing audio files.

    python host_tools/simulate.py AUDIO... [--model ARTIFACT] [--out FILE] [--pty [--pty-link PATH]] [--speed X | --realtime]
    python -m host_tools.simulate --benchmark AUDIO...          (make host-benchmark)

AUDIO: WAV, FLAC or Ogg files, or folders searched for them; any sample rate and channel count, converted
as training converts (training.data.audio_blocks), read in bounded memory (an overnight recording streams).
The files make one continuous stream, each followed by --gap seconds of silence (default 1 s: a one-second
clip then stands alone, as a spoken command would, instead of sharing the recognizer's averaging window and
suppression with its neighbours). The stream enters the core's ring buffer in PDM blocks (the manifest's
app.pdm_block_samples) and the loop runs after each, as on the board. The model is a model artifact
(training/artifact.py): firmware/src/generated (what `make flash` flashes) by default, or a run folder; the
core is built for that artifact's manifest, so any trained model simulates as its own firmware would run.

Output: exactly the firmware's serial protocol (firmware/PROTOCOL.md), BOOT first, a STAT last when the
audio ends (so a reader's device time reaches the end of the stream), lines ending in "\\r\\n", to stdout,
--out FILE and/or --pty (a pseudo-terminal; its path, or --pty-link, is printed on stderr). Clocks: device
time (DET t=, STAT up_ms and its period) is the audio's sample time, samples heard / sample rate; the
durations (DET us=, STAT inf_*_us, feat_mean_us) are the host's, measured around the TFLM invoke and the C
feature frame: the simulated board is this computer.
"""
from __future__ import annotations

import argparse
import ctypes
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python host_tools/simulate.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from host_tools.arguments import positive_number, positive_seconds, seconds
from host_tools.c_build import FirmwareBuildError
from host_tools.core import Pipeline, load_core
from host_tools.protocol import boot_differences, parse_line
from host_tools.pty_port import Outputs, PortError, PseudoTerminal
from training.artifact import FIRMWARE_GENERATED_DIR, Artifact, ArtifactError, load_artifact
from training.data import AUDIO_SUFFIXES, DataError, audio_blocks, audio_files, to_int16

# Line noise and a record cut short, as a serial line shows them (--garbage-every).
GARBAGE = (b"\xff\xfe\x00\x1b[0m#@! line noise \xc3\x28", b"KWS2 DET t=12 label=")


class SimulatorError(Exception):
    """A problem with the user's input, stated in its terms."""


@dataclass(frozen=True)
class StreamOptions:
    gap_s: float = 1.0  # silence after each file
    speed: float | None = None  # pace device time at this multiple of real time (None: as fast as it can)
    reset_after_s: float | None = None  # reset the board every this many seconds of audio
    reset_gap_s: float = 0.5  # how long the pty stays away on a reset
    garbage_every_s: float | None = None  # inject line noise and a cut-off record this often
    skip_bad_audio: bool = False  # skip (and report) unreadable files instead of stopping


# ---------------------------------------------------------------- input


def audio_paths(items: list[Path]) -> list[Path]:
    paths = []
    for item in map(Path, items):
        if item.is_dir():
            paths += audio_files(item, recursive=True)
        elif not item.is_file():
            raise SimulatorError(f"{item}: no such file or folder")
        elif item.suffix.lower() not in AUDIO_SUFFIXES:
            raise SimulatorError(f"{item}: not an audio file ({', '.join(AUDIO_SUFFIXES)})")
        else:
            paths.append(item)
    return paths


def file_blocks(path: Path, rate: int, block: int, gap_s: float, skipped: list[str] | None):
    """int16 blocks of `block` samples of one file followed by its gap, cut from the file's start (the last
    one shorter), read in bounded memory. With `skipped`, a file that fails is ended where it failed and
    its error appended; without, the error stops the stream."""
    pending = np.zeros(0, np.int16)
    try:
        for audio in audio_blocks(path, rate):
            pending = np.concatenate([pending, to_int16(audio)])
            whole = len(pending) // block * block
            yield from np.split(pending[:whole], whole // block) if whole else ()
            pending = pending[whole:]
    except DataError as error:
        if skipped is None:
            raise
        skipped.append(str(error))
        print(f"simulate: skipped the rest of {path}: {error}", file=sys.stderr, flush=True)
    pending = np.concatenate([pending, np.zeros(round(gap_s * rate), np.int16)])
    for start in range(0, len(pending), block):
        yield pending[start : start + block]


# ---------------------------------------------------------------- the board


class Board:
    """kws_pipeline for one model artifact, with TFLM's Python runtime as its model and the samples heard as
    its clock."""

    def __init__(self, artifact: Artifact, send, record: list | None = None):
        from tflite_micro.python.tflite_micro import runtime as tflm  # not training.quantize: no TensorFlow

        manifest = artifact.manifest
        self.rate, self.input_shape = manifest.features.sample_rate, manifest.input.shape
        self.interpreter = tflm.Interpreter.from_bytes(artifact.model, arena_size=manifest.arena_bytes)
        self.samples, self.invoke_s = 0, 0.0
        self.record = record  # (device ms, int8 outputs) of every inference, for replaying the recognizer
        self.pipeline = Pipeline(load_core(artifact), self.invoke, self.now_ms, now_us, send)

    def now_ms(self) -> int:
        return (self.samples * 1000 // self.rate) & 0xFFFFFFFF

    def invoke(self, features, feature_count: int, scores, score_count: int) -> bool:
        start = time.perf_counter()
        try:
            shape = self.input_shape
            if feature_count != math.prod(shape):
                raise ValueError(f"the core passed {feature_count} features, the model takes {math.prod(shape)}")
            self.interpreter.set_input(np.ctypeslib.as_array(features, (feature_count,)).reshape(shape), 0)
            self.interpreter.invoke()
            output = np.ascontiguousarray(self.interpreter.get_output(0), np.int8)
            if output.size != score_count:
                raise ValueError(f"the model gives {output.size} scores, the core has room for {score_count}")
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
        self.pipeline.write(np.ascontiguousarray(block))
        self.samples += len(block)
        self.pipeline.step()


def now_us() -> int:
    return (time.perf_counter_ns() // 1000) & 0xFFFFFFFF


def checked_send(artifact: Artifact, outputs: Outputs):
    """The board's line output, which also checks that its BOOT describes the artifact it was given."""
    def send(line: bytes) -> None:
        if line.startswith(b"KWS2 BOOT "):
            differences = boot_differences(parse_line(line.decode()), artifact.manifest)
            if differences:
                raise SimulatorError(f"the core built for {artifact.source} reports another contract: "
                                     f"{'; '.join(differences)} (a stale build in build/host_core?)")
        outputs.line(line)
    return send


# ---------------------------------------------------------------- the run


def simulate(artifact: Artifact, paths: list[Path], outputs: Outputs, options: StreamOptions = StreamOptions(),
             record: list | None = None) -> dict:
    """Streams every file through the board, then sends a last STAT (so a reader's device time reaches the
    stream's end); returns timing figures (seconds) and the skipped files. With `record`, every inference's
    (device ms, int8 outputs) of the first boot (the one listen.py scores) is appended to it."""
    rate, block = artifact.manifest.features.sample_rate, artifact.manifest.app.pdm_block_samples
    send = checked_send(artifact, outputs)
    board = Board(artifact, send, record)
    heard = booted_at = garbage_at = 0  # samples: in all, at the last boot, at the last garbage
    skipped: list[str] = []
    started, wall_start = time.perf_counter(), time.monotonic()
    for path in paths:
        for samples in file_blocks(path, rate, block, options.gap_s, skipped if options.skip_bad_audio else None):
            if options.speed:
                delay = wall_start + heard / rate / options.speed - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            board.hear(samples)
            heard += len(samples)
            if options.garbage_every_s and heard - garbage_at >= options.garbage_every_s * rate:
                garbage_at = heard
                for line in GARBAGE:
                    outputs.line(line)
            if options.reset_after_s and heard - booted_at >= options.reset_after_s * rate:
                booted_at = heard
                outputs.reset(options.reset_gap_s)
                board = Board(artifact, send)  # a new boot: device time starts at 0
    board.pipeline.send_stats()
    return {"audio_s": heard / rate, "run_s": time.perf_counter() - started, "invoke_s": board.invoke_s,
            "skipped_files": skipped}


def benchmark(artifact: Artifact, paths: list[Path]) -> None:
    """Speed as a multiple of real time, on one core, writing nowhere."""
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    figures = simulate(artifact, paths, Outputs(None, False, None), StreamOptions())
    audio_s, run_s, invoke_s = figures["audio_s"], figures["run_s"], figures["invoke_s"]
    print(f"simulator speed, one core: {audio_s / run_s:.0f}x real time ({audio_s:.1f} s of audio in {run_s:.2f} s, "
          "reading and resampling the files included)")
    print(f"  TFLM Python runtime invoke: {invoke_s:.2f} s ({invoke_s / run_s:.0%}); reading, ring buffer, MFCC, "
          f"window, recognizer, ctypes and Python per block: {run_s - invoke_s:.2f} s ({1 - invoke_s / run_s:.0%})")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("audio", nargs="+", type=Path, help="WAV/FLAC/Ogg files or folders, streamed in this order")
    parser.add_argument("--model", type=Path, default=FIRMWARE_GENERATED_DIR,
                        help="model artifact: a run folder or a generated folder (default firmware/src/generated)")
    parser.add_argument("--out", type=Path, help="write the serial output to FILE (with --pty: a copy)")
    parser.add_argument("--pty", action="store_true", help="write to a new pseudo-terminal (its path goes to stderr)")
    parser.add_argument("--pty-link", type=Path, help="with --pty: a symlink to the current pty, kept across resets")
    parser.add_argument("--pty-timeout", type=positive_seconds, default=30.0,
                        help="seconds to wait for a reader to open, read and finish reading the pty (default 30)")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=positive_number, help="pace device time at X times real time (default: as fast as it can)")
    pace.add_argument("--realtime", dest="speed", action="store_const", const=1.0, help="pace as the board: --speed 1")
    parser.add_argument("--gap", type=seconds, default=1.0, help="seconds of silence after each file (default 1)")
    parser.add_argument("--skip-bad-audio", action="store_true", help="skip unreadable files (listed on stderr)")
    parser.add_argument("--reset-after", type=positive_seconds, metavar="S",
                        help="reset the board every S seconds of audio: BOOT again, device time from 0; "
                             "with --pty the port closes mid-line and reopens as a new pty")
    parser.add_argument("--reset-gap", type=seconds, default=0.5, help="seconds the pty stays away on a reset (0.5)")
    parser.add_argument("--garbage-every", type=positive_seconds, metavar="S",
                        help="inject a line of noise and a truncated record every S seconds of audio")
    parser.add_argument("--benchmark", action="store_true", help="print the speed on one core instead of the output")
    args = parser.parse_args(argv)
    if args.pty_link is not None and not args.pty:
        parser.error("--pty-link needs --pty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = StreamOptions(args.gap, args.speed, args.reset_after, args.reset_gap, args.garbage_every, args.skip_bad_audio)
    # SIGTERM and SIGHUP end the run as Ctrl-C does: through the clean-up below
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    outputs = None
    try:
        paths, artifact = audio_paths(args.audio), load_artifact(args.model)  # before the board boots
        if args.benchmark:
            benchmark(artifact, paths)
            return 0
        outputs = Outputs(args.out, not args.pty and args.out is None, None)
        if args.pty:
            outputs.pty = PseudoTerminal(args.pty_link, args.pty_timeout)
            outputs.pty.open()  # waits for a reader, as the board waits for a monitor
        figures = simulate(artifact, paths, outputs, options)
        outputs.close()
        if figures["skipped_files"]:
            print(f"simulate: {len(figures['skipped_files'])} unreadable file(s) skipped", file=sys.stderr)
    except KeyboardInterrupt:
        print("simulate: interrupted", file=sys.stderr)
        return 130
    except (SimulatorError, DataError, ArtifactError, PortError, FirmwareBuildError) as error:
        print(f"simulate: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # stdout's reader went away (| head): not an error of the simulation
        return 0
    finally:
        if outputs is not None:
            outputs.close(drain=False)  # after an error or an interrupt: the link goes, nothing waits
    return 0


if __name__ == "__main__":
    sys.exit(main())
