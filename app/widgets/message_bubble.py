"""MessageBubble: one turn of the conversation (the user's text or recording, or the assistant's answer)."""

from __future__ import annotations

import re

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from .audio_clip import AudioClip
from .icons import icon

USER, ASSISTANT = "user", "assistant"
_LONG_RUN = re.compile(r"(\S{32})")  # unbroken runs this long get a break opportunity (QLabel wraps at spaces only)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters a model may emit; drawn as boxes


def _wrappable(text: str) -> str:
    """Display form of a text: no control characters, long unbroken runs breakable."""
    return _LONG_RUN.sub("\\1\u200b", _CONTROL.sub("", text))


class MessageBubble(QFrame):
    """A rounded bubble; user turns sit on the right, the assistant's on the left (see ChatView)."""

    play_requested = Signal()  # the recording in this bubble should play (or stop)

    def __init__(self, role: str, text: str = "", clip: AudioClip | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.role = role  # USER or ASSISTANT
        self.setObjectName("Bubble")
        self.setProperty("role", role)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        self._text = text
        self._state = "done"  # waiting | streaming | done | stopped | failed
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 8)
        layout.setSpacing(6)
        self.clip = clip
        if clip is not None:
            clip.play_requested.connect(self.play_requested)
            layout.addWidget(clip)
        self.label = QLabel()
        self.label.setObjectName("BubbleText")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.label.setVisible(bool(text) or role == ASSISTANT)
        layout.addWidget(self.label)
        footer = QHBoxLayout()
        footer.setSpacing(6)
        self.meta = QLabel()
        self.meta.setObjectName("BubbleMeta")
        footer.addWidget(self.meta, 1)
        self.copy_button = QToolButton()
        self.copy_button.setObjectName("BubbleCopy")
        self.copy_button.setAutoRaise(True)
        self.copy_button.setIconSize(QSize(14, 14))
        self.copy_button.setToolTip("Copy this answer")
        self.copy_button.clicked.connect(self.copy)
        footer.addWidget(self.copy_button)
        layout.addLayout(footer)
        self._max_width = 640
        self._dots = 0
        self._dot_timer = QTimer(self)
        self._dot_timer.setInterval(350)
        self._dot_timer.timeout.connect(self._tick)
        if role == ASSISTANT:
            self.copy_button.setIcon(icon("copy", self.palette().text().color()))
        self._show_footer(False)
        self._render()

    # -- state ------------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The plain text of the turn (the answer so far, for the assistant)."""
        return self._text

    @property
    def state(self) -> str:
        return self._state

    def set_waiting(self, note: str = "") -> None:
        """An answer is on its way; shows animated dots (and ``note``, e.g. "waiting for the model")."""
        self._state = "waiting"
        self.meta.setText(note)
        self.meta.setVisible(bool(note))
        self._dot_timer.start()
        self._render()

    def append(self, piece: str) -> None:
        if self._state == "waiting":
            self._dot_timer.stop()
            self.meta.clear()
        self._state = "streaming"
        self._text += piece
        self._render()

    def finish(self, meta: str = "", stopped: bool = False) -> None:
        self._dot_timer.stop()
        self._state = "stopped" if stopped else "done"
        self.meta.setText(meta)
        self._show_footer(True)
        self._render()

    def fail(self, message: str) -> None:
        self._dot_timer.stop()
        self._state = "failed"
        self.setProperty("failed", True)
        self.style().unpolish(self)
        self.style().polish(self)
        self._text = message
        self.meta.setText("not answered")
        self.meta.setVisible(True)
        self.copy_button.setVisible(False)
        self._render()

    def set_max_width(self, width: int) -> None:
        """The widest this bubble may get; it is as narrow as its text allows below that."""
        self._max_width = width
        self.setMaximumWidth(width)
        self._fit_text()

    def _fit_text(self) -> None:
        # A word-wrapped QLabel asks for an arbitrary width; ask for the text's own width (up to the maximum).
        margins = self.layout().contentsMargins()
        room = self._max_width - margins.left() - margins.right()
        metrics = self.label.fontMetrics()
        natural = max((metrics.horizontalAdvance(line) for line in self.label.text().split("\n")), default=0) + 4
        self.label.setMinimumWidth(max(24, min(natural, room)))
        if self.clip is not None:
            self.clip.setMinimumWidth(min(260, room))

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self._text)

    # -- drawing ----------------------------------------------------------------------------------

    def _show_footer(self, shown: bool) -> None:
        self.meta.setVisible(shown and bool(self.meta.text()))
        self.copy_button.setVisible(shown and self.role == ASSISTANT and bool(self._text))

    def _tick(self) -> None:
        self._dots = (self._dots + 1) % 4
        self._render()

    def _render(self) -> None:
        if self._state == "waiting":
            self.label.setText("•" * (self._dots + 1))
            self._fit_text()
            return
        text = self._text
        if self._state == "streaming":
            text += " ▍"
        elif self._state == "stopped":
            text = (text + " …") if text else "(stopped)"
        elif self._state == "done" and self.role == ASSISTANT and not text:
            text = "(no answer)"
        self.label.setText(_wrappable(text))
        if self.role == USER:
            self.label.setVisible(bool(text))
        self._fit_text()
