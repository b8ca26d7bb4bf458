"""Entry point of `aura-gui` (and `python -m app`): the desktop window.

    aura-gui [--bundle DIR] [--base MODEL] [--device auto|cpu|cuda|cuda:N] [--settings FILE.ini]

The options apply to this run only (the Settings dialog changes them for good).
Unexpected exceptions are logged to the app's log folder (platformdirs) and shown
in a message box; they never close the window.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path

APP_NAME = "AuRA"
PROCESS_START = __import__("time").perf_counter()  # as near the process start as this module gets


def log_dir() -> Path:
    from platformdirs import user_log_path

    return user_log_path(APP_NAME, APP_NAME)


def _setup_logging() -> Path | None:
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "aura-gui.log"
        logging.basicConfig(filename=str(path), level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        return path
    except OSError:  # a read-only home must not stop the app
        logging.basicConfig(level=logging.WARNING)
        return None


def _install_excepthook(log_path: Path | None) -> None:
    """Show, log and survive exceptions that escape a slot (PySide6 would print them and go on)."""
    def hook(exc_type, exc, tb):
        if issubclass(exc_type, KeyboardInterrupt):
            sys.__excepthook__(exc_type, exc, tb)
            return
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        logging.getLogger("aura.gui").error("unexpected error:\n%s", text)
        sys.stderr.write(text)
        from PySide6.QtWidgets import QApplication, QMessageBox

        if QApplication.instance() is not None:
            where = f"\n\nDetails are in {log_path}." if log_path else ""
            box = QMessageBox(QMessageBox.Icon.Warning, "AuRA", f"Something went wrong: {exc_type.__name__}: {exc}"
                              f"{where}\nThe app keeps running.")
            box.open()
            hook.boxes = [*hook.boxes[-4:], box]  # keep it alive while it is shown

    hook.boxes = []
    sys.excepthook = hook


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aura-gui", description="AuRA desktop window: talk to a local LLM.")
    p.add_argument("--bundle", help="AuRA bundle folder for this run (default: the one in Settings, else the demo)")
    p.add_argument("--base", help="base LLM override for this run")
    p.add_argument("--device", help="compute device for this run: auto | cpu | cuda | cuda:N")
    p.add_argument("--settings", metavar="FILE", help="keep settings in this ini file instead of the system store")
    p.add_argument("--quit-when-ready", action="store_true",
                   help="close as soon as the model is loaded, printing how long that took (start-up benchmark)")
    p.add_argument("--self-test", action="store_true",
                   help="no window: answer a bundled spoken question, check Qt and the install, print one line, exit")
    return p


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # in a frozen build a spawned child runs its task here, not a second window
    from app.assets import ensure_std_streams

    ensure_std_streams()  # a windowed build has no console: sys.stdout and sys.stderr start as None
    argv = sys.argv[1:] if argv is None else argv
    args, qt_args = build_parser().parse_known_args(argv)
    if args.self_test:
        from app.self_test import main as self_test

        return self_test(gui=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from aura_model.backends import quiet_libraries

    quiet_libraries()
    log_path = _setup_logging()

    from PySide6.QtWidgets import QApplication

    from app.settings import APPLICATION, ORGANIZATION, ModelSettings, settings_store
    from app.widgets.main_window import MainWindow

    QApplication.setOrganizationName(ORGANIZATION)
    QApplication.setApplicationName(APPLICATION)
    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setApplicationDisplayName("AuRA")
    from app.main_thread_gc import MainThreadGarbageCollector

    MainThreadGarbageCollector(app)  # Qt objects must never be destroyed by a collection in a worker thread
    _install_excepthook(log_path)

    def override(settings):
        m = settings.model
        settings.model = ModelSettings(bundle=args.bundle or m.bundle, base=args.base or m.base,
                                       device=args.device or m.device, quantization=m.quantization)
        return settings

    try:
        window = MainWindow(settings_store(args.settings), settings_override=override)
    except Exception as exc:  # e.g. a bad --device value
        from aura_model.errors import AuraError

        if not isinstance(exc, AuraError):
            raise
        print(f"aura-gui: error: {exc}", file=sys.stderr)
        return 1
    window.show()
    _close_on_signals(window)
    if args.quit_when_ready:
        _quit_when_ready(window)
    return app.exec()


def _quit_when_ready(window) -> None:
    """Print the seconds from process start to a loaded model (or the failure) and close the window."""
    import time

    from PySide6.QtCore import QObject, Slot

    class Closer(QObject):  # lives on the main thread, so the worker's signals reach it queued
        @Slot(object)
        def ready(self, _info) -> None:
            self.done("model ready")

        @Slot(str)
        def failed(self, message: str) -> None:
            self.done(f"model failed ({message})")

        def done(self, what: str) -> None:
            print(f"aura-gui: {what} {time.perf_counter() - PROCESS_START:.2f} s after start", flush=True)
            window.close()

    closer = Closer(window)
    window.model.worker.loaded.connect(closer.ready)
    window.model.worker.load_failed.connect(closer.failed)


def _close_on_signals(window) -> None:
    """Ctrl-C or SIGTERM close the window properly (settings saved, threads stopped).

    Python only runs signal handlers when it gets control, so a timer wakes it
    a few times a second while Qt's event loop waits.
    """
    import signal

    from PySide6.QtCore import QTimer

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: window.close())
    timer = QTimer(window)
    timer.timeout.connect(lambda: None)
    timer.start(250)


if __name__ == "__main__":
    raise SystemExit(main())
