"""Audio files the user opens or drops: which ones the app takes, and their samples for display.

Qt-free. The model reads the file itself (:func:`aura_model.audio.load_audio`);
this only decodes what the user's bubble shows and plays back. load_audio does not
fit here: it refuses silent and over-long files and resamples, while the bubble
shows the file as it is and the model's refusal arrives as the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from aura_model.audio import check_regular_file
from aura_model.errors import AuraError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
DISPLAY_MAX_S = 60.0  # a longer file is still sent (the model refuses it with its own message); its thumbnail stops here


@dataclass(frozen=True)
class AudioPreview:
    """What a user bubble shows of an audio file."""

    samples: np.ndarray  # mono float32 at the file's own rate, at most DISPLAY_MAX_S of it
    sample_rate: int  # Hz, the file's


def is_audio_file(path: str | Path) -> bool:
    """Whether the name says it is an audio file this app reads."""
    return Path(path).suffix.lower() in AUDIO_SUFFIXES


def not_audio_message(path: str | Path) -> str:
    return (f"{Path(path).name}: not an audio file this app reads "
            f"({', '.join(s.lstrip('.') for s in AUDIO_SUFFIXES)})")


def read_preview(path: str | Path) -> AudioPreview:
    """The file's first DISPLAY_MAX_S as mono samples; AuraError ("Cannot open NAME: why") when it is unreadable."""
    path = Path(path)
    try:
        check_regular_file(path)  # a dropped pipe or device would block this thread for ever
    except AuraError as exc:
        raise AuraError(f"Cannot open {path.name}: {str(exc).split(': ', 1)[-1]}") from None
    try:
        info = sf.info(str(path))
        frames = min(info.frames, int(DISPLAY_MAX_S * info.samplerate)) if info.frames > 0 else -1
        data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise AuraError(f"Cannot open {path.name}: {detail}") from exc
    samples = data.mean(axis=1).astype(np.float32) if data.shape[1] else np.zeros(0, np.float32)
    return AudioPreview(samples, int(rate))
