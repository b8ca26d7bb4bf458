"""When each word of a synthetic clip is spoken: espeak-ng's own word events, mapped onto the rendered clip.

The demo's clips come from the ``espeak-ng`` command (:mod:`.synth`); the command prints no timings, but the
library behind it (libespeak-ng) reports a WORD event, with its sample position, at the start of each word it
speaks. :func:`word_times` speaks a clip's text again through the library with the clip's voice, rate and pitch,
reads those events, and maps them through what :func:`.synth.render` did to the audio (silence trimmed, a pause
put back in front), so the times refer to the wav on disk. Measured against the command's own output, the
library's trimmed audio starts at the same sample but can end up to ~0.14 s earlier or later (measured over the
815 valid and test clips), so the word boundaries are stretched linearly onto the clip's own speech: the first
word starts where the clip's speech starts and the last one ends where it ends.

espeak-ng merges some short function words into their neighbour ("on the bedroom" has no event for "the");
such a word shares its neighbour's span with it, split by characters. A word ends where the next one starts; the
last one ends with the trimmed speech.

The library keeps global state, so calls are serialised with a lock; one call takes a few milliseconds.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

import numpy as np

from ..errors import AuraError

_AUDIO_OUTPUT_SYNCHRONOUS = 2  # espeak_AUDIO_OUTPUT: samples are handed to the callback
_EVENT_LIST_TERMINATED, _EVENT_WORD = 0, 1  # espeak_EVENT_TYPE
_RATE, _PITCH = 1, 3  # espeak_PARAMETER


class _Event(ctypes.Structure):
    """espeak_EVENT (speak_lib.h)."""

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


_Callback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class _Espeak:
    """The loaded library, its sample rate and the buffers its callback fills during one synthesis."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
        try:
            self.lib = ctypes.CDLL(name)
        except OSError as exc:
            raise AuraError(f"cannot load the espeak-ng library ({name}) for word timings: {exc}; install espeak-ng "
                            "(Debian: apt-get install espeak-ng)") from exc
        self.sample_rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
        if self.sample_rate <= 0:
            raise AuraError("the espeak-ng library failed to initialise (no voice data?)")
        self.chunks: list[np.ndarray] = []
        self.starts: dict[int, int] = {}  # 1-based character offset of a word in the text -> its first sample
        self._callback = _Callback(self._on_audio)  # keep a reference: the library calls it later
        self.lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n: int, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type == _EVENT_WORD and e.text_position > 0:  # position 0: a spurious end-of-text event
                self.starts.setdefault(e.text_position, e.sample)
            i += 1
        return 0

    def speak(self, text: str, voice: str, rate_wpm: int, pitch: int) -> tuple[np.ndarray, dict[int, int]]:
        self.chunks, self.starts = [], {}
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise AuraError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(_RATE, int(rate_wpm), 0)
        self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, 0, 0, 0, None, None)
        audio = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)
        return audio, dict(self.starts)


_lock = threading.Lock()
_engine: _Espeak | None = None


def _espeak() -> _Espeak:
    global _engine
    if _engine is None:
        _engine = _Espeak()
    return _engine


def word_bounds(words: list[str], starts: dict[int, int], speech: tuple[int, int]) -> list[float]:
    """Sample positions of the ``len(words) + 1`` word boundaries in the trimmed speech.

    ``starts``: 1-based character offset of a word in ``" ".join(words)`` -> the sample its event came at;
    ``speech``: (first, last + 1) sample of the speech after trimming. Words without an event share the span
    between the anchors around them in proportion to their characters.
    """
    t0, t1 = speech
    offsets = np.cumsum([0] + [len(w) + 1 for w in words[:-1]]) + 1
    anchors = [(i, min(max(0, starts[int(o)] - t0), t1 - t0)) for i, o in enumerate(offsets) if int(o) in starts]
    if not anchors or anchors[0][0] != 0:
        anchors = [(0, 0)] + anchors
    anchors.append((len(words), t1 - t0))
    bounds = [0.0] * (len(words) + 1)
    for (i, s), (j, e) in zip(anchors, anchors[1:]):
        e = max(e, s)
        chars = np.cumsum([0] + [len(words[k]) for k in range(i, j)])
        for k in range(i, j + 1):
            bounds[k] = s + (e - s) * float(chars[k - i]) / max(1.0, float(chars[-1]))
    return bounds


def word_times(text: str, voice: str, rate_wpm: int, pitch: int, trim_db: float, pad_before_s: float,
               speech_s: float) -> list[list]:
    """``[[word, start_s, end_s], ...]`` of ``text`` as :mod:`.synth` renders it: its speech, trimmed at ``trim_db``,
    lasts ``speech_s`` seconds and starts after ``pad_before_s`` of silence. Rounded to the millisecond."""
    words = text.split()
    if not words:
        return []
    with _lock:
        engine = _espeak()
        audio, starts = engine.speak(text, voice, rate_wpm, pitch)
        sr = engine.sample_rate
    x = np.abs(audio.astype(np.float64))
    if not x.size or x.max() == 0:
        raise AuraError(f"espeak-ng spoke nothing for {text!r} ({voice})")
    loud = np.flatnonzero(x > x.max() * 10 ** (-trim_db / 20))
    t0, t1 = int(loud[0]), int(loud[-1]) + 1
    scale = speech_s / ((t1 - t0) / sr)  # the library's speech onto the clip's (see the module docstring)
    at = [pad_before_s + scale * b / sr for b in word_bounds(words, starts, (t0, t1))]
    return [[w, round(at[i], 3), round(at[i + 1], 3)] for i, w in enumerate(words)]
