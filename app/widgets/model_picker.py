"""ModelPicker: a teacher or student model, given as a hub id or a local folder, with what a check found."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from .theme import ERROR, OK

STATES = ("idle", "checking", "ok", "error")


class ModelPicker(QWidget):
    """A line for the hub id or folder, a Folder… button, and a line saying what the model is (or what is wrong)."""

    changed = Signal(str)  # the model reference after the user edited or chose it (the tab checks it)

    def __init__(self, placeholder: str, browse_title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.browse_title = browse_title
        self.state = "idle"  # one of STATES
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(self._edited)
        self.browse = QPushButton("Folder…")
        self.browse.clicked.connect(self._choose)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("PickerStatus")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self._last = ""

    def text(self) -> str:
        return self.edit.text().strip()

    def set_text(self, text: str, check: bool = True) -> None:
        self.edit.setText(text)
        if check:
            self._edited()
        else:
            self._last = self.text()

    def _edited(self) -> None:
        text = self.text()
        if text != self._last:
            self._last = text
            self.changed.emit(text)

    def _choose(self) -> None:
        start = self.text() if Path(self.text()).is_dir() else str(Path.home())
        folder = QFileDialog.getExistingDirectory(self, self.browse_title, start)
        if folder:
            self.set_text(folder)

    def set_state(self, state: str, text: str) -> None:
        """Show what a check found: "checking" (in progress), "ok" (the summary), "error" (why not)."""
        if state not in STATES:
            raise ValueError(f"picker state must be one of {STATES}, got {state!r}")
        self.state = state
        color = {"ok": OK, "error": ERROR}.get(state)
        self.status.setStyleSheet(f"color: {color};" if color else "")
        self.status.setText(text)
