"""A stand-in for the sounddevice module whose input streams can break the way PortAudio's do.

What it imitates (PortAudio 19.6, ALSA host API, a PulseAudio server dying under a running input
stream): now and then the stream's C thread loops for ever in ``PaAlsaStream_WaitForFrames`` (its
error label sits above the failing check), printing one ``Expression '...' failed`` line to file
descriptor 2 each turn, tens of MB a second, with thread cancellation disabled. Pa_AbortStream,
Pa_StopStream and Pa_CloseStream wait for that thread, for ever, and so does Pa_Terminate, which
sounddevice runs at exit. It is rare and depends on the timing of the server's death, so the tests
use this instead.

A stream here delivers 30 ms blocks of silence from a Python thread. Each stream opened takes the
next behaviour of the plan ("ok" once the plan is used up):

* ``"ok"``: delivers until stopped;
* ``"stuck"``: delivers for ``ok_s``, then loops writing :data:`LINE` to ``flood_fd`` (or just waits
  when it is None) until :meth:`FakePortAudio.release`, and abort / stop / close wait for it;
* ``"refuse"``: ``start()`` fails like a device that cannot be opened.

Run as a script, it stands in for sounddevice in ``aura listen``:
``python tests/fake_portaudio.py stuck,ok listen --device "fake microphone" ...``.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import types

import numpy as np

DEVICE = "fake microphone"
LINE = (b"Expression 'self->capture.ready || self->playback.ready' failed in "
        b"'src/hostapi/alsa/pa_linux_alsa.c', line: 3958\n")


class PortAudioError(Exception):
    pass


class FakeInputStream:
    def __init__(self, portaudio: "FakePortAudio", behaviour: str, *, samplerate, channels, blocksize, callback,
                 finished_callback=None, **_) -> None:
        self.portaudio, self.behaviour = portaudio, behaviour
        self.block = np.zeros((int(blocksize), int(channels)), dtype=np.float32)
        self.block_s = int(blocksize) / float(samplerate)
        self.callback, self.finished_callback = callback, finished_callback
        self.closed = False
        self.started_at: float | None = None  # time.monotonic() when start() succeeded
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.behaviour == "refuse":
            raise PortAudioError("Illegal combination of I/O devices [PaErrorCode -9993]")
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fake-portaudio", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deliver_until = time.monotonic() + (self.portaudio.ok_s if self.behaviour == "stuck" else float("inf"))
        while not self._stop.is_set() and time.monotonic() < deliver_until:
            self.callback(self.block, len(self.block), None, None)
            time.sleep(self.block_s)
        if self.behaviour == "stuck":
            self.portaudio.broken.set()
            self._loop_on_an_error()  # stop requests are not looked at any more, as in PortAudio
        if self.finished_callback is not None:
            self.finished_callback()

    def _loop_on_an_error(self) -> None:
        released, fd = self.portaudio.released, self.portaudio.flood_fd
        while not released.is_set():
            if fd is None:
                released.wait(0.05)
                continue
            try:
                os.write(fd, LINE)
            except OSError:
                released.wait(0.05)

    def abort(self, ignore_errors=True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()  # for ever while the thread is stuck

    stop = abort

    def close(self, ignore_errors=True) -> None:
        self.abort()
        self.closed = True


class FakePortAudio(types.ModuleType):
    """What app.listening uses of sounddevice: one input device and InputStream, following ``plan``."""

    def __init__(self, plan=(), flood_fd: int | None = None, ok_s: float = 0.5) -> None:
        super().__init__("sounddevice")
        self.plan, self.flood_fd, self.ok_s = list(plan), flood_fd, ok_s
        self.streams: list[FakeInputStream] = []
        self.broken = threading.Event()  # a stuck stream has started looping
        self.released = threading.Event()  # ends every stuck loop (a test's teardown)
        self.default = types.SimpleNamespace(device=[0, -1])
        self.PortAudioError = PortAudioError

    def query_devices(self):
        return [{"name": DEVICE, "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 16000.0}]

    def query_hostapis(self, index=None):
        return {"name": "fake", "default_input_device": 0}

    def check_input_settings(self, device=None, samplerate=None, channels=None, dtype=None, **_) -> None:
        if channels is not None and channels > 1:
            raise PortAudioError("Invalid number of channels [PaErrorCode -9998]")

    def InputStream(self, **kwargs) -> FakeInputStream:
        stream = FakeInputStream(self, self.plan.pop(0) if self.plan else "ok", **kwargs)
        self.streams.append(stream)
        return stream

    def _terminate(self) -> None:
        pass

    def _initialize(self) -> None:
        pass

    def _exit_handler(self) -> None:
        """sounddevice's exit handler: Pa_Terminate closes every open stream, waiting on a stuck one."""
        for stream in self.streams:
            if not stream.closed:
                stream.abort()

    def release(self) -> None:
        self.released.set()


def main(argv: list[str]) -> int:
    """``PLAN aura-arguments...``: run the aura command with this fake as sounddevice, flooding fd 2."""
    import atexit

    fake = FakePortAudio(argv[0].split(","), flood_fd=2)
    sys.modules["sounddevice"] = fake
    atexit.register(fake._exit_handler)  # as importing sounddevice does
    from app.cli import main as aura

    return aura(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
