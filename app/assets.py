"""Where the app finds its bundled files, in a checkout, an installed package or a PyInstaller build."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_BUNDLE_NAME = "default_bundle"


def assets_dir() -> Path:
    """The assets folder: $AURA_ASSETS, else the PyInstaller unpack dir (sys._MEIPASS), else the repo's assets/."""
    env = os.environ.get("AURA_ASSETS")
    if env:
        return Path(env)
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "assets"
    return Path(__file__).resolve().parent.parent / "assets"


def asset(*parts: str) -> Path:
    return assets_dir().joinpath(*parts)


def default_bundle() -> Path | None:
    """The demo bundle shipped with the app, or None while none ships."""
    path = asset(DEFAULT_BUNDLE_NAME)
    return path if (path / "aura_config.json").is_file() else None
