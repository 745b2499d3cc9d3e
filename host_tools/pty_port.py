"""Where the simulated board's serial output goes (host_tools/simulate.py): stdout, a file, and a
pseudo-terminal standing in for the board's USB serial port.

The pty's stable path (--pty-link) is a symlink through /proc/<simulator pid>/root, so it resolves only
while this simulator lives: after any exit, even SIGKILL, it dangles instead of pointing at a /dev/pts
number that the kernel hands to the next terminal. The link is also removed on every exit path we get
to run (end, error, Ctrl-C, SIGTERM).
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import sys
import termios
import time
import tty
from pathlib import Path

# What the port carries when it closes in the middle of a line (a reset, simulate.py --reset-after).
CUT_OFF = b"KWS2 STAT up_ms="


class PortError(Exception):
    """The pty or its reader failed, said in the user's terms."""


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
            temporary.symlink_to(f"/proc/{os.getpid()}/root{self.path}")  # valid only while we live
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
        raise PortError(f"no reader opened {self.link or self.path} within {self.timeout_s:g} s (--pty-timeout)")

    def write(self, data: bytes) -> None:
        while data:
            try:
                data = data[os.write(self.master, data):]
            except BlockingIOError:  # the reader is behind: wait, as the board's USB stack would
                if not select.select([], [self.master], [], self.timeout_s)[1]:
                    raise PortError(f"the reader of {self.link or self.path} stopped reading for "
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

    def close(self, drain: bool = True) -> None:
        """As a board's port disappears: with `drain`, once the reader has read everything (or --pty-timeout)."""
        if self.master < 0:
            return
        deadline, idle = time.monotonic() + self.timeout_s, 0
        while drain and idle < 2 and time.monotonic() < deadline:  # twice empty: nothing was still on its way
            idle = idle + 1 if self._unread() == 0 else 0
            time.sleep(0.05)
        os.close(self.master)
        self.master = -1


class Outputs:
    """Where the simulated board's serial output goes: stdout, a file and/or a pty."""

    def __init__(self, out: Path | None, to_stdout: bool, pty: PseudoTerminal | None):
        try:
            self.file = open(out, "wb") if out is not None else None
        except OSError as error:
            raise PortError(f"--out {out}: cannot write it: {error.strerror}") from None
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

    def close(self, drain: bool = True) -> None:
        """The board is gone for good: the link goes first, so no reader finds it while the port closes."""
        if self.pty is not None:
            if self.pty.link is not None and self.pty.link.is_symlink():
                self.pty.link.unlink(missing_ok=True)
            self.pty.close(drain)
        if self.file is not None:
            self.file.close()
