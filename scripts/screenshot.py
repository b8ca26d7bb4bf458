"""Take docs/screenshot.png: the real Chat window under Xvfb, mid-conversation.

    python scripts/screenshot.py [--out docs/screenshot.png] [--dark] [--bundle DIR]

Starts a private Xvfb when there is no X display, runs the window with Qt's xcb
platform, and plays a conversation of three turns: a spoken request
(an espeak-ng wav fed through the real VAD pipeline in place of a microphone,
since Xvfb has no sound card), a dropped audio file and a typed question. It waits
for each answer, then grabs the window. Settings live in a temporary ini file, so
your own settings are not touched.

The model is the shipped demo bundle; while none ships, a tiny *untrained* model is
built (as scripts/smoke.py does) and its answers are noise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

SIZE = (1100, 760)
TURNS = ("turn on the kitchen light", "what is the capital of france", "set a timer for seven minutes")


def _start_xvfb() -> subprocess.Popen | None:
    """A private Xvfb when there is no display (started directly: xvfb-run also needs xauth)."""
    if os.environ.get("DISPLAY"):
        return None
    if shutil.which("Xvfb") is None:
        sys.exit("screenshot: no X display and no Xvfb (apt install xvfb)")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0",
                               f"{SIZE[0] + 100}x{SIZE[1] + 100}x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()  # Xvfb writes its display number once it accepts clients
    if not number:
        server.kill()
        sys.exit("screenshot: Xvfb did not start")
    os.environ["DISPLAY"] = f":{number}"
    return server


def _speak(text: str, path: Path) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text], check=True)
    return path


class WavMicrophone:
    """Plays a wav (after a short silence) in 30 ms chunks at real time, then silence: a stand-in microphone."""

    def __init__(self, wav: Path):
        import numpy as np
        import soundfile as sf
        import soxr

        audio, rate = sf.read(str(wav), dtype="float32")
        quiet = np.zeros(8000, dtype=np.float32)
        self.signal = np.concatenate([quiet, soxr.resample(audio, rate, 16000).astype(np.float32)])
        self.pos = 0

    def start(self):
        pass

    def stop(self):
        pass

    def read(self, timeout=None):
        import numpy as np

        time.sleep(0.03)
        chunk = self.signal[self.pos:self.pos + 480]
        self.pos += 480
        if len(chunk) < 480:  # room tone after the request, so the level meter keeps moving a little
            return (np.random.default_rng(self.pos).standard_normal(480) * 0.002).astype(np.float32)
        return chunk


def wait_until(condition, timeout_s: float, what: str, prog: str = "screenshot") -> None:
    """Run the Qt event loop until ``condition()`` holds; SystemExit naming ``what`` after ``timeout_s``."""
    from PySide6.QtCore import QCoreApplication, QEventLoop

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{prog}: timed out waiting for {what}")
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        time.sleep(0.01)


def _go_dark(app) -> None:
    """Ask the platform for its dark scheme; a bare X server has none, so then set Fusion's dark palette."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QPalette

    app.styleHints().setColorScheme(Qt.ColorScheme.Dark)
    if app.styleHints().colorScheme() == Qt.ColorScheme.Dark and app.palette().color(QPalette.ColorRole.Window).lightness() < 128:
        return
    app.setStyle("Fusion")
    p = QPalette()
    role = QPalette.ColorRole
    for r, c in ((role.Window, "#202124"), (role.WindowText, "#e8eaed"), (role.Base, "#2a2b2e"),
                 (role.AlternateBase, "#303134"), (role.Text, "#e8eaed"), (role.Button, "#303134"),
                 (role.ButtonText, "#e8eaed"), (role.Highlight, "#3d7be0"), (role.HighlightedText, "#ffffff"),
                 (role.ToolTipBase, "#303134"), (role.ToolTipText, "#e8eaed"), (role.PlaceholderText, "#9aa0a6"),
                 (role.Mid, "#5f6368"), (role.Midlight, "#3c4043"), (role.Dark, "#18191b"), (role.Light, "#4a4d51")):
        p.setColor(r, QColor(c))
    app.setPalette(p)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--dark", action="store_true", help="force the dark colour scheme")
    ap.add_argument("--bundle", help="bundle to load (default: the demo bundle, else a tiny untrained one)")
    args = ap.parse_args(argv)
    xvfb = _start_xvfb()
    try:
        return _run(args)
    finally:
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)


def _run(args) -> int:
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    if shutil.which("espeak-ng") is None:
        sys.exit("screenshot: espeak-ng is missing (apt install espeak-ng)")

    from app.assets import default_bundle
    from aura_model.backends import quiet_libraries

    quiet_libraries()
    bundle = args.bundle or default_bundle()
    if bundle is None:
        from smoke import build_bundle

        bundle = build_bundle()
        print("screenshot: no demo bundle ships yet; using a tiny UNTRAINED model (its answers are noise)",
              file=sys.stderr)

    from PySide6.QtWidgets import QApplication

    from app.settings import settings_store
    from app.widgets.main_window import MainWindow

    app = QApplication([sys.argv[0]])
    app.setApplicationDisplayName("AuRA")
    if args.dark:
        _go_dark(app)

    with tempfile.TemporaryDirectory(prefix="aura-shot-") as tmp:
        tmp = Path(tmp)
        spoken, dropped = _speak(TURNS[0], tmp / "spoken.wav"), _speak(TURNS[1], tmp / "question.wav")
        store = settings_store(tmp / "aura.ini")
        for key, value in {"model/bundle": str(bundle), "model/device": "cpu", "chat/max_new_tokens": 24,
                           "audio/enabled": False}.items():
            store.setValue(key, value)
        window = MainWindow(store, stream_factory=lambda device: WavMicrophone(spoken))
        window.resize(*SIZE)
        window.show()
        wait_until(lambda: window.chat.model_state != "loading", 300, "the model to load")
        if window.chat.model_state != "ready":
            raise SystemExit("screenshot: the model did not load")

        answered = []
        window.chat.answered.connect(answered.append)
        window.chat.mic_bar.toggle.setChecked(True)  # the stand-in microphone starts speaking
        wait_until(lambda: len(answered) >= 1, 120, "the spoken turn's answer")
        window.chat.submit_file(dropped)
        wait_until(lambda: len(answered) >= 2, 120, "the file turn's answer")
        window.chat.composer.input.setText(TURNS[2])
        window.chat.composer.send.click()
        wait_until(lambda: len(answered) >= 3, 120, "the typed turn's answer")
        window.chat.composer.input.setText("and what about the bedroom?")  # a message being typed
        end = time.monotonic() + 1.0
        wait_until(lambda: time.monotonic() > end, 5, "the window to settle")

        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if not window.grab().save(str(out)):
            raise SystemExit(f"screenshot: could not write {out}")
        print(f"screenshot: wrote {out}")
        window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
