"""The microphone as Qt signals: wraps :class:`app.listening.Listener` (its own thread does capture + VAD).

The Listener's callbacks run on its worker thread; they only emit signals, which
Qt delivers queued to the GUI thread. The capture callback itself (PortAudio's
thread) only queues frames; VAD never runs on the GUI thread.

Device health is polled from ``Listener.stream_ok`` a few times a second, so the
window can show "no microphone" and "microphone is back" without the Listener
knowing about Qt. With a real microphone, PortAudio's C-level error lines go
through :mod:`app.listening.native_stderr` (a sound server dying under a stream
can make them a flood), for the rest of the process.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from app.listening import Listener, Segment, list_input_devices, native_stderr
from app.listening import devices as listening_devices
from app.listening.pipeline import HeardSegment
from app.settings import AudioSettings

HEALTH_POLL_MS = 250  # how often stream_ok is looked at


@dataclass(frozen=True)
class MicState:
    """Payload of ``state_changed``: what the microphone is doing."""

    running: bool  # a Listener is running (the user has the microphone on)
    ok: bool  # a device is open and delivering audio
    muted: bool  # audio is discarded (the assistant is speaking)
    push_to_talk: bool  # push-to-talk instead of hands-free
    error: str | None  # the latest device problem while not ok; None when fine


class MicrophoneBridge(QObject):
    """Owns the Listener; the GUI starts, stops, mutes and configures it through here."""

    segment = Signal(object)  # HeardSegment (app.listening.pipeline): an utterance and when it was endpointed
    level = Signal(float)  # dBFS of the latest ~30 ms chunk, for the level meter
    error = Signal(str)  # a device problem (no device, unplugged, stream error); the Listener keeps retrying
    state_changed = Signal(object)  # MicState

    def __init__(self, parent: QObject | None = None,
                 stream_factory: Callable[[str | None], object] | None = None) -> None:
        """``stream_factory(device)`` replaces the real MicrophoneStream (tests feed audio through it)."""
        super().__init__(parent)
        self._stream_factory = stream_factory
        self._listener: Listener | None = None
        self._settings = AudioSettings()
        self._last_error: str | None = None
        self._muted = False
        self._state: MicState | None = None
        self._poll = QTimer(self)
        self._poll.setInterval(HEALTH_POLL_MS)
        self._poll.timeout.connect(self._check_health)

    # -- control ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._listener is not None

    @property
    def listener(self) -> Listener | None:
        return self._listener

    @property
    def muted(self) -> bool:
        return self._muted

    def start(self, settings: AudioSettings) -> None:
        """(Re)start listening with these settings."""
        self.stop()
        self._settings = settings
        device = settings.input_device or None
        factory = None
        if self._stream_factory is not None:
            make = self._stream_factory
            factory = lambda: make(device)  # noqa: E731
        self._last_error = None
        if self._stream_factory is None:  # a real microphone: PortAudio may flood stderr when its server dies
            native_stderr.install()
        self._listener = Listener(self._on_segment, on_level=self.level.emit, on_error=self._on_error,
                                  device=device, vad_config=settings.vad_config(), stream_factory=factory)
        self._listener.set_push_to_talk(settings.mode == "ptt")
        self._listener.mute(self._muted)
        self._listener.start()
        self._poll.start()
        self._check_health()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        self._poll.stop()
        if listener is not None:
            listener.stop()
        self._check_health()

    def mute(self, muted: bool) -> None:
        """Discard audio (and drop any open utterance) while muted; kept across restarts."""
        self._muted = bool(muted)
        if self._listener is not None:
            self._listener.mute(self._muted)
        self._check_health()

    def set_push_to_talk(self, enabled: bool) -> None:
        self._settings = dataclasses.replace(self._settings, mode="ptt" if enabled else "vad")
        if self._listener is not None:
            self._listener.set_push_to_talk(enabled)
        self._check_health()

    def ptt_press(self) -> None:
        if self._listener is not None:
            self._listener.ptt_press()

    def ptt_release(self) -> None:
        if self._listener is not None:
            self._listener.ptt_release()

    @staticmethod
    def devices() -> list[dict]:
        """Input devices, listed while no Listener is re-enumerating PortAudio (rescan_devices holds this lock)."""
        with listening_devices._open_lock:
            return list_input_devices()

    # -- from the Listener thread ---------------------------------------------------------------

    def _on_segment(self, segment: Segment) -> None:
        self.segment.emit(HeardSegment(segment, time.perf_counter()))

    def _on_error(self, message: str) -> None:
        self._last_error = message
        self.error.emit(message)

    # -- health ---------------------------------------------------------------------------------

    def state(self) -> MicState:
        listener = self._listener
        ok = listener is not None and listener.stream_ok.is_set()
        return MicState(running=listener is not None, ok=ok, muted=self._muted,
                        push_to_talk=self._settings.mode == "ptt",
                        error=None if ok or listener is None else self._last_error)

    def _check_health(self) -> None:
        state = self.state()
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)
