"""Voice activity detection: turn a stream of samples into utterances.

Pure streaming code, no threads and no audio devices, so it is tested with
synthetic audio and shared by the CLI and the GUI. The microphone side lives in
:mod:`app.listening.stream` and :mod:`app.listening.listener`.

How a frame is judged (30 ms = 480 samples at 16 kHz):

* webrtcvad looks at the frame as 16-bit PCM and says speech / non-speech;
* an energy gate must also pass: the frame's RMS level must be at least
  ``snr_gate_db`` above the noise floor and above ``min_level_db``. webrtcvad
  alone calls steady white noise "speech" (about 90 % of frames at -45 dBFS at
  aggressiveness 2), so without the gate a fan or a noisy preamp would hold an
  utterance open forever. The noise floor is the quietest frame of the last
  ``noise_window_ms``: stationary noise has a frame-level spread well under
  1 dB, and speech always has quieter frames (pauses, closures) within a few
  seconds, so the minimum tracks the noise and not the voice.

How frames become a segment:

* onset: once ``onset_voiced`` of the last ``onset_window`` frames are voiced
  (3 of 5 by default: 90 ms of speech within 150 ms), speech is taken to start
  at the first voiced frame of that window;
* the segment begins ``pre_roll_ms`` before the onset so soft first syllables
  are kept (450 ms: in -35 dBFS noise the onset is found up to ~150 ms after
  the true start, and 300 ms of lead-in should remain);
* offset: ``hangover_ms`` of consecutive unvoiced frames end the utterance;
  speech ends after the last voiced frame and ``post_roll_ms`` of the hangover
  is kept in the samples;
* segments whose speech is shorter than ``min_speech_ms`` are dropped (clicks,
  coughs); a segment that reaches ``max_speech_ms`` is cut and emitted, and the
  onset rule then starts the next one (without re-using emitted audio).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from aura_model.config import ConfigBase, check  # dict round-trip and validation shared with the library configs
from aura_model.errors import AuraError

WEBRTC_SAMPLE_RATES = (8000, 16000, 32000, 48000)
WEBRTC_FRAME_MS = (10, 20, 30)
SILENCE_DB = -100.0  # level reported for digital silence (log of zero is -inf)

REASON_SILENCE = "silence"  # ended by hangover_ms of non-speech
REASON_MAX_LENGTH = "max_length"  # cut at max_speech_ms
REASON_FLUSH = "flush"  # ended by flush() at the end of the stream
REASON_PUSH_TO_TALK = "push_to_talk"  # ended by releasing the push-to-talk key


@dataclass
class VadConfig(ConfigBase):
    """Endpointing of the microphone stream (see the module docstring for the rules)."""

    sample_rate: int = 16000  # Hz of the samples fed; webrtcvad accepts 8000, 16000, 32000 or 48000
    frame_ms: int = 30  # analysis frame; webrtcvad accepts 10, 20 or 30 ms (30 ms = 480 samples at 16 kHz)
    aggressiveness: int = 2  # webrtcvad mode 0..3; higher calls more frames non-speech
    pre_roll_ms: int = 450  # kept before the detected onset: 300 ms lead-in even when noise delays the onset 150 ms
    hangover_ms: int = 600  # consecutive non-speech that ends an utterance; this is the endpoint latency
    post_roll_ms: int = 150  # part of the hangover kept after the last speech frame (<= hangover_ms)
    min_speech_ms: int = 250  # utterances with less speech (onset..offset) are dropped as clicks
    max_speech_ms: int = 30000  # a segment (pre-roll included) reaching this length is cut; 30 s = Whisper's window
    onset_window: int = 5  # frames the onset rule looks back over (5 x 30 ms = 150 ms)
    onset_voiced: int = 3  # speech starts once this many of the last onset_window frames are voiced
    snr_gate_db: float = 6.0  # a voiced frame must be this many dB above the noise floor (webrtcvad passes white noise)
    noise_window_ms: int = 3000  # the noise floor is the quietest frame level over this window
    min_level_db: float = -60.0  # frames quieter than this (dBFS) are never speech, whatever webrtcvad says

    def __post_init__(self) -> None:
        check(self.sample_rate in WEBRTC_SAMPLE_RATES,
               f"sample_rate must be one of {WEBRTC_SAMPLE_RATES} Hz (webrtcvad), got {self.sample_rate}")
        check(self.frame_ms in WEBRTC_FRAME_MS,
               f"frame_ms must be one of {WEBRTC_FRAME_MS} (webrtcvad), got {self.frame_ms}")
        check(self.aggressiveness in (0, 1, 2, 3), f"aggressiveness must be 0, 1, 2 or 3, got {self.aggressiveness}")
        check(self.pre_roll_ms >= 0, f"pre_roll_ms must be >= 0, got {self.pre_roll_ms}")
        check(self.hangover_ms >= self.frame_ms,
               f"hangover_ms must be >= frame_ms ({self.frame_ms}), got {self.hangover_ms}")
        check(0 <= self.post_roll_ms <= self.hangover_ms,
               f"post_roll_ms must be in [0, hangover_ms={self.hangover_ms}], got {self.post_roll_ms}")
        check(self.min_speech_ms >= 0, f"min_speech_ms must be >= 0, got {self.min_speech_ms}")
        check(1 <= self.onset_window <= 100, f"onset_window must be in [1, 100] frames, got {self.onset_window}")
        check(1 <= self.onset_voiced <= self.onset_window,
               f"onset_voiced must be in [1, onset_window={self.onset_window}], got {self.onset_voiced}")
        shortest = self.pre_roll_ms + self.frame_ms * self.onset_window + max(self.min_speech_ms, self.frame_ms)
        check(self.max_speech_ms >= shortest,
               f"max_speech_ms must be >= pre_roll_ms + onset window + min_speech_ms = {shortest}, "
               f"got {self.max_speech_ms}")
        check(self.snr_gate_db >= 0, f"snr_gate_db must be >= 0, got {self.snr_gate_db}")
        check(self.noise_window_ms >= self.frame_ms,
               f"noise_window_ms must be >= frame_ms ({self.frame_ms}), got {self.noise_window_ms}")
        check(SILENCE_DB <= self.min_level_db <= 0,
               f"min_level_db must be in [{SILENCE_DB}, 0] dBFS, got {self.min_level_db}")

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * self.frame_ms // 1000

    def frames(self, ms: int) -> int:
        """Whole frames covering ``ms`` milliseconds (rounded up)."""
        return math.ceil(ms / self.frame_ms)


@dataclass
class Segment:
    """One utterance, ready for the model.

    Times are stream times in seconds counted from the first sample fed (or the
    ``start_sample`` given to ``reset``), so a caller can line segments up with
    its own clock and measure latency.
    """

    samples: np.ndarray  # float32 mono at sample_rate: pre-roll + speech + post-roll
    sample_rate: int  # Hz of samples
    start_s: float  # stream time of the first sample
    end_s: float  # stream time just after the last sample (end_s - start_s == len(samples) / sample_rate)
    speech_start_s: float  # detected speech onset, without the pre-roll
    speech_end_s: float  # detected speech offset, without the post-roll / hangover
    endpoint_delay_s: float  # stream time from speech_end_s to the decision (the hangover for "silence", ~0 otherwise)
    reason: str = REASON_SILENCE  # what ended it: "silence", "max_length", "flush" or "push_to_talk"

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def speech_duration_s(self) -> float:
        return self.speech_end_s - self.speech_start_s


def as_float_mono(samples: np.ndarray) -> np.ndarray:
    """int16 or float mono samples (1-D or shape (n, 1)) as a float32 1-D array in [-1, 1).

    int16 maps by 1/32768, so int16 and ``int16 / 32768`` float input are the same signal.
    """
    x = np.asarray(samples)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1:
        raise ValueError(f"expected mono samples of shape (n,) or (n, 1), got shape {x.shape}")
    if x.dtype == np.int16:
        return x.astype(np.float32) / np.float32(32768.0)
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    raise TypeError(f"expected int16 or float samples, got dtype {x.dtype}")


def to_pcm16(x: np.ndarray) -> np.ndarray:
    """float samples as 16-bit PCM (the inverse of :func:`as_float_mono` for int16 input)."""
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2")


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (a full-scale square wave is 0 dB); SILENCE_DB for digital silence."""
    if len(x) == 0:
        return SILENCE_DB
    power = float(np.mean(np.square(x, dtype=np.float64)))
    return max(SILENCE_DB, 10.0 * math.log10(power)) if power > 0 else SILENCE_DB


def _make_vad(aggressiveness: int):
    try:
        import webrtcvad
    except ImportError as e:  # pragma: no cover - a broken install
        raise AuraError("webrtcvad is not installed; pip install webrtcvad-wheels") from e
    return webrtcvad.Vad(aggressiveness)


class VadSegmenter:
    """Streaming endpointer: ``feed`` chunks of any size, get finished :class:`Segment` objects back.

    Not thread-safe: one thread feeds it. ``on_level(db, voiced)`` (optional) is
    called once per analysed frame, e.g. for a level meter.
    """

    def __init__(self, config: VadConfig | None = None,
                 on_level: Callable[[float, bool], None] | None = None) -> None:
        self.config = config or VadConfig()
        self.on_level = on_level
        self._vad = _make_vad(self.config.aggressiveness)
        self.reset()

    # -- public state -------------------------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        """True while an utterance is open (between onset and endpoint)."""
        return self._active

    @property
    def position_s(self) -> float:
        """Stream time of the next sample to be fed."""
        return (self._origin + self._fed) / self.config.sample_rate

    def reset(self, start_sample: int = 0) -> None:
        """Forget everything (pending audio, open utterance, noise floor).

        ``start_sample`` is the stream position of the next sample fed, so a caller
        that skipped audio (e.g. while muted) keeps its clock.
        """
        c = self.config
        self._origin = int(start_sample)
        self._frame_index = 0  # index of the next frame, counted from _origin
        self._fed = 0  # samples fed since the reset
        self._pending = np.zeros(0, dtype=np.float32)  # less than one frame of samples
        self._history: deque[tuple[int, np.ndarray]] = deque(maxlen=c.frames(c.pre_roll_ms) + c.onset_window)
        self._recent: deque[tuple[int, bool]] = deque(maxlen=c.onset_window)
        self._levels: deque[float] = deque(maxlen=c.frames(c.noise_window_ms))
        self._emitted_until = 0  # frames before this index belong to an earlier segment
        self._active = False
        self._seg_frames: list[np.ndarray] = []
        self._seg_first = 0  # frame index of the segment's first frame (pre-roll included)
        self._speech_first = 0  # frame index of the speech onset
        self._last_voiced = 0  # frame index of the latest voiced frame
        self.last_level_db = SILENCE_DB  # level of the latest frame, for a level meter
        self.last_voiced = False  # verdict on the latest frame
        self.noise_floor_db = SILENCE_DB  # current noise-floor estimate

    def feed(self, samples: np.ndarray) -> list[Segment]:
        """Add int16 or float mono samples at ``config.sample_rate``; return the segments they complete."""
        x = as_float_mono(samples)
        self._fed += len(x)
        if len(self._pending):
            x = np.concatenate([self._pending, x])
        n = self.config.frame_samples
        whole = len(x) // n * n
        self._pending = x[whole:].copy()
        out: list[Segment] = []
        for i in range(0, whole, n):
            seg = self._step(x[i:i + n].copy())
            if seg is not None:
                out.append(seg)
        return out

    def flush(self) -> list[Segment]:
        """End of stream: close an open utterance (a trailing partial frame is not analysed)."""
        self._pending = np.zeros(0, dtype=np.float32)
        if not self._active:
            return []
        seg = self._close(REASON_FLUSH, decided_at=self._frame_index)
        return [seg] if seg is not None else []

    # -- per frame ----------------------------------------------------------------------------

    def _is_voiced(self, frame: np.ndarray, level: float) -> bool:
        c = self.config
        self._levels.append(level)
        self.noise_floor_db = min(self._levels)
        if level < c.min_level_db or level < self.noise_floor_db + c.snr_gate_db:
            return False
        return bool(self._vad.is_speech(to_pcm16(frame).tobytes(), c.sample_rate))

    def _step(self, frame: np.ndarray) -> Segment | None:
        c = self.config
        idx = self._frame_index
        self._frame_index += 1
        level = rms_db(frame)
        voiced = self._is_voiced(frame, level)
        self.last_level_db, self.last_voiced = level, voiced
        if self.on_level is not None:
            self.on_level(level, voiced)
        self._history.append((idx, frame))
        self._recent.append((idx, voiced))

        if not self._active:
            if sum(v for _, v in self._recent) >= c.onset_voiced:
                self._open(idx)
            return None
        self._seg_frames.append(frame)
        if voiced:
            self._last_voiced = idx
        if (idx - self._last_voiced) * c.frame_ms >= c.hangover_ms:
            return self._close(REASON_SILENCE, decided_at=idx + 1)
        if (idx + 1 - self._seg_first) * c.frame_ms >= c.max_speech_ms:
            return self._close(REASON_MAX_LENGTH, decided_at=idx + 1)
        return None

    def _open(self, idx: int) -> None:
        c = self.config
        voiced = [i for i, v in self._recent if v]
        onset = max(voiced[0], self._emitted_until)
        first = max(onset - c.frames(c.pre_roll_ms), self._emitted_until, self._history[0][0])
        self._seg_frames = [f for i, f in self._history if i >= first]
        self._seg_first, self._speech_first, self._last_voiced = first, onset, voiced[-1]
        self._active = True

    def _close(self, reason: str, decided_at: int) -> Segment | None:
        """End the open utterance; ``decided_at`` is the frame index (exclusive) at which it was decided."""
        c = self.config
        n = c.frame_samples
        speech_end = self._last_voiced + 1
        keep_until = min(speech_end + c.frames(c.post_roll_ms), self._seg_first + len(self._seg_frames))
        frames = self._seg_frames[: keep_until - self._seg_first]
        self._active = False
        self._seg_frames = []
        self._emitted_until = keep_until
        if (speech_end - self._speech_first) * c.frame_ms < c.min_speech_ms:
            return None
        sr = c.sample_rate
        start = self._origin + self._seg_first * n
        samples = np.concatenate(frames).astype(np.float32, copy=False)
        return Segment(
            samples=samples,
            sample_rate=sr,
            start_s=start / sr,
            end_s=(start + len(samples)) / sr,
            speech_start_s=(self._origin + self._speech_first * n) / sr,
            speech_end_s=(self._origin + speech_end * n) / sr,
            endpoint_delay_s=(decided_at - speech_end) * n / sr,
            reason=reason,
        )


class PushToTalkCollector:
    """Push-to-talk instead of endpointing: audio between ``press()`` and ``release()`` is one segment.

    Fed every chunk (pressed or not) so it keeps the stream clock. The VAD
    config's ``min_speech_ms`` still drops accidental taps and ``max_speech_ms``
    cuts a held key into several segments. Pure, like :class:`VadSegmenter`.
    """

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self.reset()

    @property
    def pressed(self) -> bool:
        return self._pressed

    def reset(self, start_sample: int = 0) -> None:
        """Release without emitting; ``start_sample`` is the stream position of the next sample fed."""
        self._position = int(start_sample)  # stream position of the next sample
        self._pressed = False
        self._chunks: list[np.ndarray] = []
        self._collected = 0
        self._start = 0  # stream position of the first collected sample

    def press(self) -> None:
        if not self._pressed:
            self._pressed, self._chunks, self._collected, self._start = True, [], 0, self._position

    def release(self) -> list[Segment]:
        if not self._pressed:
            return []
        self._pressed = False
        seg = self._emit(*self._take(self._collected))
        return [seg] if seg is not None else []

    def feed(self, samples: np.ndarray) -> list[Segment]:
        x = as_float_mono(samples)
        self._position += len(x)
        if not self._pressed:
            return []
        self._chunks.append(x)
        self._collected += len(x)
        out = []
        limit = self.config.max_speech_ms * self.config.sample_rate // 1000
        while self._collected >= limit:
            seg = self._emit(*self._take(limit), reason=REASON_MAX_LENGTH)
            if seg is not None:
                out.append(seg)
        return out

    def _take(self, n: int) -> tuple[int, np.ndarray]:
        """Remove the first ``n`` collected samples; return their stream position and the samples."""
        data = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.float32)
        head, rest = data[:n], data[n:]
        self._chunks = [rest] if len(rest) else []
        self._collected = len(rest)
        start, self._start = self._start, self._start + len(head)
        return start, head

    def _emit(self, start: int, samples: np.ndarray, reason: str = REASON_PUSH_TO_TALK) -> Segment | None:
        sr = self.config.sample_rate
        if len(samples) == 0 or len(samples) * 1000 < self.config.min_speech_ms * sr:
            return None
        start_s, end_s = start / sr, (start + len(samples)) / sr
        return Segment(samples=samples.astype(np.float32, copy=False), sample_rate=sr, start_s=start_s, end_s=end_s,
                       speech_start_s=start_s, speech_end_s=end_s, endpoint_delay_s=0.0, reason=reason)
