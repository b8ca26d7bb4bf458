"""Where the app finds its bundled files, in a checkout, an installed package or a PyInstaller build;
and what a frozen, windowed build must set right before anything prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_BUNDLE_NAME = "default_bundle"
_console = {"attached": True}  # False once ensure_std_streams() found no console (a windowed build)


def is_frozen() -> bool:
    """True in a PyInstaller build."""
    return bool(getattr(sys, "frozen", False))


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


def ensure_std_streams() -> None:
    """Give sys.stdout/sys.stderr a sink where there is no console.

    A windowed build (PyInstaller ``--windowed`` on Windows and macOS, ``pythonw``) starts with
    both set to None, and print(), logging's stream handler, tqdm and library warnings then fail.
    They go to the null device; the GUI's log file keeps what matters.
    """
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))
            _console["attached"] = False


def console_attached() -> bool:
    """False when ensure_std_streams() had to replace a missing stream (nothing printed is seen)."""
    return _console["attached"]
