"""PortAudio's and ALSA's C-level error lines, kept off the user's terminal.

PortAudio (and ALSA's pulse plugin under it) print straight to file descriptor 2
from C, where Python never sees them. When the sound server dies under a running
stream, PortAudio's ALSA input thread can loop for ever on one failed check,
printing the same ``Expression '...' failed in '...', line: N`` line tens of MB a
second; that thread cannot be cancelled (it runs with cancellation disabled).

:class:`NativeStderrFilter` routes fd 2 through a pipe read by a small thread
that forwards everything except repeats of such lines (the first one is
forwarded, the number hidden is said when the filter closes), reads slowly while
a flood lasts (the looping C thread then mostly waits in ``write()`` instead of
burning a core; other writers to fd 2 wait up to ``THROTTLE_S``), and counts
floods: :func:`flood_count` lets a :class:`~app.listening.stream.MicrophoneStream`
treat a new flood as its stream dying, without waiting for the stall timeout.
Closed during a flood, it sends fd 2 to /dev/null and Python's ``sys.stderr`` to
the terminal (see :meth:`NativeStderrFilter.close`).

Nothing is filtered unless :func:`install` is called (``aura listen`` and the
window with a real microphone do; tests do not). POSIX only.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import time

# PortAudio's PA_ENSURE / PA_UNLESS failures and ALSA library errors: noise when repeated
NOISE = re.compile(rb"^(Expression '.*' failed in '.*', line: \d+|ALSA lib .*)$")
FLOOD_LINES = 50  # repeats within FLOOD_WINDOW_S that make a flood; a failing open prints about ten lines
FLOOD_WINDOW_S = 1.0  # seconds
THROTTLE_S = 0.2  # pause between reads during a flood: the looping thread blocks in write() meanwhile
CHUNK = 65536  # bytes read at a time (a Linux pipe's default capacity)
MAX_REMEMBERED = 1000  # distinct noise lines remembered as already shown
MARKER = b"\x00aura-native-stderr-drained\x00"  # written at close: everything before it has been forwarded

_active: "NativeStderrFilter | None" = None
_floods = 0  # floods begun in this process, read by MicrophoneStream


def flood_count() -> int:
    """How many floods of repeated native error lines began in this process (0 while no filter is installed)."""
    return _floods


def install() -> "NativeStderrFilter | None":
    """Route fd 2 through the filter (the one already installed, if any); None where that is impossible."""
    global _active
    if _active is None and os.name == "posix" and _fd_open(2):
        _active = NativeStderrFilter()
    return _active


def _fd_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:  # a windowed process may have no stderr at all
        return False


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data):]
    except OSError:  # the terminal or the reading end is gone: nothing to tell anyone
        pass


class _FloodMeter:
    """Hidden lines per FLOOD_WINDOW_S; ``flooding`` while this or the last window held FLOOD_LINES or more."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.count = 0
        self.previous = 0

    def roll(self, now: float) -> None:
        elapsed = now - self.started
        if elapsed >= FLOOD_WINDOW_S:
            self.previous = self.count if elapsed < 2 * FLOOD_WINDOW_S else 0
            self.started, self.count = now, 0

    @property
    def flooding(self) -> bool:
        return max(self.count, self.previous) >= FLOOD_LINES


class NativeStderrFilter:
    """fd 2 -> pipe -> reader thread -> the original stderr, minus repeated PortAudio/ALSA error lines."""

    def __init__(self) -> None:
        self.hidden = 0  # repeated noise lines not forwarded
        self.floods = 0  # floods begun while this filter was installed
        self._seen: set[bytes] = set()
        self._hiding = False  # the last noise line was hidden: a blank line after it goes too (ALSA adds one)
        self._meter = _FloodMeter()
        self._drained = threading.Event()
        try:
            sys.stderr.flush()
        except Exception:  # no usable sys.stderr: there is nothing buffered to lose
            pass
        self._read_fd, write_fd = os.pipe()
        self._original = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._thread = threading.Thread(target=self._pump, name="aura-native-stderr", daemon=True)
        self._thread.start()
        atexit.register(self.close)  # forward what is still in the pipe before the process ends

    @property
    def flooding(self) -> bool:
        return self._meter.flooding

    # -- the reader thread ----------------------------------------------------------------------

    def _pump(self) -> None:
        pending = b""
        while True:
            try:
                data = os.read(self._read_fd, CHUNK)
            except OSError:
                data = b""
            if not data:
                break
            self._meter.roll(time.monotonic())
            *lines, pending = (pending + data).split(b"\n")
            if len(pending) > CHUNK:  # no newline in sight: not text lines, pass it on as it is
                lines, pending = lines + [pending], b""
            drained = next((i for i, line in enumerate(lines) if MARKER in line), None)
            if drained is not None:  # a partial line written before the marker ends where the marker begins
                head = lines[drained][:lines[drained].index(MARKER)]
                lines = lines[:drained] + ([head] if head else [])
            _write_all(self._original, b"".join(self._keep(line) for line in lines))
            if drained is not None:
                break
            if self.flooding:
                time.sleep(THROTTLE_S)
        self._drained.set()

    def _keep(self, line: bytes) -> bytes:
        """The bytes to forward for one line: the line, a notice that a flood began, or nothing."""
        if not line:
            return b"" if self._hiding else b"\n"
        self._hiding = False
        if not NOISE.match(line):
            return line + b"\n"
        if line not in self._seen:
            if len(self._seen) < MAX_REMEMBERED:
                self._seen.add(line)
            return line + b"\n"
        self._hiding = True
        self.hidden += 1
        was_flooding = self.flooding
        self._meter.count += 1
        if was_flooding or not self.flooding:
            return b""
        global _floods
        _floods += 1
        self.floods += 1
        return b"aura: PortAudio keeps repeating the error above; the repeats are hidden\n"

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Forward what is in the pipe, then give fd 2 back to the original stderr. Safe to call twice.

        While a flood lasts, fd 2 becomes /dev/null instead and Python's sys.stderr moves to the
        original stderr: the looping C thread must never block in write() again, because it holds C
        stdio's stderr lock meanwhile and the process exit flushes stderr under that lock.
        """
        global _active
        if self._original is None:
            return
        atexit.unregister(self.close)
        try:
            sys.stderr.flush()
        except Exception:
            pass
        if self._thread.is_alive():
            _write_all(2, MARKER + b"\n")  # behind everything written so far
            self._drained.wait(5.0)
        self._meter.roll(time.monotonic())
        original, self._original = self._original, None
        if self.flooding:  # the reader has stopped: the meter is this thread's now
            moved = _python_stderr_to(original)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
        else:
            os.dup2(original, 2)
            os.close(original)
            original = 2
        os.close(self._read_fd)  # a writer blocked on the full pipe gets EPIPE and goes on
        if self.hidden:
            _write_all(original, f"aura: {self.hidden} repeated PortAudio/ALSA error lines were hidden\n".encode())
        if original != 2 and not moved:
            os.close(original)
        if _active is self:
            _active = None


def _python_stderr_to(fd: int) -> bool:
    """Point sys.stderr at ``fd`` if it writes to fd 2 (a test's capture object is left alone); True if moved."""
    try:
        if sys.stderr.fileno() != 2:
            return False
    except Exception:  # no fileno: not the process's stderr
        return False
    sys.stderr = open(fd, "w", buffering=1, encoding=sys.stderr.encoding, errors="backslashreplace")
    return True
