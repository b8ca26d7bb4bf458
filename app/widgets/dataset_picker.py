"""DatasetPicker: the training clips (an audio folder or a `datasets` name) and the trainer's data report on them."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QListWidget, QWidget

from app.train_probes import DataPreview

from .path_picker import PathPicker
from .theme import ERROR, OK

MAX_SKIPPED_SHOWN = 200


class DatasetPicker(PathPicker):
    """A folder or dataset name, a Folder… button, the preview, and the clips that cannot be used."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("a folder of audio clips (+ .txt / metadata.csv / metadata.jsonl), or a dataset name",
                         "Choose the folder of training clips", parent)
        self.state = "idle"  # idle | checking | ok | error
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.skipped = QListWidget()
        self.skipped.setMaximumHeight(90)
        self.skipped.hide()
        self.body.addWidget(self.summary)
        self.body.addWidget(self.skipped)

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
