"""The listening worker: :class:`Listener` reads an :class:`AudioSource`, endpoints and calls back.

A plain daemon thread that reads a :class:`~app.listening.stream.MicrophoneStream`
(or any :class:`AudioSource`), runs a :class:`~app.listening.vad.VadSegmenter`
(or push-to-talk) and calls back with segments, levels and errors. A stream error
is reported, never fatal: the listener retries opening the device every
``retry_s`` until it comes back. No Qt here: the GUI wraps the callbacks in
signals itself.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Protocol

import numpy as np

from aura_model.errors import AuraError

from .devices import rescan_devices
from .stream import TARGET_RATE, MicrophoneStream
from .vad import PushToTalkCollector, Segment, VadConfig, VadSegmenter, as_float_mono, rms_db


def _describe(error: Exception) -> str:
    return str(error) if isinstance(error, AuraError) else f"{type(error).__name__}: {error}"


class AudioSource(Protocol):
    """What the Listener reads from: MicrophoneStream, or a fake in tests."""

    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def read(self, timeout: float | None = None) -> np.ndarray | None: ...


class Listener:
    """Microphone -> VAD (or push-to-talk) -> ``on_segment`` in a daemon worker thread.

    Callbacks run on the worker thread (the GUI re-emits them as Qt signals):
    ``on_segment(Segment)`` per utterance, ``on_level(dBFS)`` per chunk read
    (~30 ms), ``on_error(message)`` when the device fails or a callback raises.
    After a device error the listener retries opening every ``retry_s`` seconds
    until it succeeds or is stopped; ``rescan`` lets it re-enumerate devices
    (see :func:`rescan_devices`) every ``rescan_every_s`` while retrying, except
    while muted (when the assistant may be playing audio through PortAudio).
    """

    def __init__(self, on_segment: Callable[[Segment], None], *, on_level: Callable[[float], None] | None = None,
                 on_error: Callable[[str], None] | None = None, device: int | str | None = None,
                 vad_config: VadConfig | None = None,
                 stream_factory: Callable[[], AudioSource] | None = None,
                 retry_s: float = 1.0, rescan: bool = True, rescan_every_s: float = 5.0) -> None:
        self.on_segment = on_segment
        self.on_level = on_level
        self.on_error = on_error
        self.device = device  # index, (part of) a name, or None for the default input
        self.vad_config = vad_config or VadConfig(sample_rate=TARGET_RATE)
        if self.vad_config.sample_rate != TARGET_RATE:
            raise AuraError(f"Listener needs a VadConfig at {TARGET_RATE} Hz, got {self.vad_config.sample_rate}")
        self._factory = stream_factory or (lambda: MicrophoneStream(self.device))
        self._rescan = rescan and stream_factory is None
        self.retry_s = retry_s
        self.rescan_every_s = rescan_every_s
        self._segmenter = VadSegmenter(self.vad_config)
        self._ptt = PushToTalkCollector(self.vad_config)
        self._commands: queue.SimpleQueue[tuple[str, bool]] = queue.SimpleQueue()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._muted = False
        self._push_to_talk = False
        self._position = 0  # samples read from the stream since start(), the segments' clock
        self.stream_ok = threading.Event()  # set while a stream is open and delivering

    # -- control (any thread) -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def muted(self) -> bool:
        return self._muted

    @property
    def push_to_talk(self) -> bool:
        return self._push_to_talk

    def start(self) -> None:
        if self.running:
            return
        self._stop_event.clear()
        self._thread = threading.Thread(target=self._run, name="aura-listener", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop listening; an utterance in progress is dropped."""
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def mute(self, muted: bool = True) -> None:
        """While muted (the assistant is speaking) audio is read and discarded; unmuting starts afresh."""
        self._muted = bool(muted)
        self._commands.put(("mute", bool(muted)))

    def set_push_to_talk(self, enabled: bool) -> None:
        """Push-to-talk replaces VAD endpointing: only audio between ptt_press and ptt_release is sent."""
        self._push_to_talk = bool(enabled)
        self._commands.put(("ptt_mode", bool(enabled)))

    def ptt_press(self) -> None:
        self._commands.put(("ptt", True))

    def ptt_release(self) -> None:
        self._commands.put(("ptt", False))

    # -- worker -------------------------------------------------------------------------------

    def _report(self, message: str) -> None:
        if self.on_error is not None:
            try:
                self.on_error(message)
            except Exception:  # an error handler failing must not kill the worker
                pass

    def _emit(self, segments: list[Segment]) -> None:
        for seg in segments:
            try:
                self.on_segment(seg)
            except Exception as e:
                self._report(f"on_segment failed: {type(e).__name__}: {e}")

    def _restart_detection(self) -> None:
        """Drop any open utterance; the clock continues at the current stream position."""
        self._segmenter.reset(start_sample=self._position)
        self._ptt.reset(start_sample=self._position)

    def _apply_commands(self) -> None:
        while True:
            try:
                name, value = self._commands.get_nowait()
            except queue.Empty:
                return
            if name in ("mute", "ptt_mode"):
                self._restart_detection()
            elif name == "ptt" and self._push_to_talk and not self._muted:
                if value:
                    self._ptt.press()
                else:
                    self._emit(self._ptt.release())

    def _process(self, chunk: np.ndarray) -> None:
        chunk = as_float_mono(chunk)
        self._position += len(chunk)
        if self._muted:
            return
        if self.on_level is not None:
            try:
                self.on_level(rms_db(chunk))
            except Exception as e:
                self._report(f"on_level failed: {type(e).__name__}: {e}")
        self._emit(self._ptt.feed(chunk) if self._push_to_talk else self._segmenter.feed(chunk))

    def _open(self) -> AudioSource:
        source = self._factory()
        source.start()
        return source

    def _run(self) -> None:
        source: AudioSource | None = None
        last_error: str | None = None
        last_rescan = time.monotonic()
        try:
            while not self._stop_event.is_set():
                if source is None:
                    try:
                        source = self._open()
                        last_error = None
                        self.stream_ok.set()
                    except Exception as e:  # AuraError, or anything else the device layer throws
                        message = _describe(e)
                        if message != last_error:  # report each distinct failure once, not every retry
                            self._report(message)
                            last_error = message
                        self._apply_commands()
                        if self._stop_event.wait(self.retry_s):
                            break
                        if self._rescan and not self._muted and time.monotonic() - last_rescan >= self.rescan_every_s:
                            last_rescan = time.monotonic()
                            try:
                                rescan_devices()
                            except AuraError:
                                pass
                        continue
                try:
                    chunk = source.read(timeout=0.1)
                except Exception as e:
                    last_error = _describe(e)
                    self._report(last_error)
                    self.stream_ok.clear()
                    source.stop()
                    source = None
                    self._restart_detection()
                    continue
                self._apply_commands()
                if chunk is not None:
                    self._process(chunk)
        finally:
            self.stream_ok.clear()
            if source is not None:
                source.stop()
