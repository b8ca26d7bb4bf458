"""ChatTab: the conversation's view — turns in (speech, files, typing), streamed answers out.

It owns no thread and no rules: the turn queue, the history and the barge-in
policy are :class:`~app.conversation.Conversation`'s (plain Python); this widget
draws the bubbles and wires the conversation to the services the window hands in:
the model worker (:class:`~app.workers.model_worker.ModelThread`, tokens come back
as signals), the microphone, playback and text-to-speech. Waiting turns say so in
their bubble; Stop also silences speech; a recorded turn playing mutes the
microphone like a spoken reply does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from app.audio_file import is_audio_file, not_audio_message, read_preview
from app.conversation import Conversation, Turn
from app.listening.pipeline import HeardSegment
from app.settings import Settings
from app.workers.microphone import MicrophoneBridge, MicState
from app.workers.model_worker import AnswerDone, AskFailed, AskRequest, ModelThread, TokenPiece
from app.workers.playback import Playback, Sound
from app.workers.speech import SpeechAudio, SpeechOutput
from aura_model.errors import AuraError

from .audio_clip import AudioClip
from .banner import Banner
from .chat_view import ChatView
from .composer import Composer
from .icons import icon
from .message_bubble import ASSISTANT, USER, MessageBubble
from .mic_bar import MicBar


RECOVERED_BANNER_MS = 4000  # "microphone is back" disappears after this
NO_MODEL_MESSAGE = "No model is loaded: choose an AuRA bundle in Settings."


class ChatTab(QWidget):
    answered = Signal(object)  # AnswerDone of every finished turn (the window shows latency and memory)
    busy_changed = Signal(bool)  # a request is in the model

    def __init__(self, settings: Settings, model: ModelThread, mic: MicrophoneBridge, playback: Playback,
                 speech: SpeechOutput, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatTab")
        self.conversation = Conversation(self._send, model_state="none")  # a turn's payload: its answer's bubble
        self.settings = settings
        self.model, self.mic, self.playback, self.speech = model, mic, playback, speech
        self._clips: dict[int, AudioClip] = {}
        self._mic_had_problem = False
        self._banners: dict[str, Banner] = {}  # shown banners by key
        self._build()
        self._wire()

    @property
    def settings(self) -> Settings:
        return self._settings

    @settings.setter
    def settings(self, settings: Settings) -> None:
        """The window assigns changed settings here; the conversation's rules follow them."""
        self._settings = settings
        self.conversation.context_turns = settings.chat.context_turns
        self.conversation.barge_in = settings.audio.barge_in

    @property
    def model_state(self) -> str:
        """none | loading | ready."""
        return self.conversation.model_state

    @property
    def busy(self) -> bool:
        """A turn is in the model."""
        return self.conversation.busy

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
        self._enqueue(self.conversation.new_turn(text=text, source="typed"))

    def submit_file(self, path: str | Path) -> bool:
        """An audio file as a turn; False (with a banner) when it is not a readable audio file."""
        path = Path(path)
        if not is_audio_file(path):
            self.show_banner("file", "warning", not_audio_message(path))
            return False
        try:
            preview = read_preview(path)
        except AuraError as exc:
            self.show_banner("file", "error", str(exc))
            return False
        self.hide_banner("file")
        turn = self.conversation.new_turn(audio=str(path), source="file")
        self._add_audio_bubble(turn.id, preview.samples, preview.sample_rate, path.name)
        self._enqueue(turn)
        return True

    def submit_segment(self, heard: HeardSegment) -> None:
        """An utterance from the microphone."""
        seg = heard.segment
        if self.conversation.speech_interrupts(playing=self.playback.playing is not None):
            self.silence()
        turn = self.conversation.new_turn(audio=seg.samples, sample_rate=seg.sample_rate,
                                          origin=heard.speech_end_at, source="microphone")
        self._add_audio_bubble(turn.id, seg.samples, seg.sample_rate, "microphone")
        self._enqueue(turn)

    def _add_audio_bubble(self, turn_id: int, samples: np.ndarray, rate: int, source: str) -> None:
        color = self.palette().color(QPalette.ColorRole.HighlightedText)
        clip = AudioClip(samples, rate, source, color)
        bubble = MessageBubble(USER, clip=clip)
        bubble.play_requested.connect(lambda: self._toggle_clip(turn_id))
        self._clips[turn_id] = clip
        self.view.add(bubble)

    def _enqueue(self, turn: Turn) -> None:
        """The answer's bubble joins the view, then the turn joins the conversation."""
        turn.payload = bubble = self.view.add(MessageBubble(ASSISTANT))
        if not self.conversation.submit(turn):
            bubble.fail(NO_MODEL_MESSAGE)
        elif turn is not self.conversation.current:
            bubble.set_waiting(self.conversation.waiting_note())

    # -- the model --------------------------------------------------------------------------------

    def set_model_state(self, state: str) -> None:
        """none | loading | ready; waiting turns go out once it is ready, and fail when there is none."""
        for turn in self.conversation.set_model_state(state):
            turn.payload.fail(NO_MODEL_MESSAGE)
        for turn in self.conversation.waiting:
            turn.payload.set_waiting(self.conversation.waiting_note())

    def _send(self, turn: Turn) -> None:
        """The conversation's on_start: the turn goes to the model worker."""
        chat = self.settings.chat
        request = AskRequest(
            turn=turn.id, audio=turn.audio, text=turn.text, sample_rate=turn.sample_rate, gen=chat.generation(),
            history=turn.history, system_prompt=chat.system_prompt or None, origin=turn.origin, stop=turn.stop)
        turn.payload.set_waiting("")
        self.composer.set_generating(True)
        self.busy_changed.emit(True)
        self.model.ask(request)

    def _current(self, turn_id: int) -> Turn | None:
        turn = self.conversation.current
        return turn if turn is not None and turn.id == turn_id else None

    # -- answers out ------------------------------------------------------------------------------

    def _on_token(self, piece: TokenPiece) -> None:
        turn = self._current(piece.turn)
        if turn is not None:
            turn.payload.append(piece.text)

    def _on_done(self, done: AnswerDone) -> None:
        turn = self._current(done.turn)
        if turn is None:
            return
        turn.payload.finish(self._meta(turn, done), stopped=done.stopped)
        self.answered.emit(done)
        if self.settings.speech.enabled and done.text and not done.stopped:
            self.speech.say(done.turn, done.text, self.settings.speech.voice, self.settings.speech.rate)
        self._finish(done.turn, done.text, done.stopped)

    def _on_failed(self, failure: AskFailed) -> None:
        turn = self._current(failure.turn)
        if turn is not None:
            turn.payload.fail(failure.message)
        self._finish(failure.turn)

    def _finish(self, turn_id: int, answer: str = "", stopped: bool = False) -> None:
        if self._current(turn_id) is not None:
            self.composer.set_generating(False)
            self.busy_changed.emit(False)
        self.conversation.finish(turn_id, answer, stopped)  # the next waiting turn, if any, is sent from here

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
        for turn in self.conversation.stop():
            turn.payload.finish("", stopped=True)
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
        self.conversation.clear_history()

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
        self.mic.mute(self.conversation.mutes_microphone(playing=self.playback.playing is not None))
