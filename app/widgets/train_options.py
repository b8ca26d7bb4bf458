"""TrainOptions: the preset (Quick demo / Standard / Custom) and, for Custom, the trainer's own settings.

The Custom form is built from :func:`app.train_presets.trainer_fields` (the trainer's config
dataclasses: defaults, types, and each field's comment as its tooltip), which the tab reads in
the background and hands to :meth:`TrainOptions.set_fields`; until then the form says so.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QRadioButton, QSpinBox, QVBoxLayout, QWidget)

from app.train_presets import CUSTOM, PRESET_HELP, PRESETS, QUICK, OptionField

INT_MAX = 2_000_000_000


class TrainOptions(QWidget):
    """Preset buttons, what the preset does, and the Custom form (shown for Custom only)."""

    preset_changed = Signal(str)  # QUICK | STANDARD | CUSTOM

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.editors: dict[str, QWidget] = {}  # "section.field" -> its editor (tests set values through them)
        self.fields: dict[str, OptionField] = {}
        self.buttons: dict[str, QRadioButton] = {}
        self.group = QButtonGroup(self)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for key, label in PRESETS.items():
            button = QRadioButton(label)
            button.toggled.connect(lambda on, key=key: on and self._chosen(key))
            self.group.addButton(button)
            self.buttons[key] = button
            row.addWidget(button)
        row.addStretch(1)
        self.help = QLabel("")
        self.help.setWordWrap(True)
        self.help.setObjectName("PresetHelp")
        self.custom = QGroupBox("Custom settings")
        self.form = QFormLayout(self.custom)
        self.loading = QLabel("reading the trainer's settings…")
        self.form.addRow(self.loading)
        self.extra = QLineEdit()
        self.extra.setPlaceholderText("more trainer flags, e.g. --train.seed 3 --embedding.stack 2")
        self.extra.setToolTip("Any other `aura train` setting as --section.field VALUE (see docs/training.md)")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.help)
        layout.addWidget(self.custom)
        self.buttons[QUICK].setChecked(True)

    # -- presets --------------------------------------------------------------------------------

    def preset(self) -> str:
        return next(key for key, button in self.buttons.items() if button.isChecked())

    def set_preset(self, key: str) -> None:
        self.buttons[key].setChecked(True)

    def set_quick_available(self, available: bool, reason: str = "") -> None:
        self.buttons[QUICK].setEnabled(available)
        self.buttons[QUICK].setToolTip("" if available else reason)

    def _chosen(self, key: str) -> None:
        self.help.setText(PRESET_HELP[key])
        self.custom.setVisible(key == CUSTOM)
        self.preset_changed.emit(key)

    # -- the Custom form ------------------------------------------------------------------------

    def set_fields(self, fields: list[OptionField]) -> None:
        """Build the Custom form: one editor per field, starting at its initial value, the trainer's help as tooltip."""
        if self.loading is not None:
            self.form.removeRow(self.loading)
            self.loading = None
        for f in fields:
            editor = self._editor(f)
            editor.setToolTip(f.help)
            label = QLabel(f.label)
            label.setToolTip(f"--{f.key} (trainer default: {f.default or 'none'})\n{f.help}")
            self.form.addRow(label, editor)
            self.editors[f.key] = editor
            self.fields[f.key] = f
        self.form.addRow("Extra flags", self.extra)

    @staticmethod
    def _editor(f: OptionField) -> QWidget:
        if f.kind == "bool":
            box = QCheckBox()
            box.setChecked(f.initial == "true")
            return box
        if f.kind == "choice":
            combo = QComboBox()
            combo.addItems(list(f.choices))
            combo.setCurrentText(f.initial)
            return combo
        if f.kind == "int":
            spin = QSpinBox()
            spin.setRange(0, INT_MAX)
            spin.setValue(int(f.initial or 0))
            return spin
        edit = QLineEdit(f.initial)
        edit.setPlaceholderText("the trainer's default" if not f.default else f.default)
        return edit

    def set_value(self, key: str, text: str) -> None:
        editor = self.editors[key]
        if isinstance(editor, QCheckBox):
            editor.setChecked(text.lower() == "true")
        elif isinstance(editor, QComboBox):
            editor.setCurrentText(text)
        elif isinstance(editor, QSpinBox):
            editor.setValue(int(text))
        else:
            editor.setText(text)  # type: ignore[attr-defined]

    def custom_values(self) -> dict[str, str]:
        """{"section.field": flag text} of every Custom field ("" = the trainer's default)."""
        out = {}
        for key, editor in self.editors.items():
            if isinstance(editor, QCheckBox):
                out[key] = "true" if editor.isChecked() else "false"
            elif isinstance(editor, QComboBox):
                out[key] = editor.currentText()
            elif isinstance(editor, QSpinBox):
                out[key] = str(editor.value())
            else:
                out[key] = editor.text().strip()  # type: ignore[attr-defined]
        return out
