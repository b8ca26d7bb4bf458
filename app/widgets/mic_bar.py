"""MicBar: microphone on/off, input device, hands-free vs push-to-talk, the talk button and the level meter."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton,
                               QWidget)

from .icons import icon
from .level_meter import LevelMeter

DEFAULT_DEVICE_LABEL = "Default microphone"


class MicBar(QWidget):
    """Controls only: the window turns its signals into Listener calls and feeds back state and level."""

    enabled_toggled = Signal(bool)  # microphone on (True) / off
    mode_changed = Signal(str)  # "vad" (hands-free) or "ptt" (push-to-talk)
    device_changed = Signal(str)  # device name; "" = the system default
    ptt_pressed = Signal()  # the talk button went down
    ptt_released = Signal()  # ... and up

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MicBar")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)

        self.toggle = QToolButton()
        self.toggle.setObjectName("MicToggle")
        self.toggle.setCheckable(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setIconSize(QSize(16, 16))
        self.toggle.toggled.connect(self._on_toggle)
        layout.addWidget(self.toggle)

        self.device = QComboBox()
        self.device.setObjectName("DeviceCombo")
        self.device.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.device.setMinimumContentsLength(16)
        self.device.setToolTip("Input device")
        self.device.activated.connect(lambda _i: self.device_changed.emit(self.device.currentData() or ""))
        layout.addWidget(self.device)

        self.hands_free = QPushButton("Hands-free")
        self.push_to_talk = QPushButton("Push-to-talk")
        self.modes = QButtonGroup(self)
        for i, (button, mode) in enumerate(((self.hands_free, "vad"), (self.push_to_talk, "ptt"))):
            button.setCheckable(True)
            button.setObjectName("SegmentLeft" if i == 0 else "SegmentRight")
            button.setProperty("mode", mode)
            self.modes.addButton(button)
            layout.addWidget(button)
        layout.setSpacing(8)
        self.modes.buttonClicked.connect(lambda b: self.mode_changed.emit(b.property("mode")))

        self.talk = QPushButton("Hold to talk")
        self.talk.setObjectName("TalkButton")
        self.talk.setIcon(icon("mic", "#ffffff"))
        self.talk.pressed.connect(self.ptt_pressed)
        self.talk.released.connect(self.ptt_released)
        layout.addWidget(self.talk)

        self.meter = LevelMeter()
        layout.addWidget(self.meter, 1)
        self.state_label = QLabel()
        self.state_label.setObjectName("MicState")
        self.state_label.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Preferred)
        layout.addWidget(self.state_label)
        self.set_mode("vad")
        self._paint_toggle(False)

    # -- from the window --------------------------------------------------------------------------

    def set_devices(self, names: list[str], current: str) -> None:
        self.device.blockSignals(True)
        self.device.clear()
        self.device.addItem(DEFAULT_DEVICE_LABEL, "")
        for name in names:
            self.device.addItem(name, name)
        if current and current not in names:
            self.device.addItem(f"{current} (not found)", current)
        self.device.setCurrentIndex(max(0, self.device.findData(current)))
        self.device.blockSignals(False)

    def set_enabled_state(self, on: bool) -> None:
        self.toggle.blockSignals(True)
        self.toggle.setChecked(on)
        self.toggle.blockSignals(False)
        self._paint_toggle(on)

    def set_mode(self, mode: str, key_label: str = "Space") -> None:
        (self.push_to_talk if mode == "ptt" else self.hands_free).setChecked(True)
        self.talk.setVisible(mode == "ptt")
        self.talk.setText(f"Hold to talk ({key_label})")

    def set_status(self, text: str, level: str = "ok") -> None:
        """The words beside the meter; ``level`` ok | idle | warning | error picks their colour."""
        self.state_label.setText(text)
        self.state_label.setProperty("level", level)
        self.state_label.style().unpolish(self.state_label)
        self.state_label.style().polish(self.state_label)

    # -- internals --------------------------------------------------------------------------------

    def _on_toggle(self, on: bool) -> None:
        self._paint_toggle(on)
        self.enabled_toggled.emit(on)

    def _paint_toggle(self, on: bool) -> None:
        self.toggle.setText("Mic on" if on else "Mic off")
        self.toggle.setIcon(icon("mic" if on else "mic-off", self.palette().text().color()))
        self.toggle.setToolTip("Stop listening" if on else "Start listening")
        self.meter.set_active(on)
