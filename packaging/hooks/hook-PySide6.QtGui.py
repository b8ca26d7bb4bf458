"""Replaces PyInstaller's hook for PySide6.QtGui (user hooks win): the same collection, less the Qt plugins a
desktop app does not load, so that neither they nor the system libraries only they link are collected."""

from pathlib import Path

from PyInstaller.utils.hooks.qt import add_qt6_dependencies

# plugin file name prefix -> why it stays out
UNUSED_PLUGINS = {
    "libqgtk3": "GTK 3 platform theme: would load the system's GTK against bundled glib/cairo/pango (crashes on "
                "version skew); Qt's own style is used",
    "libqeglfs": "full-screen EGL backend for devices without a window system",
    "libqlinuxfb": "framebuffer backend for devices without a window system",
    "libqvnc": "VNC server backend",
    "libqminimal": "test backends (offscreen is kept for --self-test and CI)",
    "libqvkkhrdisplay": "Vulkan display backend for devices without a window system",
    "libqevdev": "raw input devices, for eglfs/linuxfb only",
    "libqtuiotouchplugin": "TUIO touch input, for eglfs/linuxfb only",
}
UNUSED_PLUGIN_DIRS = {"egldeviceintegrations": "only eglfs loads them"}


def used(src: str, dest: str) -> bool:
    name = Path(src).name
    return not (name.startswith(tuple(UNUSED_PLUGINS)) or Path(dest).name in UNUSED_PLUGIN_DIRS)


hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [(src, dest) for src, dest in binaries if used(src, dest)]
