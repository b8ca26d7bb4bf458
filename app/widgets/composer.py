"""Composer: the typing row — attach an audio file, write a message, send; Stop while an answer streams."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLineEdit, QPushButton, QToolButton, QWidget

from .icons import icon


class Composer(QWidget):
    submitted = Signal(str)  # a typed message (stripped, non-empty)
    attach_requested = Signal()  # the user wants to pick an audio file
    stop_requested = Signal()  # stop the answer being generated (and any speech)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Composer")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        text_color = self.palette().text().color()
        self.attach = QToolButton()
        self.attach.setObjectName("AttachButton")
        self.attach.setIcon(icon("paperclip", text_color))
        self.attach.setIconSize(QSize(18, 18))
        self.attach.setToolTip("Open an audio file as your turn (wav, flac, ogg, mp3)")
        self.attach.clicked.connect(self.attach_requested)
        layout.addWidget(self.attach)
        self.input = QLineEdit()
        self.input.setObjectName("MessageInput")
        self.input.setPlaceholderText("Type a message, or just talk…")
        self.input.setClearButtonEnabled(True)
        self.input.returnPressed.connect(self._submit)
        layout.addWidget(self.input, 1)
        self.stop = QPushButton("Stop")
        self.stop.setObjectName("StopButton")
        self.stop.setIcon(icon("stop", "#ffffff"))
        self.stop.setToolTip("Stop the answer (Esc)")
        self.stop.clicked.connect(self.stop_requested)
        self.stop.hide()
        layout.addWidget(self.stop)
        self.send = QPushButton("Send")
        self.send.setObjectName("SendButton")
        self.send.setIcon(icon("send", "#ffffff"))
        self.send.setDefault(True)
        self.send.clicked.connect(self._submit)
        layout.addWidget(self.send)

    def set_generating(self, generating: bool) -> None:
        self.stop.setVisible(generating)

    def _submit(self) -> None:
        text = self.input.text().strip()
        if text:
            self.input.clear()
            self.submitted.emit(text)

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Escape and self.stop.isVisible():
            self.stop_requested.emit()
            return
        super().keyPressEvent(event)
