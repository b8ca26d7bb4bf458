"""The application icon as a PNG, rendered from packaging/aura.svg with QtSvg (no display needed).

Qt writes the format the file name asks for: .png (the .deb's hicolor icon), .ico (the Windows
executables and installer), .icns (the macOS .app). Run alone: ``python packaging/app_icon.py OUT.ico``.
"""

from __future__ import annotations

import sys
from pathlib import Path

SVG = Path(__file__).resolve().parent / "aura.svg"
SIZE = 256


def platform_icon_name() -> str:
    """The icon file this OS's executables take."""
    return {"win32": "aura.ico", "darwin": "aura.icns"}.get(sys.platform, "aura.png")


def render_icon(out: Path, size: int = SIZE) -> Path:
    """Write ``out`` (``size`` x ``size``, in the format its suffix names) from the SVG; returns ``out``."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise RuntimeError(f"cannot read {SVG}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    renderer.render(painter, QRectF(0, 0, size, size))
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(out), out.suffix.lstrip(".").upper()):
        raise RuntimeError(f"cannot write {out}")
    return out


if __name__ == "__main__":
    print(render_icon(Path(sys.argv[1])))
