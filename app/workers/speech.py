"""Spoken replies: text-to-speech with espeak-ng, synthesised off the GUI thread.

Qt's own TextToSpeech lives in PySide6-Addons (hundreds of MB); espeak-ng is a
small, well-kept synthesizer packaged by every Linux distribution (and available
for macOS and Windows), and the project already uses it for its demo speech. The
engine is looked up lazily: without espeak-ng the app runs, and Settings says
spoken replies are unavailable.

:class:`SpeechOutput` turns text into samples on a daemon thread and hands them
back through ``ready``; the window plays them with :class:`~app.workers.playback.Playback`
(so spoken replies and recorded turns share one output and one mute rule).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import soundfile as sf
from PySide6.QtCore import QObject, Signal

from aura_model.errors import AuraError

MAX_CHARS = 2000  # longer answers are cut for speaking (a runaway answer should not talk for minutes)


@dataclass(frozen=True)
class Voice:
    id: str  # what the engine takes (espeak-ng: a language/voice code such as "en-us")
    label: str  # what Settings shows


class SpeechEngine(Protocol):
    """A text-to-speech engine (espeak-ng, or a fake in tests)."""

    name: str

    def available(self) -> bool: ...
    def voices(self) -> list[Voice]: ...
    def synthesize(self, text: str, voice: str, rate: int) -> tuple[np.ndarray, int]: ...


class EspeakEngine:
    """espeak-ng through its command line: text -> wav file -> float32 samples."""

    name = "espeak-ng"

    def __init__(self, executable: str = "espeak-ng") -> None:
        self.executable = executable

    @functools.cache
    def _path(self) -> str | None:
        return shutil.which(self.executable)

    def available(self) -> bool:
        return self._path() is not None

    @functools.cache
    def voices(self) -> list[Voice]:
        """The engine's voices (mbrola voices need extra packages and are left out)."""
        if not self.available():
            return []
        try:
            out = subprocess.run([self._path(), "--voices"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return []
        voices, seen = [], set()
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) < 5 or cols[4].startswith(("mb/", "!v/")) or cols[1] in seen:
                continue
            seen.add(cols[1])
            voices.append(Voice(cols[1], f"{cols[3].replace('_', ' ')} ({cols[1]})"))
        return sorted(voices, key=lambda v: v.label.lower())

    def synthesize(self, text: str, voice: str, rate: int) -> tuple[np.ndarray, int]:
        path = self._path()
        if path is None:
            raise AuraError("spoken replies need espeak-ng (Debian/Ubuntu: apt install espeak-ng)")
        with tempfile.TemporaryDirectory(prefix="aura-tts-") as tmp:
            wav = Path(tmp) / "speech.wav"
            cmd = [path, "-s", str(rate), "-w", str(wav)]
            if voice:
                cmd += ["-v", voice]
            done = subprocess.run(cmd + ["--", text], capture_output=True, text=True, timeout=60)
            if done.returncode != 0 or not wav.is_file():
                raise AuraError(f"espeak-ng failed: {done.stderr.strip() or done.returncode}")
            samples, sr = sf.read(str(wav), dtype="float32", always_2d=True)
        return samples.mean(axis=1).astype(np.float32), int(sr)


@dataclass(frozen=True)
class SpeechAudio:
    """Payload of ``ready``: a reply turned into sound."""

    turn: int  # the answer's turn
    samples: np.ndarray  # float32 mono
    sample_rate: int  # Hz


class SpeechOutput(QObject):
    """Synthesises replies on a daemon thread, one at a time; the newest request wins."""

    ready = Signal(object)  # SpeechAudio, to be played
    failed = Signal(str)  # why a reply could not be spoken

    def __init__(self, parent: QObject | None = None, engine: SpeechEngine | None = None) -> None:
        super().__init__(parent)
        self.engine = engine or EspeakEngine()
        self._generation = 0  # bumped by every say() and stop(); a stale synthesis is dropped
        self._lock = threading.Lock()

    def available(self) -> bool:
        return self.engine.available()

    def say(self, turn: int, text: str, voice: str = "", rate: int = 175) -> None:
        text = " ".join(text.split())[:MAX_CHARS]
        if not text:
            return
        with self._lock:
            self._generation += 1
            generation = self._generation
        threading.Thread(target=self._run, args=(generation, turn, text, voice, rate), name="aura-tts",
                         daemon=True).start()

    def stop(self) -> None:
        """Drop any reply being synthesised (playing is stopped through Playback)."""
        with self._lock:
            self._generation += 1

    def _run(self, generation: int, turn: int, text: str, voice: str, rate: int) -> None:
        try:
            samples, sr = self.engine.synthesize(text, voice, rate)
        except Exception as e:
            self.failed.emit(str(e) if isinstance(e, AuraError) else f"text-to-speech failed: {type(e).__name__}: {e}")
            return
        with self._lock:
            if generation != self._generation:
                return
        self.ready.emit(SpeechAudio(turn, samples, sr))
