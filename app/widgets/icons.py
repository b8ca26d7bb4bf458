"""Line icons (Feather, MIT; assets/icons/), tinted to a colour so they read on light and dark themes."""

from __future__ import annotations

import functools

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap
from PySide6.QtSvg import QSvgRenderer

from app.assets import asset

RENDER_PX = 48  # rendered once at this size; Qt scales down for buttons


@functools.cache
def _svg_text(name: str) -> str:
    path = asset("icons", f"{name}.svg")
    try:
        return path.read_text()
    except OSError:  # a missing asset must not take the window down: buttons keep their text
        return ""


def icon(name: str, color: QColor | str) -> QIcon:
    """The icon ``name`` (file name without .svg) drawn in ``color``; an empty icon if it is missing."""
    text = _svg_text(name)
    if not text:
        return QIcon()
    hex_color = QColor(color).name()
    renderer = QSvgRenderer(QByteArray(text.replace("currentColor", hex_color).encode()))
    image = QImage(RENDER_PX, RENDER_PX, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter, QRectF(0, 0, RENDER_PX, RENDER_PX))
    painter.end()
    return QIcon(QPixmap.fromImage(image))
