"""The headless listening pipeline: microphone -> VAD -> Assistant, without a window (`aura listen`).

Qt-free. The :class:`~app.listening.listener.Listener` thread captures and endpoints;
its segments become turns of a :class:`~app.conversation.Conversation` (the turn
queue the GUI uses too) and are answered one after another on the caller's thread,
so the model and the audio never share a thread. The GUI runs the same chain with
the model in a QThread instead (app/workers/).
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from app.conversation import Conversation, Turn
from aura_model.config import GenerationSettings
from aura_model.errors import AuraError

from .devices import open_stream_count
from .listener import AudioSource, Listener
from .vad import Segment, VadConfig

EXIT_GRACE_S = 10.0  # after Ctrl-C, `aura listen` ends within this long whatever PortAudio does


@dataclass(frozen=True)
class HeardSegment:
    """One utterance from the microphone, and when it was handed over."""

    segment: Segment  # the samples (16 kHz mono float32) and their stream times
    received_at: float  # time.perf_counter() when the endpoint was decided

    @property
    def speech_end_at(self) -> float:
        """perf_counter() time the speech ended: the decision came endpoint_delay_s (the hang-over) later."""
        return self.received_at - self.segment.endpoint_delay_s


def samples_for_model(assistant, samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Microphone samples at the rate the model hears (resampled when its audio front-end differs)."""
    rate = assistant.config.audio.sample_rate
    if sample_rate == rate:
        return samples
    from aura_model.audio import resample

    return resample(samples, sample_rate, rate)


@dataclass(frozen=True)
class HeardAnswer:
    """An utterance and the model's answer to it."""

    heard: HeardSegment
    text: str  # the whole answer
    first_token_ms: float | None  # end of speech -> first piece (VAD hang-over included); None if empty
    model_first_token_ms: float | None  # answering started -> first piece (features, embedding, prefill)
    total_ms: float  # answering started -> done


class ListenPipeline:
    """Listener + Assistant. ``open()``, then ``next_segment()`` / ``stream_answer()`` in a loop, then ``close()``.

    Asking for the next segment ends the previous one's turn, answered or not.
    """

    def __init__(self, assistant, *, device: int | str | None = None, vad_config: VadConfig | None = None,
                 gen: GenerationSettings | None = None, system_prompt: str | None = None,
                 stream_factory: Callable[[], AudioSource] | None = None) -> None:
        self.assistant = assistant  # aura_model.assistant.Assistant
        self.gen = gen or GenerationSettings()
        self.system_prompt = system_prompt
        self._startable: queue.Queue[Turn] = queue.Queue()  # turns the conversation let go to the model, in order
        self.conversation = Conversation(self._startable.put)  # a turn's payload: its HeardSegment
        self._handed_out: Turn | None = None  # the turn next_segment returned last (caller's thread only)
        # device news in the order it happened: ("problem", message) or ("recovered", "")
        self._news: queue.Queue[tuple[str, str]] = queue.Queue()
        self.listener = Listener(self._on_segment, on_error=lambda m: self._news.put(("problem", m)),
                                 on_recover=lambda: self._news.put(("recovered", "")), device=device,
                                 vad_config=vad_config, stream_factory=stream_factory)

    # -- from the Listener thread ---------------------------------------------------------------

    def _on_segment(self, segment: Segment) -> None:
        heard = HeardSegment(segment, time.perf_counter())
        self.conversation.submit(self.conversation.new_turn(
            audio=segment.samples, sample_rate=segment.sample_rate, origin=heard.speech_end_at,
            source="microphone", payload=heard))

    # -- caller's thread -----------------------------------------------------------------------

    def open(self, timeout_s: float = 10.0) -> None:
        """Start listening; return once the microphone delivers audio. AuraError when it fails to open."""
        self.listener.start()
        deadline = time.monotonic() + timeout_s
        while not self.listener.stream_ok.wait(0.05):
            message = next((text for kind, text in self.device_news() if kind == "problem"), None)
            if message is not None or time.monotonic() > deadline:
                self.close()
                raise AuraError(message or f"the microphone delivered no audio within {timeout_s:g} s")

    def device_news(self) -> list[tuple[str, str]]:
        """What happened to the microphone since the last call, in order: ("problem", message) when it
        failed (the Listener keeps retrying by itself), ("recovered", "") when audio flows again."""
        out = []
        while True:
            try:
                out.append(self._news.get_nowait())
            except queue.Empty:
                return out

    def next_segment(self, timeout_s: float | None = None) -> HeardSegment | None:
        """The next utterance, or None when ``timeout_s`` passes without one."""
        if self._handed_out is not None:  # not answered through stream_answer: its turn ends here
            self.conversation.finish(self._handed_out.id)
            self._handed_out = None
        try:
            self._handed_out = self._startable.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return self._handed_out.payload

    def stream_answer(self, heard: HeardSegment, stop: threading.Event | None = None) -> Iterator[str | HeardAnswer]:
        """The answer's text pieces as they come, then one HeardAnswer with the whole text and timings.

        ``stop`` ends it between two pieces; without one, ``conversation.stop()`` does.
        """
        turn = self._handed_out if self._handed_out is not None and self._handed_out.payload is heard else None
        if stop is None and turn is not None:
            stop = turn.stop
        audio = samples_for_model(self.assistant, heard.segment.samples, heard.segment.sample_rate)
        started = time.perf_counter()
        first, pieces = None, []
        for piece in self.assistant.stream(audio, None, self.gen, stop, system_prompt=self.system_prompt):
            if first is None:
                first = time.perf_counter()
            pieces.append(piece)
            yield piece
        done = time.perf_counter()
        if turn is not None:
            self._handed_out = None
            self.conversation.finish(turn.id, "".join(pieces), stopped=stop is not None and stop.is_set())
        yield HeardAnswer(
            heard=heard, text="".join(pieces),
            first_token_ms=None if first is None else (first - heard.speech_end_at) * 1000,
            model_first_token_ms=None if first is None else (first - started) * 1000,
            total_ms=(done - started) * 1000)

    def close(self) -> None:
        self.listener.stop()


def exit_soon(code: int, grace_s: float = EXIT_GRACE_S) -> None:
    """End the process with ``code`` after ``grace_s`` seconds unless it has ended normally by then.

    A PortAudio call blocked on a dead device (closing a stream, Pa_Terminate at exit) must not keep
    `aura listen` alive after Ctrl-C. No flushing here: the blocked thread may hold a stream's lock,
    and everything the command prints is flushed as it goes.
    """
    def end() -> None:
        time.sleep(grace_s)
        os._exit(code)

    threading.Thread(target=end, name="aura-exit-deadline", daemon=True).start()


def leave_now_if_portaudio_is_stuck(code: int, message: str) -> None:
    """After the pipeline closed: if a MicrophoneStream is still open or closing, print ``message`` and
    end the process at once with ``code``.

    Such a stream has a PortAudio thread stuck in C, and a normal exit can block behind it for ever
    (C stdio's stderr lock at the final flush, Pa_Terminate), where no Python thread runs any more.
    os._exit skips all of that.
    """
    if open_stream_count() == 0:
        return
    print(message, file=sys.stderr, flush=True)
    try:
        sys.stdout.flush()
    except Exception:  # stdout closed or broken: nothing more to say there
        pass
    os._exit(code)


def save_segment(folder: str | Path, index: int, segment: Segment) -> Path:
    """Write an utterance as a float32 wav (exactly the samples the model heard)."""
    import soundfile as sf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"utterance-{index:03d}.wav"
    sf.write(str(path), np.asarray(segment.samples, dtype=np.float32), segment.sample_rate, subtype="FLOAT")
    return path
