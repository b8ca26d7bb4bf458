"""ChatView: the scrolling conversation; user bubbles on the right, the assistant's on the left."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

from .message_bubble import ASSISTANT, USER, MessageBubble

BUBBLE_WIDTH = 0.78  # a bubble is at most this share of the view's width
EMPTY_TEXT = ("Say something, type a message below,\nor drop an audio file (wav, flac, ogg, mp3) here.")


class ChatView(QScrollArea):
    """Holds MessageBubbles; follows the newest one while the user is at the bottom."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ChatView")
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        inner = QWidget()
        inner.setObjectName("ChatInner")
        self._layout = QVBoxLayout(inner)
        self._layout.setContentsMargins(18, 16, 18, 16)
        self._layout.setSpacing(10)
        self.empty = QLabel(EMPTY_TEXT)
        self.empty.setObjectName("EmptyHint")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._layout.addStretch(1)
        self._layout.addWidget(self.empty)
        self._layout.addStretch(1)
        self.setWidget(inner)
        self._bubbles: list[MessageBubble] = []
        self._follow = True
        self.verticalScrollBar().rangeChanged.connect(self._on_range)
        self.verticalScrollBar().valueChanged.connect(self._on_scroll)

    @property
    def bubbles(self) -> list[MessageBubble]:
        return list(self._bubbles)

    def add(self, bubble: MessageBubble) -> MessageBubble:
        self.empty.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        if bubble.role == USER:
            row.addStretch(1)
        row.addWidget(bubble)
        if bubble.role == ASSISTANT:
            row.addStretch(1)
        holder = QWidget()
        holder.setLayout(row)
        self._layout.insertWidget(self._layout.count() - 1, holder)  # before the bottom stretch
        self._bubbles.append(bubble)
        self._fit(bubble)
        self._follow = True
        QTimer.singleShot(0, self.scroll_to_bottom)
        return bubble

    def clear(self) -> None:
        for bubble in self._bubbles:
            holder = bubble.parentWidget()
            self._layout.removeWidget(holder)
            holder.deleteLater()
        self._bubbles.clear()
        self.empty.show()

    def transcript(self) -> str:
        """The conversation as plain text, for copying."""
        lines = []
        for b in self._bubbles:
            who = "You" if b.role == USER else "AuRA"
            body = b.text
            if b.clip is not None:
                body = f"[{b.clip.caption.text()}]" + (f" {body}" if body else "")
            lines.append(f"{who}: {body}")
        return "\n\n".join(lines)

    def scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())

    # -- layout -----------------------------------------------------------------------------------

    def _fit(self, bubble: MessageBubble) -> None:
        bubble.set_max_width(max(200, int(self.viewport().width() * BUBBLE_WIDTH)))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        for bubble in self._bubbles:
            self._fit(bubble)

    def _on_scroll(self, value: int) -> None:
        self._follow = value >= self.verticalScrollBar().maximum() - 24

    def _on_range(self, _min: int, _max: int) -> None:
        if self._follow:
            self.scroll_to_bottom()
