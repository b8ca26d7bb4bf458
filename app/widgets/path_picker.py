"""PathPicker: a line for a hub id, dataset name or local folder, with a Folder… button; the base of the pickers."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLineEdit, QPushButton, QVBoxLayout, QWidget


class PathPicker(QWidget):
    """The entry row; subclasses add below it (``self.body``) what a check of the entry found."""

    changed = Signal(str)  # the entry after the user edited or chose it (the tab checks it)

    def __init__(self, placeholder: str, browse_title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.browse_title = browse_title
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.edit.editingFinished.connect(self._edited)
        self.browse = QPushButton("Folder…")
        self.browse.clicked.connect(self._choose)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.edit, 1)
        row.addWidget(self.browse)
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(0, 0, 0, 0)
        self.body.setSpacing(2)
        self.body.addLayout(row)
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
