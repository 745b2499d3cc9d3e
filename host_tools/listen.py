"""Listen to a keyword-spotting board (or host_tools/simulate.py --pty) on its serial port.

    python host_tools/listen.py PORT [--log FILE] [--json] [--duration S] [--baud 115200]
                                     [--expect none | --reference TRACK.csv [--offset S]] [--play TRACK.wav]

Shows the detections live with counters; checks the BOOT banner (protocol version, model hash against
build/latest); survives resets, unplugging (reconnects with backoff) and garbage; Ctrl-C prints a summary
and exits 0. Device time (DET t=, STAT up_ms) is the clock of every figure: listening time is the device
time the board reported, summed over its boots, so a simulator running faster than real time is scored
on audio time and the time while disconnected is not counted. Scoring rules: host_tools/scoring.py.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python host_tools/listen.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from host_tools import scoring
from host_tools.protocol import PREFIX, Boot, Detection, Error, ProtocolError, Stats, parse_line

REPO_ROOT = Path(__file__).resolve().parent.parent
LATEST_MODEL = REPO_ROOT / "build" / "latest" / "model_int8.tflite"
BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)  # between attempts to reopen a port that went away
PLAY_TAIL_S = 3.0  # with --play and no --duration: listen this long after the track, for late detections


class ListenError(Exception):
    """Nothing sensible can be listened to: said in the user's terms, exit status 2."""


@dataclass
class Segment:
    """One boot's stretch of device time, as far as the records show it (ms)."""
    start_ms: int | None
    end_ms: int | None = None
    detections: list[Detection] = field(default_factory=list)

    def reach(self, time_ms: int) -> None:
        self.start_ms = time_ms if self.start_ms is None else self.start_ms
        self.end_ms = time_ms

    @property
    def seconds(self) -> float:
        return 0.0 if self.end_ms is None else (self.end_ms - self.start_ms) / 1000


@dataclass
class Session:
    args: argparse.Namespace
    counts: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    segments: list[Segment] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)
    play_started: float | None = None            # host monotonic time the track started playing
    offset_estimates: list[float] = field(default_factory=list)
    log = None

    # ------------------------------------------------------------ output

    def emit(self, event: str, text: str, **fields) -> None:
        if self.args.json:
            print(json.dumps({"event": event, **fields}), flush=True)
        else:
            print(text, flush=True)

    def write_log(self, **entry) -> None:
        if self.log is not None:
            self.log.write(json.dumps({"host_time": time.time(), **entry}) + "\n")
            self.log.flush()

    # ------------------------------------------------------------ what arrives

    def listened_s(self) -> float:
        return sum(segment.seconds for segment in self.segments)

    def line(self, raw: bytes, partial: bool = False) -> None:
        text = raw.decode("ascii", "backslashreplace").rstrip("\r\n")
        self.write_log(line=text, **({"partial": True} if partial else {}))
        self.counts["lines"] += 1
        if partial:  # cut off by a reset or an unplug: never a record
            self.counts["partial"] += 1
            self.emit("partial", f"  (cut-off line: {text!r})", line=text)
            return
        try:
            record = parse_line(text)
        except ProtocolError as error:
            head, _, rest = text.partition(" ")
            if head.startswith("KWS") and head != PREFIX and rest.startswith("BOOT"):
                raise ListenError(f"the device speaks protocol {head} (its BOOT: {text!r}); this listen.py reads "
                                  f"{PREFIX} only: update host_tools") from None
            kind = "malformed" if text.startswith("KWS") else "other"
            self.counts[kind] += 1
            if kind == "malformed":
                self.emit(kind, f"  (malformed record ignored: {error})", line=text, why=str(error))
            return
        getattr(self, type(record).__name__.lower())(record)

    def boot(self, boot: Boot) -> None:
        self.counts["boots"] += 1
        self.segments.append(Segment(start_ms=0))
        latest = model_hash(self.args.latest)
        if latest is None:
            note = f"no {self.args.latest} to compare it with"
        elif latest == boot.model:
            note = f"the latest trained model ({self.args.latest})"
        else:
            note = (f"WARNING: the latest trained model {self.args.latest} is {latest}: "
                    "the board runs another model (make flash)")
            print(f"listen: warning: board model {boot.model} differs from {self.args.latest} ({latest})",
                  file=sys.stderr, flush=True)
        self.emit("boot", f"BOOT protocol {boot.protocol}, model {boot.model} ({note}), labels {','.join(boot.labels)}, "
                  f"threshold {boot.detection_threshold:.3f}", model=boot.model, latest_model=latest,
                  labels=list(boot.labels), threshold=boot.detection_threshold)

    def _timed(self, time_ms: int) -> Segment:
        segment = self.segments[-1] if self.segments else None
        if segment is None or (segment.end_ms is not None and time_ms < segment.end_ms):
            segment = Segment(start_ms=None)  # a reset whose BOOT we missed: count from here
            self.segments.append(segment)
        segment.reach(time_ms)
        if self.play_started is not None and len(self.segments) == 1:
            # sent no later than received: device time at playback start >= this estimate
            self.offset_estimates.append(time_ms / 1000 - (time.monotonic() - self.play_started))
        return segment

    def detection(self, det: Detection) -> None:
        self._timed(det.time_ms).detections.append(det)
        self.counts["detections"] += 1
        self.labels[det.label] += 1
        rate = ""
        if self.args.expect == "none" and self.listened_s() > 0:
            rate = f"  false-trigger rate {self.counts['detections'] / self.listened_s() * 3600:.1f}/h"
        self.emit("detection", f"{det.time_ms / 1000:10.3f} s  {det.label:<12} score {det.score:.3f}  "
                  f"{det.inference_us} us  [{self.counts['detections']} detections]{rate}",
                  time_ms=det.time_ms, label=det.label, score=det.score, inference_us=det.inference_us,
                  count=self.counts["detections"])

    def stats(self, stat: Stats) -> None:
        self._timed(stat.uptime_ms)
        self.counts["stats"] += 1
        if self.args.json:
            self.emit("stat", "", **vars(stat))

    def error(self, error: Error) -> None:
        self.counts["errors"] += 1
        self.emit("error", f"  device error code={error.code}: {error.message}", code=error.code, message=error.message)

    # ------------------------------------------------------------ the end

    def summary(self) -> dict:
        listened = self.listened_s()
        result = {"lines": self.counts["lines"], "boots": self.counts["boots"], "detections": self.counts["detections"],
                  "by_label": dict(self.labels), "stats": self.counts["stats"], "errors": self.counts["errors"],
                  "malformed": self.counts["malformed"], "other": self.counts["other"], "partial": self.counts["partial"],
                  "disconnects": self.counts["disconnects"], "gap_s": round(sum(self.gaps_s), 3), "listened_s": round(listened, 3)}
        if self.args.expect == "none":
            if listened > 0:
                rate, low, high = scoring.rate_per_hour(result["detections"], listened)
                result["false_triggers"] = {"count": result["detections"], "per_hour": rate, "low": low, "high": high}
            else:
                result["false_triggers"] = None
        if self.args.reference is not None:
            result["reference"] = self.reference_score()
        return result

    def reference_score(self) -> dict | None:
        if not self.segments or self.segments[0].end_ms is None:
            return None
        first = self.segments[0]
        offset = self.args.offset
        if offset is None:
            offset = max(self.offset_estimates) if self.offset_estimates else 0.0
        keywords = scoring.read_reference(self.args.reference)
        detections = [(d.time_ms / 1000 - offset, d.label) for d in first.detections]
        score = scoring.score(detections, keywords, first.end_ms / 1000 - offset)
        return {**score.summary(), "offset_s": round(offset, 3), "false_alarm_times_s": [t for t, _ in score.false_alarms],
                "scored_boots": 1, "later_boots_not_scored": len(self.segments) - 1}


def model_hash(path: Path) -> str | None:
    """First 16 hex digits of the file's SHA-256, as the BOOT record carries them."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return None


def print_summary(session: Session, summary: dict) -> None:
    if session.args.json:
        print(json.dumps({"event": "summary", **summary}), flush=True)
        return
    print(f"\nsummary: {summary['detections']} detections {summary['by_label'] or ''} in {summary['listened_s']:.1f} s "
          f"of device time, {summary['boots']} boot(s); {summary['lines']} lines: {summary['stats']} STAT, "
          f"{summary['errors']} ERR, {summary['malformed']} malformed, {summary['other']} other, "
          f"{summary['partial']} cut off; {summary['disconnects']} disconnect(s), {summary['gap_s']:.1f} s away")
    triggers = summary.get("false_triggers", "absent")
    if triggers is None:
        print("false triggers: no device time reported yet (no DET or STAT): no rate")
    elif triggers != "absent":
        print(f"false triggers: {triggers['count']} in {summary['listened_s'] / 3600:.4f} h = {triggers['per_hour']:.2f}/h "
              f"(95% exact Poisson interval {triggers['low']:.2f} to {triggers['high']:.2f}/h)")
    if "reference" in summary:
        ref = summary["reference"]
        if ref is None:
            print("reference: no device time reported: nothing scored")
        else:
            print(f"reference (MLPerf Tiny streaming rules, offset {ref['offset_s']} s): {ref['hits']} hits, "
                  f"{ref['misses']} misses, {ref['false_alarms']} false alarms, {ref['absorbed']} absorbed (repeats, late), "
                  f"{ref['not_covered']} keywords not covered"
                  + (f"; {ref['later_boots_not_scored']} later boot(s) not scored" if ref["later_boots_not_scored"] else ""))


def start_playback(path: Path):
    """Starts playing the track; returns (its duration in seconds, a function that stops it)."""
    try:
        import sounddevice
        import soundfile
    except ImportError:
        raise ListenError("--play needs the sounddevice package: pip install -e '.[host]'") from None
    except OSError as error:  # sounddevice loads the PortAudio library when imported
        raise ListenError(f"--play: {error}: apt-get install libportaudio2") from None
    try:
        audio, rate = soundfile.read(str(path), dtype="float32")
    except (soundfile.LibsndfileError, OSError, RuntimeError) as error:
        raise ListenError(f"--play {path}: cannot read audio: {error}") from None
    try:
        sounddevice.play(audio, rate)
    except sounddevice.PortAudioError as error:
        raise ListenError(f"--play {path}: no audio output: {error}") from None
    return len(audio) / rate, sounddevice.stop


def listen(session: Session, serial_module) -> None:
    args = session.args
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    started = time.monotonic()
    deadline = started + args.duration if args.duration else None
    stop_playback = None
    if args.play is not None:
        length, stop_playback = start_playback(args.play)
        session.play_started = time.monotonic()
        if deadline is None:
            deadline = session.play_started + length + PLAY_TAIL_S

    def done() -> bool:
        return bool(stop) or (deadline is not None and time.monotonic() >= deadline)

    attempt, lost_at, port = 0, None, None
    while not done():
        try:
            port = serial_module.Serial(args.port, args.baud, timeout=0.1)
        except (serial_module.SerialException, OSError) as error:
            if attempt == 0 and session.counts["connects"] == 0:
                print(f"listen: cannot open {args.port} yet ({error}); retrying", file=sys.stderr, flush=True)
            time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)])
            attempt += 1
            continue
        attempt = 0
        session.counts["connects"] += 1
        gap = None if lost_at is None else time.monotonic() - lost_at
        if gap is not None:
            session.gaps_s.append(gap)
            lost_at = None
        session.write_log(event="connected", port=args.port, **({"gap_s": round(gap, 3)} if gap is not None else {}))
        session.emit("connected", f"listen: connected to {args.port}" + (f" after {gap:.1f} s away" if gap else ""),
                     port=args.port, gap_s=gap)
        pending = b""
        try:
            while True:
                finishing = done()
                # after Ctrl-C or --duration: one last read of what already arrived, so nothing is lost
                data = port.read(port.in_waiting) if finishing else port.read(port.in_waiting or 1)
                *lines, pending = (pending + data).split(b"\n")
                for line in lines:
                    session.line(line)
                if finishing:
                    break
        except (serial_module.SerialException, OSError) as error:
            lost_at = time.monotonic()
            session.counts["disconnects"] += 1
            session.write_log(event="disconnected", port=args.port, why=str(error))
            session.emit("disconnected", f"listen: {args.port} went away ({error}); reconnecting", port=args.port)
        if pending:
            session.line(pending, partial=True)
        port.close()
    if lost_at is not None:  # still away at the end: that time is a gap too
        session.gaps_s.append(time.monotonic() - lost_at)
    if stop_playback is not None:
        stop_playback()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", help="serial port: /dev/ttyACM0, or the pty of simulate.py --pty")
    parser.add_argument("--baud", type=int, default=115200, help="baud rate (default 115200, as the firmware)")
    parser.add_argument("--json", action="store_true", help="one JSON object per event on stdout, for scripts")
    parser.add_argument("--log", type=Path, help="append every received line, with its host time, as JSON lines")
    parser.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    parser.add_argument("--expect", choices=["none"], help="none: every detection is a false trigger")
    parser.add_argument("--reference", type=Path, help="CSV start_s,end_s,label of the keywords in the track heard")
    parser.add_argument("--offset", type=float, help="device time (s) at which the track starts (default: 0, the "
                                                     "board's boot; with --play, estimated from the host clock)")
    parser.add_argument("--play", type=Path, help="play this track on the computer's speakers while listening")
    parser.add_argument("--latest", type=Path, default=LATEST_MODEL, help=f"model to compare the BOOT hash with "
                                                                          f"(default {LATEST_MODEL.relative_to(REPO_ROOT)})")
    args = parser.parse_args(argv)
    if args.expect and args.reference:
        parser.error("--expect none and --reference exclude each other")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import serial  # pyserial

    session = Session(args)
    try:
        if args.reference is not None:
            scoring.read_reference(args.reference)  # a bad file is said now, not after an hour of listening
        if args.log is not None:
            args.log.parent.mkdir(parents=True, exist_ok=True)
            session.log = open(args.log, "a", encoding="utf-8")  # append: an earlier session's lines stay
        listen(session, serial)
    except (ListenError, scoring.ReferenceError, OSError) as error:  # OSError: the --log file
        print(f"listen: error: {error}", file=sys.stderr)
        return 2
    finally:
        if session.log is not None:
            session.log.close()
    print_summary(session, session.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
