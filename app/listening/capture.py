"""Microphone capture (sounddevice / PortAudio) and the listening worker.

* :func:`list_input_devices`, :func:`default_input_device`, :func:`resolve_input_device`:
  what there is to record from; a device is chosen by index or by (part of) its name.
* :class:`MicrophoneStream`: one open input. The PortAudio callback only copies
  blocks into a queue and counts status flags; :meth:`MicrophoneStream.read`
  hands out 16 kHz mono float32 chunks, resampling with soxr when the device
  cannot record at 16 kHz itself.
* :class:`Listener`: a plain daemon thread that reads a MicrophoneStream, runs a
  :class:`~app.listening.vad.VadSegmenter` (or push-to-talk) and calls back with
  segments, levels and errors. A stream error is reported, never fatal: the
  listener retries opening the device every ``retry_s`` until it comes back.

sounddevice is imported lazily, so this module imports (and the rest of the app
runs on files and text) on a machine without PortAudio. No Qt here: the GUI
wraps the callbacks in signals itself.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Protocol

import numpy as np

from aura_model.errors import AuraError

from .vad import PushToTalkCollector, Segment, VadConfig, VadSegmenter, as_float_mono, rms_db

TARGET_RATE = 16000  # Hz handed out by MicrophoneStream.read; what the VAD and the model's audio front-end use
BLOCK_MS = 30  # PortAudio block: one VAD frame (480 samples at 16 kHz)

_open_streams = 0  # MicrophoneStreams currently open in this process (rescan_devices refuses while > 0)
_open_lock = threading.Lock()


def _sounddevice():
    """The sounddevice module, or AuraError when the PortAudio library is missing."""
    try:
        import sounddevice
    except OSError as e:  # sounddevice raises OSError when libportaudio cannot be loaded
        raise AuraError(f"PortAudio is not available ({e}); "
                        "install it (Debian/Ubuntu: apt install libportaudio2)") from e
    return sounddevice


def _device_dict(index: int, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": index,
        "name": str(info["name"]),
        "channels": int(info["max_input_channels"]),
        "default_samplerate": float(info["default_samplerate"]),
    }


def list_input_devices() -> list[dict[str, Any]]:
    """Devices that can record: ``[{index, name, channels, default_samplerate}]``.

    An empty list (not an error) when PortAudio finds none or is not installed.
    PortAudio enumerates devices once, when sounddevice is imported; call
    :func:`rescan_devices` to see devices (or a sound server) that appeared later.
    """
    try:
        sd = _sounddevice()
        devices = sd.query_devices()
    except Exception:  # no PortAudio, or PortAudio failing to enumerate: nothing to record from
        return []
    return [_device_dict(i, d) for i, d in enumerate(devices) if d["max_input_channels"] > 0]


def default_input_device() -> dict[str, Any] | None:
    """The system's default input device, or None when there is none."""
    devices = list_input_devices()
    if not devices:
        return None
    try:
        index = int(_sounddevice().default.device[0])
    except Exception:
        index = -1
    if index < 0:
        try:  # sounddevice's default is unset: ask the first host API (ALSA, CoreAudio, MME) for its default
            index = int(_sounddevice().query_hostapis(0)["default_input_device"])
        except Exception:
            index = -1
    return next((d for d in devices if d["index"] == index), None)


def rescan_devices() -> bool:
    """Re-enumerate PortAudio devices (a microphone plugged in, a sound server started).

    PortAudio can only do this by terminating and re-initialising itself, which
    closes every PortAudio stream in the process (sounddevice output included), so
    this refuses (returns False) while a MicrophoneStream is open. Other modules
    playing audio through sounddevice must not call it mid-playback.
    """
    sd = _sounddevice()
    with _open_lock:
        if _open_streams:
            return False
        sd._terminate()
        sd._initialize()
    return True


def resolve_input_device(device: int | str | None) -> dict[str, Any]:
    """The input device meant by ``device``: None = default, an index, or (part of) a name.

    A name matches exactly (case-insensitive) first, then as a substring; several
    substring matches are an error listing them.
    """
    devices = list_input_devices()
    if not devices:
        raise AuraError("no audio input device found (is a microphone connected and PortAudio installed?)")
    names = ", ".join(f"{d['index']}: {d['name']!r}" for d in devices)
    if device is None:
        found = default_input_device()
        if found is None:
            raise AuraError(f"no default audio input device; choose one of: {names}")
        return found
    if isinstance(device, str) and device.strip().isdigit():
        device = int(device.strip())
    if isinstance(device, int):
        match = [d for d in devices if d["index"] == device]
        if not match:
            raise AuraError(f"audio input device index {device} does not exist or cannot record; "
                            f"choose one of: {names}")
        return match[0]
    wanted = device.strip().lower()
    exact = [d for d in devices if d["name"].lower() == wanted]
    if exact:
        return exact[0]
    partial = [d for d in devices if wanted in d["name"].lower()]
    if len(partial) == 1:
        return partial[0]
    if not partial:
        raise AuraError(f"no audio input device named {device!r}; choose one of: {names}")
    raise AuraError(f"audio input device name {device!r} is ambiguous; it matches: "
                    + ", ".join(f"{d['index']}: {d['name']!r}" for d in partial))


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
        global _open_streams
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
        with _open_lock:
            _open_streams += 1
        self._stream = stream
        self._last_data = time.monotonic()
        return self

    def stop(self) -> None:
        """Stop and close the stream; audio still queued is discarded. Safe to call twice."""
        global _open_streams
        stream, self._stream = self._stream, None
        if stream is None:
            return
        self._stopping = True
        try:
            stream.stop()
            stream.close()
        except Exception:  # the device may already be gone; closing is best effort
            pass
        with _open_lock:
            _open_streams -= 1

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
        if time.monotonic() - self._last_data > self.stall_timeout_s:
            raise AuraError(f"no audio from input device {name!r} for {self.stall_timeout_s:.1f} s "
                            "(device unplugged or sound server gone?)")


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
