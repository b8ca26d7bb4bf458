"""AudioClip: a spoken or dropped turn shown as a play button, a waveform thumbnail and its duration."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout, QWidget

from .icons import icon

BARS = 56  # columns of the waveform thumbnail


def envelope(samples: np.ndarray, bars: int = BARS) -> np.ndarray:
    """Peak magnitude per column, scaled so the loudest column is 1 (a quiet clip still shows its shape)."""
    x = np.abs(np.asarray(samples, dtype=np.float32).reshape(-1))
    if len(x) == 0:
        return np.zeros(bars, dtype=np.float32)
    edges = np.linspace(0, len(x), bars + 1).astype(int)
    peaks = np.array([x[a:b].max() if b > a else 0.0 for a, b in zip(edges[:-1], edges[1:])], dtype=np.float32)
    top = float(peaks.max())
    return peaks / top if top > 0 else peaks


class _Waveform(QWidget):
    """The thumbnail itself: part of AudioClip, private to this file."""

    def __init__(self, env: np.ndarray, color: QColor, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.env, self.color = env, color
        self.setMinimumSize(QSize(120, 28))
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(self.color)
        n = len(self.env)
        step = self.width() / max(1, n)
        mid = self.height() / 2
        for i, v in enumerate(self.env):
            h = max(2.0, float(v) * (self.height() - 2))
            p.drawRoundedRect(QRectF(i * step + step * 0.2, mid - h / 2, max(1.5, step * 0.6), h), 1, 1)


class AudioClip(QWidget):
    """Play button + waveform + "2.4 s · microphone"."""

    play_requested = Signal()  # clicked: play it, or stop it while it plays

    def __init__(self, samples: np.ndarray, sample_rate: int, source: str, color: QColor,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.samples = samples  # float32 mono, kept for playing it back
        self.sample_rate = sample_rate  # Hz
        self.duration_s = len(samples) / sample_rate
        self._color = color
        self._playing = False
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        self.play_button = QToolButton()
        self.play_button.setObjectName("ClipPlay")
        self.play_button.setIconSize(QSize(14, 14))
        self.play_button.setFixedSize(QSize(32, 32))
        self.play_button.clicked.connect(self.play_requested)
        layout.addWidget(self.play_button, 0, Qt.AlignmentFlag.AlignVCenter)
        column = QVBoxLayout()
        column.setSpacing(2)
        column.addWidget(_Waveform(envelope(samples), color))
        self.caption = QLabel(f"{self.duration_s:.1f} s · {source}")
        self.caption.setObjectName("ClipCaption")
        column.addWidget(self.caption)
        layout.addLayout(column, 1)
        self.set_playing(False)

    @property
    def playing(self) -> bool:
        return self._playing

    def set_playing(self, playing: bool) -> None:
        self._playing = playing
        self.play_button.setIcon(icon("stop" if playing else "play", self._color))
        self.play_button.setToolTip("Stop" if playing else "Play this recording")
