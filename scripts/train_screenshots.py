"""Take docs/train_tab.png and docs/library.png: the real window, offscreen, during and after a Quick demo run.

    python scripts/train_screenshots.py [--out-dir docs] [--at-step 150] [--dark]

Runs the window with Qt's offscreen platform in a private home (temporary settings, user data
and cache folders: your own adapters and settings are not touched), chooses **Quick demo** in the
Train tab, starts it, grabs the tab once the run has passed ``--at-step`` (so the loss plot has
points and a validation pass has arrived), lets the run finish, and grabs the Adapters tab with
the new adapter in it. Prints how long the Quick demo took. Needs the shipped demo bundle.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

SIZE = (1180, 800)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out-dir", default=str(ROOT / "docs"))
    ap.add_argument("--at-step", type=int, default=150, help="grab the Train tab once the run passed this step")
    ap.add_argument("--dark", action="store_true", help="force the dark colour scheme")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="aura-train-shot-") as home:
        os.environ.update(QT_QPA_PLATFORM="offscreen", XDG_DATA_HOME=f"{home}/data", XDG_CACHE_HOME=f"{home}/cache",
                          HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
        return _run(args, Path(home))


def _run(args, home: Path) -> int:
    from PySide6.QtWidgets import QApplication
    from screenshot import wait_until as shared_wait_until

    from app.assets import default_bundle
    from app.settings import settings_store
    from app.train_presets import QUICK
    from app.widgets.main_window import MainWindow
    from aura_model.backends import quiet_libraries

    if default_bundle() is None:
        sys.exit("train_screenshots: the Quick demo needs the shipped demo bundle (assets/default_bundle)")
    quiet_libraries()
    app = QApplication([sys.argv[0]])
    app.setApplicationDisplayName("AuRA")
    if args.dark:
        from screenshot import _go_dark

        _go_dark(app)

    def wait_until(condition, timeout_s: float, what: str) -> None:
        shared_wait_until(condition, timeout_s, what, "train_screenshots")

    store = settings_store(home / "aura.ini")
    for key, value in {"model/device": "cpu", "audio/enabled": False}.items():
        store.setValue(key, value)
    window = MainWindow(store)
    window.resize(*SIZE)
    window.show()
    wait_until(lambda: window.chat.model_state != "loading", 300, "the model to load")
    tab = window.train
    window.tabs.setCurrentWidget(tab)
    tab.options.set_preset(QUICK)
    wait_until(lambda: tab.teacher.state == "ok" and tab.student.state == "ok", 120, "the model checks")
    started = time.monotonic()
    steps: list[int] = []
    tab.trainer.event.connect(lambda e: e.name == "progress" and e.fields.get("stage") == "train"
                              and steps.append(e.fields["step"]))
    tab.start()
    wait_until(lambda: tab.run_state == "running", 300, "the clips to be spoken")
    print(f"train_screenshots: clips ready after {time.monotonic() - started:.0f} s")
    wait_until(lambda: (steps and steps[-1] >= args.at_step) or not tab.busy, 1800, f"step {args.at_step}")
    wait_until(lambda: tab.plot.points("val_loss") or not tab.busy, 600, "a validation pass")
    end = time.monotonic() + 0.5
    wait_until(lambda: time.monotonic() > end, 5, "the plot to redraw")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(out / "train_tab.png"))
    wait_until(lambda: not tab.busy, 1800, "the run to finish")
    print(f"train_screenshots: Quick demo {tab.run_state} after {time.monotonic() - started:.0f} s "
          f"(Start to the end of the run, on {os.cpu_count()} CPU cores)")
    if tab.run_state != "finished":
        raise SystemExit(f"train_screenshots: the run did not finish: {tab.progress.state.text()}")
    window.tabs.setCurrentWidget(window.library)
    wait_until(lambda: "quick-demo" in window.library.names(), 120, "the library to list the adapter")
    window.library.select("quick-demo")
    end = time.monotonic() + 0.5
    wait_until(lambda: time.monotonic() > end, 5, "the window to settle")
    window.grab().save(str(out / "library.png"))
    print(f"train_screenshots: wrote {out / 'train_tab.png'} and {out / 'library.png'}")
    tab.trainer.kill()
    window.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
