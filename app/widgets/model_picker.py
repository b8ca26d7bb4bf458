"""ModelPicker: a teacher or student model, given as a hub id or a local folder, with what a check found."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from .path_picker import PathPicker
from .theme import ERROR, OK

STATES = ("idle", "checking", "ok", "error")


class ModelPicker(PathPicker):
    """A hub id or folder, a Folder… button, and a line saying what the model is (or what is wrong)."""

    def __init__(self, placeholder: str, browse_title: str, parent: QWidget | None = None) -> None:
        super().__init__(placeholder, browse_title, parent)
        self.state = "idle"  # one of STATES
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setObjectName("PickerStatus")
        self.body.addWidget(self.status)

    def set_state(self, state: str, text: str) -> None:
        """Show what a check found: "checking" (in progress), "ok" (the summary), "error" (why not)."""
        if state not in STATES:
            raise ValueError(f"picker state must be one of {STATES}, got {state!r}")
        self.state = state
        color = {"ok": OK, "error": ERROR}.get(state)
        self.status.setStyleSheet(f"color: {color};" if color else "")
        self.status.setText(text)
