"""Listening: microphone capture and voice activity detection, shared by the CLI and the GUI.

Qt-free. Data flows one way: :class:`MicrophoneStream` (PortAudio via
sounddevice) -> :class:`VadSegmenter` (webrtcvad endpointing) or
:class:`PushToTalkCollector` -> :class:`Segment` handed to the caller;
:class:`Listener` runs that chain in a worker thread. Modules: ``devices``
(what there is to record from), ``stream`` (one open microphone), ``listener``
(the worker thread), ``vad`` (endpointing), ``pipeline`` (`aura listen`),
``native_stderr`` (PortAudio's C-level error lines kept off the terminal).
"""

from .devices import default_input_device, list_input_devices, rescan_devices, resolve_input_device
from .listener import AudioSource, Listener
from .stream import TARGET_RATE, MicrophoneStream
from .vad import PushToTalkCollector, Segment, VadConfig, VadSegmenter, as_float_mono, rms_db

__all__ = [
    "TARGET_RATE",
    "AudioSource",
    "Listener",
    "MicrophoneStream",
    "PushToTalkCollector",
    "Segment",
    "VadConfig",
    "VadSegmenter",
    "as_float_mono",
    "default_input_device",
    "list_input_devices",
    "rescan_devices",
    "resolve_input_device",
    "rms_db",
]
