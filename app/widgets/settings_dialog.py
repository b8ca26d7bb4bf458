"""SettingsDialog: edits a Settings value (microphone, model, answers, speech); the window persists it."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDialog, QDialogButtonBox, QDoubleSpinBox, QFileDialog,
                               QFormLayout, QHBoxLayout, QKeySequenceEdit, QLabel, QLineEdit, QPlainTextEdit,
                               QPushButton, QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from aura_model.config import QUANTIZATION_MODES
from aura_model.errors import AuraError
from app.settings import MIN_PRE_ROLL_MS, AudioSettings, ChatSettings, ModelSettings, Settings, SpeechSettings

DEFAULT_DEVICE_LABEL = "System default"


def _spin(lo: int, hi: int, value: int, step: int = 1, suffix: str = "") -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setValue(value)
    box.setSuffix(suffix)
    return box


class SettingsDialog(QDialog):
    """Shows ``settings``; after ``accept()``, :meth:`values` is the edited (validated) Settings."""

    def __init__(self, settings: Settings, devices: list[str], voices: list, tts_available: bool,
                 default_bundle: str | None, cuda_devices: int = 0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("SettingsDialog")
        self.setMinimumWidth(560)
        self._devices, self._voices = devices, voices
        self._tts_available, self._default_bundle, self._cuda = tts_available, default_bundle, cuda_devices
        self._result = settings
        layout = QVBoxLayout(self)
        self.tabs = QTabWidget()
        layout.addWidget(self.tabs)
        self.tabs.addTab(self._audio_page(), "Microphone")
        self.tabs.addTab(self._model_page(), "Model")
        self.tabs.addTab(self._chat_page(), "Answers")
        self.tabs.addTab(self._speech_page(), "Speech")
        self.error = QLabel()
        self.error.setObjectName("SettingsError")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #e5484d;")
        self.error.hide()
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
                                   | QDialogButtonBox.StandardButton.RestoreDefaults)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(
            lambda: self.show_settings(Settings()))
        layout.addWidget(buttons)
        self.show_settings(settings)

    # -- pages ------------------------------------------------------------------------------------

    def _audio_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.device = QComboBox()
        form.addRow("Input device", self.device)
        self.mode = QComboBox()
        self.mode.addItem("Hands-free (voice activity detection)", "vad")
        self.mode.addItem("Push-to-talk", "ptt")
        form.addRow("Listening", self.mode)
        self.ptt_key = QKeySequenceEdit()
        self.ptt_key.setMaximumSequenceLength(1)
        form.addRow("Push-to-talk key", self.ptt_key)
        self.aggressiveness = _spin(0, 3, 2)
        self.aggressiveness.setToolTip("webrtcvad mode: 0 lets most sound through as speech, 3 is strictest")
        form.addRow("VAD aggressiveness", self.aggressiveness)
        self.pre_roll = _spin(MIN_PRE_ROLL_MS, 2000, 450, 30, " ms")
        self.pre_roll.setToolTip("Audio kept from before speech was detected, so first syllables are not cut")
        form.addRow("Pre-roll", self.pre_roll)
        self.hangover = _spin(90, 3000, 600, 30, " ms")
        self.hangover.setToolTip("Silence that ends an utterance; also the delay before the model starts")
        form.addRow("Hang-over", self.hangover)
        self.min_speech = _spin(0, 5000, 250, 50, " ms")
        form.addRow("Shortest utterance", self.min_speech)
        self.max_speech = _spin(1000, 30000, 30000, 500, " ms")
        form.addRow("Longest utterance", self.max_speech)
        return page

    def _model_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.bundle = QLineEdit()
        self.bundle.setPlaceholderText("empty: the bundled demo model")
        self.bundle.setToolTip(f"The demo model: {self._default_bundle or 'none ships with this build yet'}")
        form.addRow("AuRA bundle", self._with_browse(self.bundle, "Choose an AuRA bundle folder"))
        self.base = QLineEdit()
        self.base.setPlaceholderText("empty: the base LLM the bundle names or carries")
        form.addRow("Base LLM override", self._with_browse(self.base, "Choose a base model folder"))
        self.compute = QComboBox()
        self.compute.setEditable(True)
        for option in ["auto", "cpu", "cuda"] + [f"cuda:{i}" for i in range(self._cuda)]:
            self.compute.addItem(option)
        self.compute.setToolTip("auto: the first CUDA GPU when there is one, else the CPU")
        form.addRow("Compute device", self.compute)
        self.quantization = QComboBox()
        for option in QUANTIZATION_MODES:
            self.quantization.addItem(option)
        self.quantization.setToolTip("auto: 4-bit NF4 on CUDA, none on the CPU")
        form.addRow("Quantization", self.quantization)
        return page

    def _chat_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("empty: the bundle's own system prompt")
        self.system_prompt.setFixedHeight(90)
        form.addRow("System prompt", self.system_prompt)
        self.max_new_tokens = _spin(1, 4096, 128)
        form.addRow("Max new tokens", self.max_new_tokens)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setToolTip("0 = greedy: the same question always gets the same answer")
        form.addRow("Temperature", self.temperature)
        self.context_turns = _spin(0, 50, 0)
        self.context_turns.setToolTip("Earlier typed exchanges sent with each request (spoken turns have no "
                                      "transcript and are not sent); 0 = each request stands alone")
        form.addRow("Context turns", self.context_turns)
        return page

    def _speech_page(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.tts_enabled = QCheckBox("Read answers aloud")
        form.addRow(self.tts_enabled)
        if not self._tts_available:
            self.tts_enabled.setEnabled(False)
            note = QLabel("Spoken replies need espeak-ng (Debian/Ubuntu: apt install espeak-ng).")
            note.setWordWrap(True)
            form.addRow(note)
        self.voice = QComboBox()
        self.voice.addItem("Default voice", "")
        for v in self._voices:
            self.voice.addItem(v.label, v.id)
        form.addRow("Voice", self.voice)
        self.rate = _spin(80, 450, 175, 5, " words/min")
        form.addRow("Rate", self.rate)
        self.barge_in = QCheckBox("Barge-in: keep listening while the assistant speaks")
        self.barge_in.setToolTip("Off: the microphone is muted while an answer is read aloud, so the assistant "
                                 "does not hear itself. On: speaking interrupts it (use headphones).")
        form.addRow(self.barge_in)
        return page

    def _with_browse(self, edit: QLineEdit, title: str) -> QWidget:
        row = QWidget()
        h = QHBoxLayout(row)
        h.setContentsMargins(0, 0, 0, 0)
        h.addWidget(edit, 1)
        button = QPushButton("Browse…")
        button.clicked.connect(lambda: self._browse(edit, title))
        h.addWidget(button)
        return row

    def _browse(self, edit: QLineEdit, title: str) -> None:
        folder = QFileDialog.getExistingDirectory(self, title, edit.text())
        if folder:
            edit.setText(folder)

    # -- values -----------------------------------------------------------------------------------

    def show_settings(self, s: Settings) -> None:
        self.device.clear()
        self.device.addItem(DEFAULT_DEVICE_LABEL, "")
        for name in self._devices:
            self.device.addItem(name, name)
        if s.audio.input_device and s.audio.input_device not in self._devices:
            self.device.addItem(f"{s.audio.input_device} (not found)", s.audio.input_device)
        self.device.setCurrentIndex(max(0, self.device.findData(s.audio.input_device)))
        self.mode.setCurrentIndex(max(0, self.mode.findData(s.audio.mode)))
        self.ptt_key.setKeySequence(QKeySequence(s.audio.ptt_key))
        self.aggressiveness.setValue(s.audio.aggressiveness)
        self.pre_roll.setValue(s.audio.pre_roll_ms)
        self.hangover.setValue(s.audio.hangover_ms)
        self.min_speech.setValue(s.audio.min_speech_ms)
        self.max_speech.setValue(s.audio.max_speech_ms)
        self.bundle.setText(s.model.bundle)
        self.base.setText(s.model.base)
        self.compute.setCurrentText(s.model.device)
        self.quantization.setCurrentText(s.model.quantization)
        self.system_prompt.setPlainText(s.chat.system_prompt)
        self.max_new_tokens.setValue(s.chat.max_new_tokens)
        self.temperature.setValue(s.chat.temperature)
        self.context_turns.setValue(s.chat.context_turns)
        self.tts_enabled.setChecked(s.speech.enabled and self._tts_available)
        voice = self.voice.findData(s.speech.voice)
        if voice < 0:
            self.voice.addItem(s.speech.voice, s.speech.voice)
            voice = self.voice.count() - 1
        self.voice.setCurrentIndex(voice)
        self.rate.setValue(s.speech.rate)
        self.barge_in.setChecked(s.audio.barge_in)

    def values(self) -> Settings:
        """The settings as edited; raises AuraError naming a bad value."""
        key = self.ptt_key.keySequence().toString(QKeySequence.SequenceFormat.PortableText) or "Space"
        return Settings(
            audio=AudioSettings(
                input_device=self.device.currentData() or "", enabled=self._result.audio.enabled,
                mode=self.mode.currentData(), ptt_key=key, aggressiveness=self.aggressiveness.value(),
                pre_roll_ms=self.pre_roll.value(), hangover_ms=self.hangover.value(),
                min_speech_ms=self.min_speech.value(), max_speech_ms=self.max_speech.value(),
                barge_in=self.barge_in.isChecked()),
            model=ModelSettings(bundle=self.bundle.text().strip(), base=self.base.text().strip(),
                                device=self.compute.currentText().strip(),
                                quantization=self.quantization.currentText()),
            chat=ChatSettings(system_prompt=self.system_prompt.toPlainText().strip(),
                              max_new_tokens=self.max_new_tokens.value(), temperature=self.temperature.value(),
                              context_turns=self.context_turns.value()),
            speech=SpeechSettings(enabled=self.tts_enabled.isChecked(), voice=self.voice.currentData() or "",
                                  rate=self.rate.value()),
        )

    @property
    def result_settings(self) -> Settings:
        return self._result

    def accept(self) -> None:
        try:
            self._result = self.values()
        except AuraError as exc:
            self.error.setText(str(exc))
            self.error.show()
            return
        super().accept()
