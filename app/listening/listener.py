"""The listening worker: :class:`Listener` reads an :class:`AudioSource`, endpoints and calls back.

A plain daemon thread that reads a :class:`~app.listening.stream.MicrophoneStream`
(or any :class:`AudioSource`), runs a :class:`~app.listening.vad.VadSegmenter`
(or push-to-talk) and calls back with segments, levels and errors. A stream error
is reported, never fatal: the listener reopens the device at once, then retries
with a delay that doubles from ``retry_s`` up to ``retry_max_s`` until audio
flows again. No Qt here: the GUI wraps the callbacks in signals itself.
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
    (~30 ms), ``on_error(message)`` when the device fails or a callback raises,
    ``on_recover()`` when audio flows again after a reported device failure.
    A device failure is reported once: while the device stays away, each
    distinct message is reported once, however often retrying meets it. After a
    device error the listener reopens at once, then retries after ``retry_s``,
    doubling up to ``retry_max_s``, until audio flows again (which resets the
    delay) or it is stopped; ``rescan`` lets it re-enumerate devices (see
    :func:`rescan_devices`) every ``rescan_every_s`` while retrying, except
    while muted (when the assistant may be playing audio through PortAudio).
    """

    def __init__(self, on_segment: Callable[[Segment], None], *, on_level: Callable[[float], None] | None = None,
                 on_error: Callable[[str], None] | None = None, on_recover: Callable[[], None] | None = None,
                 device: int | str | None = None, vad_config: VadConfig | None = None,
                 stream_factory: Callable[[], AudioSource] | None = None,
                 retry_s: float = 1.0, retry_max_s: float = 10.0, rescan: bool = True,
                 rescan_every_s: float = 5.0) -> None:
        if not 0 < retry_s <= retry_max_s:
            raise AuraError(f"Listener needs 0 < retry_s <= retry_max_s, got {retry_s} and {retry_max_s}")
        self.on_segment = on_segment
        self.on_level = on_level
        self.on_error = on_error
        self.on_recover = on_recover
        self.device = device  # index, (part of) a name, or None for the default input
        self.vad_config = vad_config or VadConfig(sample_rate=TARGET_RATE)
        if self.vad_config.sample_rate != TARGET_RATE:
            raise AuraError(f"Listener needs a VadConfig at {TARGET_RATE} Hz, got {self.vad_config.sample_rate}")
        self._factory = stream_factory or (lambda: MicrophoneStream(self.device))
        self._rescan = rescan and stream_factory is None
        self.retry_s = retry_s  # first delay between failed opens; doubles up to retry_max_s
        self.retry_max_s = retry_max_s  # a device back after a long outage is found within this long
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
        # worker thread only: failures reported since audio last flowed (empty while it flows), the delay
        # before the next try, when devices were last re-enumerated
        self._outage: set[str] = set()
        self._delay = retry_s
        self._last_rescan = 0.0

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

    def _report_failure(self, error: Exception) -> None:
        """Report a device failure unless this outage already reported the same message."""
        message = _describe(error)
        if message not in self._outage:
            self._outage.add(message)
            self._report(message)

    def _recovered(self) -> None:
        if self.on_recover is not None:
            try:
                self.on_recover()
            except Exception as e:
                self._report(f"on_recover failed: {type(e).__name__}: {e}")

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

    def _try_open(self) -> AudioSource | None:
        """A started source, or None after reporting the failure and waiting the retry delay."""
        try:
            source = self._open()
        except Exception as e:  # AuraError, or anything else the device layer throws
            self._report_failure(e)
            self._back_off()
            self._maybe_rescan()
            return None
        self.stream_ok.set()
        return source

    def _back_off(self) -> None:
        """Wait the retry delay (applying commands, ending early on stop), then double it up to retry_max_s."""
        self._apply_commands()
        self._stop_event.wait(self._delay)
        self._delay = min(2 * self._delay, self.retry_max_s)  # a device that stays away is tried less often

    def _maybe_rescan(self) -> None:
        """Re-enumerate devices when it is time (a device plugged in, a sound server back)."""
        if not self._rescan or self._muted or time.monotonic() - self._last_rescan < self.rescan_every_s:
            return
        self._last_rescan = time.monotonic()
        try:
            rescan_devices()
        except AuraError:
            pass

    def _drop(self, source: AudioSource, error: Exception) -> None:
        """A source failed: report it and let it go. Reopen at once if it had been delivering audio (a
        hiccup is over without a wait); after the retry delay if not, so a device that opens and fails
        again without a sound is not reopened in a tight loop."""
        flowed = not self._outage
        self._report_failure(error)
        self.stream_ok.clear()
        source.stop()  # MicrophoneStream.stop returns within seconds even when PortAudio is stuck
        self._restart_detection()
        if not flowed:
            self._back_off()

    def _audio_flows(self) -> None:
        if self._outage:  # back after a reported failure: say so once, and retry promptly next time
            self._outage.clear()
            self._delay = self.retry_s
            self._recovered()

    def _run(self) -> None:
        self._outage, self._delay, self._last_rescan = set(), self.retry_s, time.monotonic()
        source: AudioSource | None = None
        try:
            while not self._stop_event.is_set():
                if source is None:
                    source = self._try_open()
                    continue
                try:
                    chunk = source.read(timeout=0.1)
                except Exception as e:
                    self._drop(source, e)
                    source = None
                    continue
                self._apply_commands()
                if chunk is not None:
                    self._audio_flows()
                    self._process(chunk)
        finally:
            self.stream_ok.clear()
            if source is not None:
                source.stop()
