"""Microphones: what there is to record from, and the bookkeeping that PortAudio's rescan needs.

* :func:`list_input_devices`, :func:`default_input_device`, :func:`resolve_input_device`:
  what there is to record from; a device is chosen by index or by (part of) its name.
* :func:`rescan_devices`: re-enumerate (a microphone plugged in, a sound server started),
  refused while a :class:`~app.listening.stream.MicrophoneStream` is open.

sounddevice is imported lazily, so this module imports (and the rest of the app
runs on files and text) on a machine without PortAudio.
"""

from __future__ import annotations

import threading
from typing import Any

from aura_model.errors import AuraError

_open_streams = 0  # MicrophoneStreams currently open in this process (rescan_devices refuses while > 0)
_open_lock = threading.Lock()  # held while counting streams and while PortAudio re-enumerates


def count_open_stream(delta: int) -> None:
    """MicrophoneStream reports opening (+1) and closing (-1) here, so rescan_devices knows when it may run."""
    global _open_streams
    with _open_lock:
        _open_streams += delta


def open_stream_count() -> int:
    """MicrophoneStreams open in this process, or closing (a stuck one may never finish closing).

    Read without _open_lock: rescan_devices holds it while PortAudio re-enumerates, which may block.
    """
    return _open_streams


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
