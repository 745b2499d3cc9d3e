"""The board's device time as its records show it, boot by boot, and which records to believe.

Every rate listen.py reports is over device time, so one corrupted but well-formed record (a STAT whose
up_ms jumped an hour ahead, a time from before the last one) must not move it. The board's clock only
moves forward at a known pace: a STAT every stat_period_ms (the manifest's app.stat_period_ms), and
detections in between. So a record is believed when its time is at most one period (and a second of
slack) past the last believed one, one more period for every line lost since (cut off, garbled or not
a record), plus the time the port was away after a reconnect; and a time before the last one is a new
boot only right after a (re)connect, when a BOOT could have been missed. Anything else is implausible:
counted and shown by the caller, never used.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

SLACK_MS = 1000  # a STAT goes out in the first loop pass after its period; an inference may run late


@dataclass
class Segment:
    """One boot's stretch of device time, as far as the believed records show it (ms)."""

    start_ms: int | None
    end_ms: int | None = None
    detections: list = field(default_factory=list)

    def reach(self, time_ms: int) -> None:
        self.start_ms = time_ms if self.start_ms is None else self.start_ms
        self.end_ms = time_ms

    @property
    def seconds(self) -> float:
        return 0.0 if self.end_ms is None else (self.end_ms - self.start_ms) / 1000


class DeviceTime:
    def __init__(self, stat_period_ms: int):
        self.period_ms = stat_period_ms
        self.segments: list[Segment] = []
        self.lost = 0  # lines since the last believed record that could have been records
        self.reconnected = True  # nothing believed since the port (re)opened
        self.away_ms = 0.0  # host time the port was away since the last believed record

    def boot(self) -> None:
        self.segments.append(Segment(start_ms=0))
        self.lost, self.reconnected, self.away_ms = 0, False, 0.0

    def lost_line(self) -> None:
        self.lost += 1

    def connected(self, away_s: float) -> None:
        self.reconnected = True
        self.away_ms += away_s * 1000

    def implausible(self, time_ms: int) -> str | None:
        """Why a record at `time_ms` cannot be believed, or None."""
        last = self.segments[-1].end_ms if self.segments else None
        if last is None:
            return None
        if time_ms < last:
            return None if self.reconnected else (
                f"device time went back from {last} to {time_ms} ms without a BOOT or a reconnect")
        allowed = (1 + self.lost) * (self.period_ms + SLACK_MS) + 1.5 * self.away_ms
        if time_ms - last > allowed:
            return (f"device time jumped {time_ms - last} ms ahead of the last record; at most {allowed:.0f} ms "
                    f"fit a STAT every {self.period_ms} ms and {self.lost} lost line(s)")
        return None

    def reach(self, time_ms: int) -> Segment:
        """Believe a record at `time_ms` (checked with `implausible` first); its boot's segment."""
        segment = self.segments[-1] if self.segments else None
        if segment is None or (segment.end_ms is not None and time_ms < segment.end_ms):
            segment = Segment(start_ms=None)  # a reset whose BOOT we missed: count from here
            self.segments.append(segment)
        segment.reach(time_ms)
        self.lost, self.reconnected, self.away_ms = 0, False, 0.0
        return segment

    def listened_s(self) -> float:
        return sum(segment.seconds for segment in self.segments)


def implausible_score(score: float) -> str | None:
    return None if math.isfinite(score) and 0 <= score <= 1 else f"score {score} is not a probability in [0, 1]"
