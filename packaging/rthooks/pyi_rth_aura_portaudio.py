"""PyInstaller run-time hook: sounddevice opens the PortAudio the app carries, on Linux too.

sounddevice asks ``ctypes.util.find_library("portaudio")``, which on Linux reads the system's
ldconfig cache: the bundled copy would be ignored, and a machine without libportaudio2 could not
record. Here that one question is answered with the copy in the app folder (collected by the
sounddevice hook); every other name goes to the original function.
"""


def _use_bundled_portaudio():
    import ctypes.util
    import glob
    import os
    import sys

    found = sorted(glob.glob(os.path.join(sys._MEIPASS, "libportaudio.so*")))
    if not sys.platform.startswith("linux") or not found:
        return
    original = ctypes.util.find_library

    def find_library(name):
        return found[0] if name == "portaudio" else original(name)

    ctypes.util.find_library = find_library


_use_bundled_portaudio()
