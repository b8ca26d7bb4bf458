"""ChatTab: the conversation — turns in (speech, files, typing), streamed answers out, one at a time.

It owns no thread: turns go to the model worker (:class:`~app.workers.model_worker.ModelThread`)
one after another, tokens come back as signals; the microphone, playback and
text-to-speech are services the window hands in. Rules it keeps:

* one request in the model at a time; later turns wait in order (their bubble says so);
* Stop sets the running request's stop event (the worker is busy, so no queued call
  could reach it), drops waiting turns and silences speech;
* while anything plays (a spoken reply or a recorded turn) the microphone is muted,
  unless barge-in is on — then speaking over the assistant silences it.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from app.settings import Settings
from app.listening.pipeline import HeardSegment
from app.workers.microphone import MicrophoneBridge, MicState
from app.workers.model_worker import AnswerDone, AskFailed, AskRequest, ModelThread, TokenPiece
from app.workers.playback import Playback, Sound
from app.workers.speech import SpeechAudio, SpeechOutput

from .audio_clip import AudioClip
from .banner import Banner
from .chat_view import ChatView
from .composer import Composer
from .icons import icon
from .message_bubble import ASSISTANT, USER, MessageBubble
from .mic_bar import MicBar

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")
DISPLAY_MAX_S = 60.0  # a longer file is still sent (the model refuses it with its own message); its thumbnail stops here
RECOVERED_BANNER_MS = 4000  # "microphone is back" disappears after this


@dataclass
class Turn:
    """A user turn waiting for, or getting, its answer."""

    id: int  # AskRequest.turn
    bubble: MessageBubble  # the assistant's bubble the answer streams into
    audio: str | np.ndarray | None = None  # file path or 16 kHz samples
    text: str | None = None  # typed text
    sample_rate: int = 16000
    origin: float = field(default_factory=time.perf_counter)  # end of speech / send time
    source: str = "typed"  # typed | file | microphone
    request: AskRequest | None = None  # set when sent to the model


class ChatTab(QWidget):
    answered = Signal(object)  # AnswerDone of every finished turn (the window shows latency and memory)
    busy_changed = Signal(bool)  # a request is in the model

    def __init__(self, settings: Settings, model: ModelThread, mic: MicrophoneBridge, playback: Playback,
                 speech: SpeechOutput, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatTab")
        self.settings = settings
        self.model, self.mic, self.playback, self.speech = model, mic, playback, speech
        self.model_state = "none"  # none | loading | ready
        self._ids = itertools.count(1)
        self._waiting: deque[Turn] = deque()
        self._current: Turn | None = None
        self._turns: dict[int, Turn] = {}
        self._clips: dict[int, AudioClip] = {}
        self._history: list[dict[str, Any]] = []  # typed exchanges, for ChatSettings.context_turns
        self._mic_had_problem = False
        self._banners: dict[str, Banner] = {}  # shown banners by key
        self._build()
        self._wire()

    # -- layout -----------------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        header = QFrame()
        header.setObjectName("ChatHeader")
        h = QHBoxLayout(header)
        h.setContentsMargins(18, 8, 12, 8)
        title = QLabel("Conversation")
        title.setObjectName("ChatTitle")
        h.addWidget(title)
        h.addStretch(1)
        text_color = self.palette().text().color()
        self.copy_button = self._header_button("Copy", "copy", "Copy the conversation as text", text_color)
        self.clear_button = self._header_button("Clear", "trash", "Clear the conversation", text_color)
        h.addWidget(self.copy_button)
        h.addWidget(self.clear_button)
        outer.addWidget(header)

        self.banners = QVBoxLayout()
        self.banners.setContentsMargins(16, 8, 16, 0)
        self.banners.setSpacing(6)
        outer.addLayout(self.banners)
        self.view = ChatView()
        outer.addWidget(self.view, 1)

        bottom = QFrame()
        bottom.setObjectName("BottomPanel")
        b = QVBoxLayout(bottom)
        b.setContentsMargins(16, 10, 16, 12)
        b.setSpacing(10)
        self.mic_bar = MicBar()
        b.addWidget(self.mic_bar)
        self.composer = Composer()
        b.addWidget(self.composer)
        outer.addWidget(bottom)

    @staticmethod
    def _header_button(text: str, icon_name: str, tip: str, color: QColor) -> QToolButton:
        button = QToolButton()
        button.setText(text)
        button.setIcon(icon(icon_name, color))
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setAutoRaise(True)
        button.setToolTip(tip)
        return button

    def _wire(self) -> None:
        w = self.model.worker
        w.token.connect(self._on_token)
        w.answer_done.connect(self._on_done)
        w.failed.connect(self._on_failed)
        self.composer.submitted.connect(self.submit_text)
        self.composer.stop_requested.connect(self.stop)
        self.copy_button.clicked.connect(self.copy_conversation)
        self.clear_button.clicked.connect(self.clear)
        self.mic.segment.connect(self.submit_segment)
        self.mic.level.connect(self.mic_bar.meter.set_level)
        self.mic.state_changed.connect(self._on_mic_state)
        self.mic_bar.ptt_pressed.connect(self.mic.ptt_press)
        self.mic_bar.ptt_released.connect(self.mic.ptt_release)
        self.playback.started.connect(self._on_playback)
        self.playback.finished.connect(self._on_playback)
        self.playback.failed.connect(lambda m: self.show_banner("playback", "warning", m))
        self.speech.ready.connect(self._on_speech_ready)
        self.speech.failed.connect(lambda m: self.show_banner("speech", "warning", f"Cannot speak the answer: {m}"))

    # -- banners ----------------------------------------------------------------------------------

    def show_banner(self, key: str, level: str, text: str) -> Banner:
        """Show a message above the conversation; it replaces an earlier one with the same key."""
        self.hide_banner(key)
        banner = Banner(key, level, text)
        banner.closed.connect(lambda: self._banners.pop(key, None) if self._banners.get(key) is banner else None)
        self._banners[key] = banner
        self.banners.addWidget(banner)
        return banner

    def hide_banner(self, key: str) -> None:
        banner = self._banners.pop(key, None)
        if banner is not None:
            self.banners.removeWidget(banner)
            banner.hide()
            banner.deleteLater()

    def banner(self, key: str) -> Banner | None:
        """The banner shown for ``key``, if any."""
        return self._banners.get(key)

    def _expire(self, banner: Banner) -> None:
        if self._banners.get(banner.key) is banner:
            self.hide_banner(banner.key)

    # -- turns in ---------------------------------------------------------------------------------

    def submit_text(self, text: str) -> None:
        text = text.strip()
        if not text:
            return
        self.view.add(MessageBubble(USER, text))
        self._enqueue(Turn(next(self._ids), self._assistant_bubble(), text=text, source="typed"))

    def submit_file(self, path: str | Path) -> bool:
        """An audio file as a turn; False (with a banner) when it is not a readable audio file."""
        path = Path(path)
        if path.suffix.lower() not in AUDIO_SUFFIXES:
            self.show_banner("file", "warning", f"{path.name}: not an audio file this app reads "
                             f"({', '.join(s.lstrip('.') for s in AUDIO_SUFFIXES)})")
            return False
        try:
            info = sf.info(str(path))
            frames = min(info.frames, int(DISPLAY_MAX_S * info.samplerate)) if info.frames > 0 else -1
            data, rate = sf.read(str(path), frames=frames, dtype="float32", always_2d=True)
        except Exception as exc:  # soundfile raises several types for unreadable files
            detail = " ".join(str(exc).split()) or type(exc).__name__
            self.show_banner("file", "error", f"Cannot open {path.name}: {detail}")
            return False
        self.hide_banner("file")
        samples = data.mean(axis=1).astype(np.float32) if data.shape[1] else np.zeros(0, np.float32)
        turn_id = next(self._ids)
        self._add_audio_bubble(turn_id, samples, rate, path.name)
        self._enqueue(Turn(turn_id, self._assistant_bubble(), audio=str(path), source="file"))
        return True

    def submit_segment(self, heard: HeardSegment) -> None:
        """An utterance from the microphone."""
        seg = heard.segment
        if self.playback.playing is not None and self.settings.audio.barge_in:
            self.silence()  # barge-in: the user talks over the assistant
        turn_id = next(self._ids)
        self._add_audio_bubble(turn_id, seg.samples, seg.sample_rate, "microphone")
        self._enqueue(Turn(turn_id, self._assistant_bubble(), audio=seg.samples, sample_rate=seg.sample_rate,
                           origin=heard.speech_end_at, source="microphone"))

    def _add_audio_bubble(self, turn_id: int, samples: np.ndarray, rate: int, source: str) -> None:
        color = self.palette().color(QPalette.ColorRole.HighlightedText)
        clip = AudioClip(samples, rate, source, color)
        bubble = MessageBubble(USER, clip=clip)
        bubble.play_requested.connect(lambda: self._toggle_clip(turn_id))
        self._clips[turn_id] = clip
        self.view.add(bubble)

    def _assistant_bubble(self) -> MessageBubble:
        return self.view.add(MessageBubble(ASSISTANT))

    # -- the queue --------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._current is not None

    def set_model_state(self, state: str) -> None:
        """none | loading | ready; waiting turns go out once it is ready, and fail when there is none."""
        self.model_state = state
        if state == "ready":
            self._dispatch()
        elif state == "none":
            while self._waiting:
                self._waiting.popleft().bubble.fail("No model is loaded: choose an AuRA bundle in Settings.")
        for turn in self._waiting:
            turn.bubble.set_waiting(self._waiting_note())

    def _waiting_note(self) -> str:
        return "waiting for the model to load" if self.model_state == "loading" else "waiting for the previous answer"

    def _enqueue(self, turn: Turn) -> None:
        self._turns[turn.id] = turn
        if self.model_state == "none":
            turn.bubble.fail("No model is loaded: choose an AuRA bundle in Settings.")
            return
        self._waiting.append(turn)
        turn.bubble.set_waiting(self._waiting_note() if (self.busy or self.model_state != "ready") else "")
        self._dispatch()

    def _dispatch(self) -> None:
        if self.busy or self.model_state != "ready" or not self._waiting:
            return
        turn = self._waiting.popleft()
        chat = self.settings.chat
        turn.request = AskRequest(
            turn=turn.id, audio=turn.audio, text=turn.text, sample_rate=turn.sample_rate, gen=chat.generation(),
            history=tuple(self._history[-2 * chat.context_turns:]) if chat.context_turns else (),
            system_prompt=chat.system_prompt or None, origin=turn.origin)
        self._current = turn
        turn.bubble.set_waiting("")
        self.composer.set_generating(True)
        self.busy_changed.emit(True)
        self.model.ask(turn.request)

    # -- answers out ------------------------------------------------------------------------------

    def _on_token(self, piece: TokenPiece) -> None:
        turn = self._turns.get(piece.turn)
        if turn is not None:
            turn.bubble.append(piece.text)

    def _on_done(self, done: AnswerDone) -> None:
        turn = self._turns.pop(done.turn, None)
        if turn is None:
            return
        turn.bubble.finish(self._meta(turn, done), stopped=done.stopped)
        if turn.source == "typed" and done.text and not done.stopped:
            self._history += [{"role": "user", "content": turn.text},
                              {"role": "assistant", "content": done.text}]
        self.answered.emit(done)
        if self.settings.speech.enabled and done.text and not done.stopped:
            self.speech.say(done.turn, done.text, self.settings.speech.voice, self.settings.speech.rate)
        self._finish_current(done.turn)

    def _on_failed(self, failure: AskFailed) -> None:
        turn = self._turns.pop(failure.turn, None)
        if turn is not None:
            turn.bubble.fail(failure.message)
        self._finish_current(failure.turn)

    def _finish_current(self, turn_id: int) -> None:
        if self._current is not None and self._current.id == turn_id:
            self._current = None
            self.composer.set_generating(False)
            self.busy_changed.emit(False)
        self._dispatch()

    @staticmethod
    def _meta(turn: Turn, done: AnswerDone) -> str:
        if done.first_token_ms is None:
            return "stopped" if done.stopped else ""
        origin = "end of speech" if turn.source == "microphone" else "send"
        text = f"{done.first_token_ms:.0f} ms from {origin} to first token"
        return text + (" · stopped" if done.stopped else "")

    # -- stop, clear, copy --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop the answer being generated, drop waiting turns, and silence any speech."""
        if self._current is not None and self._current.request is not None:
            self._current.request.stop.set()
        while self._waiting:
            turn = self._waiting.popleft()
            self._turns.pop(turn.id, None)
            turn.bubble.finish("", stopped=True)
        self.silence()

    def silence(self) -> None:
        self.speech.stop()
        playing = self.playback.playing
        if playing is not None and not (isinstance(playing.key, tuple) and playing.key[0] == "clip"):
            self.playback.stop()

    def clear(self) -> None:
        self.stop()
        self.playback.stop()
        self.view.clear()
        self._clips.clear()
        self._history.clear()

    def copy_conversation(self) -> None:
        QGuiApplication.clipboard().setText(self.view.transcript())

    # -- microphone, playback, speech -------------------------------------------------------------

    def _on_mic_state(self, state: MicState) -> None:
        bar = self.mic_bar
        bar.set_enabled_state(state.running)
        bar.meter.set_active(state.running and state.ok and not state.muted)
        if not state.running:
            bar.set_status("off", "idle")
        elif not state.ok:
            bar.set_status("no microphone" if state.error else "opening…", "error" if state.error else "idle")
        elif state.muted:
            bar.set_status("muted while speaking", "warning")
        elif state.push_to_talk:
            bar.set_status(f"hold {self.settings.audio.ptt_key} to talk", "ok")
        else:
            bar.set_status("listening", "ok")
        if state.running and not state.ok and state.error:
            self._mic_had_problem = True
            self.show_banner("mic", "warning",
                             f"Microphone unavailable: {state.error}. You can still type or drop audio files; "
                             "listening resumes by itself when a microphone is back.")
        elif state.running and state.ok and self._mic_had_problem:
            self._mic_had_problem = False
            banner = self.show_banner("mic", "info", "The microphone is back: listening again.")
            QTimer.singleShot(RECOVERED_BANNER_MS, banner, lambda: self._expire(banner))
        elif not state.running:
            self._mic_had_problem = False
            self.hide_banner("mic")

    def _toggle_clip(self, turn_id: int) -> None:
        clip = self._clips.get(turn_id)
        if clip is None:
            return
        playing = self.playback.playing
        if playing is not None and playing.key == ("clip", turn_id):
            self.playback.stop()
        else:
            self.playback.play(("clip", turn_id), clip.samples, clip.sample_rate)

    def _on_speech_ready(self, audio: SpeechAudio) -> None:
        if self.settings.speech.enabled:
            self.playback.play(("speech", audio.turn), audio.samples, audio.sample_rate)

    def _on_playback(self, _sound: Sound) -> None:
        playing = self.playback.playing
        for turn_id, clip in self._clips.items():
            clip.set_playing(playing is not None and playing.key == ("clip", turn_id))
        self.update_mute()

    def update_mute(self) -> None:
        """Muted while something plays, unless barge-in is on."""
        self.mic.mute(self.playback.playing is not None and not self.settings.audio.barge_in)
