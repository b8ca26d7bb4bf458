"""Banner: a dismissable message strip above the conversation (no microphone, model notices, errors)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QWidget

from .icons import icon

LEVELS = ("info", "warning", "error")
_COLORS = {"info": "#3e82f7", "warning": "#e5a50a", "error": "#e5484d"}  # accent per level; the fill is a tint of it


class Banner(QFrame):
    """One message with a level and a close button."""

    closed = Signal()  # the user dismissed it

    def __init__(self, key: str, level: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        if level not in LEVELS:
            raise ValueError(f"banner level must be one of {LEVELS}, got {level!r}")
        self.key = key  # what it is about; a newer banner with the same key replaces it
        self.level = level
        self.setObjectName("Banner")
        accent = _COLORS[level]
        r, g, b = (int(accent[i:i + 2], 16) for i in (1, 3, 5))
        self.setStyleSheet(
            f"#Banner {{ background: rgba({r}, {g}, {b}, 0.13); border: 1px solid rgba({r}, {g}, {b}, 0.55);"
            " border-radius: 8px; }"
            "#Banner QLabel { background: transparent; border: none; }")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        layout.setSpacing(8)
        mark = QLabel()
        mark.setPixmap(icon("alert" if level != "info" else "check", accent).pixmap(18, 18))
        layout.addWidget(mark, 0, Qt.AlignmentFlag.AlignTop)
        self.label = QLabel(text)
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.label, 1)
        close = QToolButton()
        close.setIcon(icon("x", self.palette().text().color()))
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self._close)
        layout.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)

    @property
    def text(self) -> str:
        return self.label.text()

    def _close(self) -> None:
        self.closed.emit()
        self.hide()
        self.deleteLater()
