"""The conversation's rules, without Qt: which turn the model answers next, what it is told of
earlier turns, and whether the microphone listens while something plays.

Shared by the Chat tab (app/widgets/chat_tab.py, which only draws and wires) and
`aura listen` (app/listening/pipeline.py). The rules:

* one turn in the model at a time; later turns wait in order of arrival;
* Stop sets the running turn's stop event (the model is busy generating, so an
  event is the only thing that reaches it) and drops the waiting turns;
* a typed question answered in full becomes part of the history; each turn is
  sent with the last ``context_turns`` of those exchanges (spoken turns are not
  kept: their question is audio, which the model is not sent twice);
* while something plays the microphone is muted, unless barge-in is on: then
  speaking over the assistant silences it.

Thread-safe: `aura listen` submits turns from the Listener thread and finishes
them on its own thread. ``on_start`` is called outside the lock.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

NO_MODEL = "none"  # no model is loaded: turns are refused
LOADING = "loading"  # a model is loading: turns wait for it
READY = "ready"  # turns go to the model one after another
MODEL_STATES = (NO_MODEL, LOADING, READY)

WAITING_FOR_MODEL = "waiting for the model to load"
WAITING_FOR_ANSWER = "waiting for the previous answer"


@dataclass(eq=False)
class Turn:
    """A user turn waiting for, or getting, its answer."""

    id: int  # unique within its Conversation, in order of arrival (AskRequest.turn in the GUI)
    audio: str | np.ndarray | None = None  # an audio file path, or mono float32 samples at sample_rate
    text: str | None = None  # typed text
    sample_rate: int = 16000  # Hz of ``audio`` when it is samples
    origin: float = field(default_factory=time.perf_counter)  # end of speech (or send): latency counts from here
    source: str = "typed"  # typed | file | microphone
    payload: Any = None  # the caller's own data for the turn (Chat tab: the answer's bubble; aura listen: the HeardSegment)
    history: tuple[dict[str, str], ...] = ()  # earlier {"role", "content"} messages sent along; set when it starts
    stop: threading.Event = field(default_factory=threading.Event)  # set by Conversation.stop while it is answered


class Conversation:
    """The turn queue, the history and the barge-in policy; the caller sends turns to the model.

    ``on_start(turn)`` is called when ``turn`` may go to the model (from whichever
    thread submitted or finished the turn before it); the caller sends it and
    calls :meth:`finish` when the model is done with it.
    """

    def __init__(self, on_start: Callable[[Turn], None], *, context_turns: int = 0, barge_in: bool = False,
                 model_state: str = READY) -> None:
        self.on_start = on_start
        self.context_turns = context_turns  # typed exchanges sent along with each turn (ChatSettings.context_turns)
        self.barge_in = barge_in  # keep listening while something plays (AudioSettings.barge_in)
        self._model_state = _checked_state(model_state)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._waiting: deque[Turn] = deque()
        self._current: Turn | None = None
        self._history: list[dict[str, str]] = []  # every typed exchange, oldest first; trimmed when sent

    # -- state ------------------------------------------------------------------------------------

    @property
    def model_state(self) -> str:
        return self._model_state

    @property
    def current(self) -> Turn | None:
        """The turn in the model, if any."""
        return self._current

    @property
    def busy(self) -> bool:
        return self._current is not None

    @property
    def waiting(self) -> tuple[Turn, ...]:
        """Turns waiting for the model, in the order they will be answered."""
        with self._lock:
            return tuple(self._waiting)

    def waiting_note(self) -> str:
        """What a waiting turn is waiting for."""
        return WAITING_FOR_MODEL if self._model_state == LOADING else WAITING_FOR_ANSWER

    def context(self) -> tuple[dict[str, str], ...]:
        """The messages a turn starting now is sent along: the last ``context_turns`` typed exchanges."""
        with self._lock:
            return self._context()

    # -- turns ------------------------------------------------------------------------------------

    def new_turn(self, **fields: Any) -> Turn:
        """A Turn with the next id; ``fields`` are its other fields."""
        with self._lock:
            turn_id = next(self._ids)
        return Turn(turn_id, **fields)

    def submit(self, turn: Turn) -> bool:
        """Queue ``turn``; it starts at once when the model is ready and free. False (not queued) without a model."""
        with self._lock:
            if self._model_state == NO_MODEL:
                return False
            self._waiting.append(turn)
            started = self._take_next()
        self._start(started)
        return True

    def finish(self, turn_id: int, answer: str = "", stopped: bool = False) -> Turn | None:
        """The model is done with ``turn_id`` (``answer`` empty when it failed); the next waiting turn starts.

        Returns the finished turn, or None when ``turn_id`` was not the turn in the model.
        """
        with self._lock:
            finished = self._current if self._current is not None and self._current.id == turn_id else None
            if finished is not None:
                self._current = None
                if finished.source == "typed" and finished.text and answer and not stopped:
                    self._history += [{"role": "user", "content": finished.text},
                                      {"role": "assistant", "content": answer}]
            started = self._take_next()
        self._start(started)
        return finished

    def stop(self) -> list[Turn]:
        """Stop the turn in the model (it ends between two tokens) and drop the waiting turns, returned in order."""
        with self._lock:
            if self._current is not None:
                self._current.stop.set()
            dropped = list(self._waiting)
            self._waiting.clear()
        return dropped

    def set_model_state(self, state: str) -> list[Turn]:
        """none | loading | ready. Ready starts the next waiting turn; none drops the waiting turns (returned)."""
        with self._lock:
            self._model_state = _checked_state(state)
            dropped: list[Turn] = []
            if self._model_state == NO_MODEL:
                dropped = list(self._waiting)
                self._waiting.clear()
            started = self._take_next()
        self._start(started)
        return dropped

    def clear_history(self) -> None:
        with self._lock:
            self._history.clear()

    # -- barge-in ---------------------------------------------------------------------------------

    def mutes_microphone(self, playing: bool) -> bool:
        """Whether the microphone is muted now: while something plays, unless barge-in is on."""
        return playing and not self.barge_in

    def speech_interrupts(self, playing: bool) -> bool:
        """Whether an utterance heard now silences what plays (barge-in: the user talks over the assistant)."""
        return playing and self.barge_in

    # -- internals (under the lock) ---------------------------------------------------------------

    def _context(self) -> tuple[dict[str, str], ...]:
        return tuple(self._history[-2 * self.context_turns:]) if self.context_turns > 0 else ()

    def _take_next(self) -> Turn | None:
        if self._current is not None or self._model_state != READY or not self._waiting:
            return None
        turn = self._waiting.popleft()
        turn.history = self._context()
        self._current = turn
        return turn

    def _start(self, turn: Turn | None) -> None:
        if turn is not None:
            self.on_start(turn)


def _checked_state(state: str) -> str:
    if state not in MODEL_STATES:
        raise ValueError(f"model state must be one of {MODEL_STATES}, got {state!r}")
    return state
