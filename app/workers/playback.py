"""Audio output: recorded turns and spoken replies, one sound at a time, played on a worker thread.

:func:`play_blocking` writes samples to a sounddevice OutputStream until done or
stopped. :class:`Playback` runs it on a daemon thread and reports start and end
as Qt signals; starting a new sound stops the one playing. The window mutes the
microphone between ``started`` and ``finished`` (unless barge-in is on), so the
assistant does not hear itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PySide6.QtCore import QObject, Signal

from aura_model.errors import AuraError

WRITE_BLOCK_S = 0.05  # samples written per call; also how quickly stop() takes effect

PlayFn = Callable[[np.ndarray, int, threading.Event], None]  # (samples, rate, stop) -> returns when done or stopped


def play_blocking(samples: np.ndarray, rate: int, stop: threading.Event) -> None:
    """Play mono float32 samples on the default output device; returns when done or ``stop`` is set."""
    try:
        import sounddevice as sd
    except OSError as e:  # no PortAudio library
        raise AuraError(f"cannot play audio: PortAudio is not available ({e})") from e
    data = np.ascontiguousarray(samples, dtype=np.float32).reshape(-1)
    try:
        device_rate = rate
        try:
            sd.check_output_settings(samplerate=rate, channels=1, dtype="float32")
        except Exception:  # the device cannot play this rate: resample to its default
            device_rate = int(sd.query_devices(kind="output")["default_samplerate"])
            import soxr

            data = soxr.resample(data, rate, device_rate).astype(np.float32)
        block = max(1, int(device_rate * WRITE_BLOCK_S))
        with sd.OutputStream(samplerate=device_rate, channels=1, dtype="float32") as stream:
            for i in range(0, len(data), block):
                if stop.is_set():
                    stream.abort()
                    return
                stream.write(data[i:i + block].reshape(-1, 1))
    except AuraError:
        raise
    except Exception as e:  # PortAudioError: no output device, device busy or gone
        raise AuraError(f"cannot play audio: {e}") from e


@dataclass(frozen=True)
class Sound:
    """Payload of Playback's signals: what is (or was) playing."""

    key: object  # the caller's name for it (a turn id, "speech", ...)
    duration_s: float  # length of the sound


class Playback(QObject):
    """Plays one sound at a time off the GUI thread."""

    started = Signal(object)  # Sound
    finished = Signal(object)  # Sound (played to the end or stopped)
    failed = Signal(str)  # why it could not play (no output device, ...)

    def __init__(self, parent: QObject | None = None, play_fn: PlayFn | None = None) -> None:
        super().__init__(parent)
        self._play_fn = play_fn or play_blocking
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None
        self._current: Sound | None = None

    @property
    def playing(self) -> Sound | None:
        return self._current

    def play(self, key: object, samples: np.ndarray, rate: int) -> None:
        self.stop()
        sound = Sound(key, len(samples) / rate)
        stop = threading.Event()
        self._stop, self._current = stop, sound
        self.started.emit(sound)
        self._thread = threading.Thread(target=self._run, args=(sound, samples, rate, stop), name="aura-playback",
                                        daemon=True)
        self._thread.start()

    def stop(self, wait_s: float = 1.0) -> None:
        """Stop the sound playing (its ``finished`` follows)."""
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(wait_s)
            self._thread = None

    def _run(self, sound: Sound, samples: np.ndarray, rate: int, stop: threading.Event) -> None:
        try:
            self._play_fn(samples, rate, stop)
        except Exception as e:
            self.failed.emit(str(e) if isinstance(e, AuraError) else f"cannot play audio: {type(e).__name__}: {e}")
        finally:
            if self._current is sound:
                self._current = None
            self.finished.emit(sound)
