"""DatasetPicker: the training clips (an audio folder or a `datasets` name) and the trainer's data report on them."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QFileDialog, QHBoxLayout, QLabel, QLineEdit, QListWidget, QPushButton, QVBoxLayout,
                               QWidget)

from app.train_probes import DataPreview

from .theme import ERROR, OK

MAX_SKIPPED_SHOWN = 200


class DatasetPicker(QWidget):
    """A line for the folder or dataset name, a Folder… button, the preview, and the clips that cannot be used."""

    changed = Signal(str)  # the data set after the user edited or chose it (the tab previews it)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = "idle"  # idle | checking | ok | error
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("a folder of audio clips (+ .txt / metadata.csv / metadata.jsonl), or a dataset name")
        self.edit.editingFinished.connect(self._edited)
        self.browse = QPushButton("Folder…")
        self.browse.clicked.connect(self._choose)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.skipped = QListWidget()
        self.skipped.setMaximumHeight(90)
        self.skipped.hide()
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(row)
        layout.addWidget(self.summary)
        layout.addWidget(self.skipped)
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
        if self.text() != self._last:
            self._last = self.text()
            self.changed.emit(self._last)

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose the folder of training clips", str(Path.home()))
        if folder:
            self.set_text(folder)

    def set_checking(self, text: str = "reading every clip…") -> None:
        self.state = "checking"
        self._show(text, None)
        self.skipped.clear()
        self.skipped.hide()

    def set_note(self, text: str) -> None:
        self.state = "idle"
        self._show(text, None)
        self.skipped.hide()

    def set_error(self, message: str) -> None:
        self.state = "error"
        self._show(message, ERROR)
        self.skipped.hide()

    def set_preview(self, preview: DataPreview) -> None:
        """The data report: clips, total length, transcripts, and each file that cannot be used with the reason."""
        self.state = "ok" if preview.usable else "error"
        self._show(preview.describe(), OK if preview.usable else ERROR)
        self.skipped.clear()
        for s in preview.skipped[:MAX_SKIPPED_SHOWN]:
            self.skipped.addItem(f"{s['item']}: {s['reason']}")
        if len(preview.skipped) > MAX_SKIPPED_SHOWN:
            self.skipped.addItem(f"… and {len(preview.skipped) - MAX_SKIPPED_SHOWN} more")
        self.skipped.setVisible(bool(preview.skipped))

    def _show(self, text: str, color: str | None) -> None:
        self.summary.setStyleSheet(f"color: {color};" if color else "")
        self.summary.setText(text)
