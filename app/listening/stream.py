"""One open microphone: :class:`MicrophoneStream` (sounddevice / PortAudio).

The PortAudio callback only copies blocks into a queue and counts status flags;
:meth:`MicrophoneStream.read` hands out 16 kHz mono float32 chunks, resampling
with soxr when the device cannot record at 16 kHz itself.

A dead stream is noticed three ways: PortAudio ends it (its finished callback),
PortAudio floods stderr with one repeated error (see :mod:`.native_stderr`), or
no audio arrives for ``stall_timeout_s``. Stopping never hangs the caller, even
when PortAudio's own thread is stuck (see :meth:`MicrophoneStream.stop`).
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from typing import Any

import numpy as np

from aura_model.errors import AuraError

from .devices import _sounddevice, count_open_stream, open_stream_count, resolve_input_device
from .native_stderr import flood_count

TARGET_RATE = 16000  # Hz handed out by MicrophoneStream.read; what the VAD and the model's audio front-end use
BLOCK_MS = 30  # PortAudio block: one VAD frame (480 samples at 16 kHz)
# No audio for this long while PortAudio floods stderr = this stream is the one that broke (a flood can also
# come from another stream, e.g. playback, while this one still delivers every 30 ms)
FLOOD_QUIET_S = 0.5
CLOSE_TIMEOUT_S = 2.0  # how long stop() waits for PortAudio to let go of a stream before leaving it behind


class MicrophoneStream:
    """One open microphone delivering 16 kHz mono float32 chunks through :meth:`read`.

    ``device_samplerate`` forces the rate the device is opened at (None: 16 kHz
    when the device accepts it, else its default rate, resampled with soxr).
    """

    def __init__(self, device: int | str | None = None, *, device_samplerate: float | None = None,
                 block_ms: int = BLOCK_MS, latency_s: float = 0.1, queue_seconds: float = 10.0,
                 stall_timeout_s: float = 5.0) -> None:
        if block_ms <= 0:
            raise AuraError(f"block_ms must be > 0, got {block_ms}")
        if stall_timeout_s <= 0:
            raise AuraError(f"stall_timeout_s must be > 0, got {stall_timeout_s}")
        self.device = resolve_input_device(device)  # {index, name, channels, default_samplerate}
        self.block_ms = block_ms  # PortAudio block length; one VAD frame by default
        # PortAudio's suggested input latency. Not "low"/"high": through ALSA's pulse plugin a fixed
        # 30 ms block with those (30-60 ms) starved for 1-2 s at start and lost audio; 0.1 s was reliable.
        self.latency_s = latency_s
        # No audio for this long while running = the device is gone. Not shorter: an idle PulseAudio
        # monitor source delivers in bursts up to ~2 s apart.
        self.stall_timeout_s = stall_timeout_s
        self.samplerate, self.channels = self._choose_settings(device_samplerate)  # what the device is opened at
        self.overflow_count = 0  # blocks PortAudio flagged as input overflow (audio lost before we saw it)
        self.dropped_blocks = 0  # blocks dropped because nobody read the queue for queue_seconds
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=max(1, int(queue_seconds * 1000 / block_ms)))
        self._stream = None
        self._resampler = None
        self._finished = threading.Event()  # set by PortAudio when the stream ends (by us or by an error)
        self._stopping = False
        self._last_data = 0.0
        self._floods_at_start = 0  # flood_count() when the stream started: later floods may be this stream's

    # -- opening ------------------------------------------------------------------------------

    def _choose_settings(self, forced_rate: float | None) -> tuple[int, int]:
        sd = _sounddevice()
        index, default_rate = self.device["index"], int(round(self.device["default_samplerate"]))
        rates = [int(round(forced_rate))] if forced_rate else [TARGET_RATE, default_rate]
        channel_options = [1] + ([min(2, self.device["channels"])] if self.device["channels"] > 1 else [])
        errors = []
        for rate in dict.fromkeys(rates):
            for channels in channel_options:
                try:
                    sd.check_input_settings(device=index, samplerate=rate, channels=channels, dtype="float32")
                    return rate, channels
                except Exception as e:  # PortAudioError or ValueError: this combination is unsupported
                    errors.append(f"{rate} Hz x{channels}: {e}")
        raise AuraError(f"audio input device {self.device['name']!r} accepts none of the tried settings: "
                        + "; ".join(errors))

    @property
    def active(self) -> bool:
        """True between start() and stop() while PortAudio is delivering audio."""
        return self._stream is not None and not self._finished.is_set()

    def start(self) -> "MicrophoneStream":
        if self._stream is not None:
            return self
        sd = _sounddevice()
        self._finished.clear()
        self._stopping = False
        while not self._queue.empty():
            self._queue.get_nowait()
        self._resampler = None
        if self.samplerate != TARGET_RATE:
            import soxr
            self._resampler = soxr.ResampleStream(self.samplerate, TARGET_RATE, 1, dtype="float32")
        stream = None
        try:
            stream = sd.InputStream(
                device=self.device["index"], samplerate=self.samplerate, channels=self.channels, dtype="float32",
                blocksize=max(1, round(self.samplerate * self.block_ms / 1000)), latency=self.latency_s,
                callback=self._callback, finished_callback=self._finished.set)
            stream.start()
        except Exception as e:  # PortAudioError: busy, unplugged, refused
            if stream is not None:
                stream.close(ignore_errors=True)
            raise AuraError(f"cannot open audio input device {self.device['name']!r} "
                            f"at {self.samplerate} Hz: {e}") from e
        count_open_stream(+1)
        _guard_exit()
        self._stream = stream
        self._last_data = time.monotonic()
        self._floods_at_start = flood_count()
        return self

    def stop(self, timeout_s: float = CLOSE_TIMEOUT_S) -> bool:
        """Abort and close the stream; audio still queued is discarded. Safe to call twice.

        False when PortAudio has not let go within ``timeout_s``. A stream whose PortAudio thread is
        stuck (the sound server died under it) blocks abort and close for ever, so they run on a helper
        thread that is left behind; the stream stays counted as open until they return, so
        rescan_devices (which would block on it too) refuses, and the process exit skips PortAudio's
        termination (see _skip_portaudio_exit_handler).
        """
        stream, self._stream = self._stream, None
        if stream is None:
            return True
        self._stopping = True
        closed = threading.Event()
        threading.Thread(target=_close, args=(stream, closed), name="aura-mic-close", daemon=True).start()
        return closed.wait(timeout_s)

    def __enter__(self) -> "MicrophoneStream":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- audio --------------------------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy and count, nothing else (no allocation-heavy work, no locks, no logging).
        if status and status.input_overflow:
            self.overflow_count += 1
        try:
            self._queue.put_nowait(indata.copy())
        except queue.Full:
            self.dropped_blocks += 1

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        """The next 16 kHz mono float32 chunk, or None when ``timeout`` seconds pass without one.

        Raises AuraError when the stream is not started, ended unexpectedly, or has
        delivered nothing for ``stall_timeout_s`` (the device disappeared).
        """
        if self._stream is None:
            raise AuraError("the microphone stream is not started")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 0.05 if deadline is None else max(0.0, min(0.05, deadline - time.monotonic()))
            try:
                block = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                self._check_alive()
                if deadline is not None and time.monotonic() >= deadline:
                    return None
                continue
            self._last_data = time.monotonic()
            mono = block[:, 0] if block.shape[1] == 1 else block.mean(axis=1)
            if self._resampler is not None:
                mono = self._resampler.resample_chunk(np.ascontiguousarray(mono, dtype=np.float32))
                if len(mono) == 0:
                    continue
            return np.ascontiguousarray(mono, dtype=np.float32)

    def _check_alive(self) -> None:
        name = self.device["name"]
        if self._finished.is_set() and not self._stopping:
            raise AuraError(f"audio input from {name!r} stopped unexpectedly (device unplugged or sound server gone?)")
        quiet_s = time.monotonic() - self._last_data
        if flood_count() > self._floods_at_start and quiet_s > FLOOD_QUIET_S:
            raise AuraError(f"audio input from {name!r} broke: PortAudio is stuck repeating an error "
                            "(device unplugged or sound server gone?)")
        if quiet_s > self.stall_timeout_s:
            raise AuraError(f"no audio from input device {name!r} for {self.stall_timeout_s:.1f} s "
                            "(device unplugged or sound server gone?)")


def _close(stream: Any, closed: threading.Event) -> None:
    """Abort and close a PortAudio stream (on a helper thread: this can block for ever on a stuck one)."""
    try:
        stream.abort()  # not stop(): nothing buffered is worth waiting for, and a broken device never drains
        stream.close()
    except Exception:  # the device may already be gone; closing is best effort
        pass
    count_open_stream(-1)
    closed.set()


_exit_guarded = False


def _guard_exit() -> None:
    """Register _skip_portaudio_exit_handler once, after sounddevice's import registered its own exit handler:
    atexit runs the last registered first, so ours decides before sounddevice's runs."""
    global _exit_guarded
    if not _exit_guarded:
        _exit_guarded = True
        atexit.register(_skip_portaudio_exit_handler)


def _skip_portaudio_exit_handler() -> None:
    """At exit, with a MicrophoneStream still open or closing, drop sounddevice's exit handler.

    It runs Pa_Terminate, which closes every open stream and waits for ever on one whose PortAudio
    thread is stuck: the process would never end (Ctrl-C in `aura listen` printed "interrupted" and
    hung there). The operating system releases the device when the process ends anyway.
    """
    if open_stream_count():
        handler = getattr(_sounddevice(), "_exit_handler", None)
        if handler is not None:
            atexit.unregister(handler)
