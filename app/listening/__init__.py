"""Listening: microphone capture and voice activity detection, shared by the CLI and the GUI.

Qt-free. Data flows one way: :class:`MicrophoneStream` (PortAudio via
sounddevice) -> :class:`VadSegmenter` (webrtcvad endpointing) or
:class:`PushToTalkCollector` -> :class:`Segment` handed to the caller;
:class:`Listener` runs that chain in a worker thread.
"""

from .capture import (
    TARGET_RATE,
    Listener,
    MicrophoneStream,
    default_input_device,
    list_input_devices,
    rescan_devices,
    resolve_input_device,
)
from .vad import PushToTalkCollector, Segment, VadConfig, VadSegmenter, as_float_mono, rms_db

__all__ = [
    "TARGET_RATE",
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
