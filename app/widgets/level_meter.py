"""LevelMeter: the microphone's loudness as a horizontal bar with a falling peak mark."""

from __future__ import annotations

import time

from PySide6.QtCore import QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

FLOOR_DB = -60.0  # left end of the bar
DECAY_DB_PER_S = 30.0  # how fast the bar falls when the sound stops (a VU-like ballistic)
PEAK_HOLD_S = 1.0  # the peak mark stays this long before it falls


class LevelMeter(QWidget):
    """Call :meth:`set_level` with dBFS values; repaints at most ~30 times a second."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Microphone level")
        self._db = FLOOR_DB
        self._peak = FLOOR_DB
        self._peak_at = 0.0
        self._last = time.monotonic()
        self._active = True
        self._timer = QTimer(self)
        self._timer.setInterval(33)
        self._timer.timeout.connect(self._decay)

    @property
    def level_db(self) -> float:
        return self._db

    def sizeHint(self) -> QSize:
        return QSize(160, 8)

    def minimumSizeHint(self) -> QSize:
        return QSize(40, 8)

    def set_active(self, active: bool) -> None:
        """Greyed out while the microphone is off or muted."""
        self._active = active
        if not active:
            self._db = self._peak = FLOOR_DB
        self.update()

    def set_level(self, db: float) -> None:
        now = time.monotonic()
        db = max(FLOOR_DB, min(0.0, db))
        if db >= self._db:
            self._db = db
        if db >= self._peak or now - self._peak_at > PEAK_HOLD_S:
            self._peak, self._peak_at = db, now
        self._last = now
        if not self._timer.isActive():
            self._timer.start()
        self.update()

    def _decay(self) -> None:
        now = time.monotonic()
        self._db = max(FLOOR_DB, self._db - DECAY_DB_PER_S * (now - self._last))
        self._last = now
        if now - self._peak_at > PEAK_HOLD_S:
            self._peak = max(self._db, self._peak - DECAY_DB_PER_S * 0.033)
        if self._db <= FLOOR_DB and self._peak <= FLOOR_DB:
            self._timer.stop()
        self.update()

    @staticmethod
    def _fraction(db: float) -> float:
        return (db - FLOOR_DB) / -FLOOR_DB

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        radius = r.height() / 2
        track = self.palette().color(QPalette.ColorRole.Mid)
        track.setAlpha(70)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(track)
        p.drawRoundedRect(r, radius, radius)
        if not self._active:
            return
        frac = self._fraction(self._db)
        if frac > 0:
            color = QColor("#2eb872") if self._db < -12 else QColor("#f0b429") if self._db < -3 else QColor("#e5484d")
            bar = QRectF(r.left(), r.top(), max(r.height(), r.width() * frac), r.height())
            p.setBrush(color)
            p.drawRoundedRect(bar, radius, radius)
        peak = self._fraction(self._peak)
        if peak > 0.02:
            x = r.left() + r.width() * peak
            mark = self.palette().color(QPalette.ColorRole.Text)
            mark.setAlpha(160)
            p.setBrush(mark)
            p.drawRect(QRectF(x - 1.5, r.top(), 3, r.height()))
