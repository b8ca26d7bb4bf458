"""`aura --self-test` and `aura-gui --self-test`: proof that an install works, run on the install itself.

It loads the bundled model, answers a bundled spoken question through the real pipeline (audio
file -> log-mel -> audio embedding -> LLM, :meth:`Assistant.stream`) and compares the answer with
the expected one (:func:`aura_model.scoring.is_correct`). Then it checks what a packaged build
can lose: the PortAudio library sounddevice will open, webrtcvad (the app's endpointing on the
same clip), a spawned child process (``multiprocessing.freeze_support`` in the entry points),
bitsandbytes' native library, and for the GUI the Qt platform plugins, the window's modules and
its icons, headless.

No network: an audit hook notes every socket connection and name lookup while it runs; one is a
failure. One line goes to stdout (to the log folder when there is no console); exit 0 when every
check passes, 1 with the reason otherwise.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.assets import console_attached, default_bundle, ensure_std_streams, is_frozen

# "tell me the capital of iran" -> "tehran": the shipped model answers it right (of the six samples the token-rate
# bundle misses only sample_3; check with `aura eval` on samples.jsonl when the bundle is rebuilt).
SELF_TEST_CLIP = "sample_5.wav"
NETWORK_EVENTS = frozenset({"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
                            "socket.gethostbyname_ex", "socket.gethostbyaddr", "socket.sendto"})
_network: dict = {"watching": False, "calls": []}


class SelfTestFailure(Exception):
    """A check that did not pass; the message is the reason shown."""


@dataclass
class Report:
    """What the run found: the checks passed, the timings, the first failure."""

    checks: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    failure: str | None = None
    answer: str = ""

    @property
    def ok(self) -> bool:
        return self.failure is None

    def line(self) -> str:
        times = ", ".join(f"{k} {v:.2f} s" for k, v in self.timings.items())
        head = "ok" if self.ok else f"FAILED: {self.failure}"
        where = "frozen" if is_frozen() else "source"
        return f"aura self-test: {head}; {times}; {'; '.join(self.checks)}; {where}"


# ---------------------------------------------------------------------- network watch
def _audit(event: str, args: tuple) -> None:
    if _network["watching"] and event in NETWORK_EVENTS:
        _network["calls"].append(f"{event}{args[1:2] if event == 'socket.connect' else args[:1]}")


def _watch_network() -> None:
    """Start noting network calls (an audit hook cannot be removed; it stays idle between runs)."""
    if not _network.get("installed"):
        sys.addaudithook(_audit)
        _network["installed"] = True
    _network["calls"] = []
    _network["watching"] = True


def _network_calls() -> list[str]:
    _network["watching"] = False
    return list(_network["calls"])


# ---------------------------------------------------------------------- the spoken question
def expected_answer(bundle: Path, clip: str) -> str:
    """The answer samples/samples.jsonl gives for ``clip``."""
    listing = bundle / "samples" / "samples.jsonl"
    try:
        rows = [json.loads(line) for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, ValueError) as exc:
        raise SelfTestFailure(f"cannot read {listing}: {exc}") from exc
    for row in rows:
        if row.get("audio") == clip:
            return str(row["answer"])
    raise SelfTestFailure(f"{listing} lists no {clip}")


def _answer_question(report: Report, bundle: Path | None, clip: str, started: float, quiet: bool) -> None:
    """Import, load, answer the clip as the app does; time each; compare with the expected answer."""
    from aura_model.assistant import Assistant
    from aura_model.backends import device_name, quiet_libraries
    from aura_model.scoring import is_correct

    if quiet:
        quiet_libraries()  # as `aura` without --debug

    report.timings["import"] = time.perf_counter() - started
    bundle = bundle or default_bundle()
    if bundle is None:
        raise SelfTestFailure("no bundled model: the default bundle is missing from this build")
    expected = expected_answer(bundle, clip)
    t1 = time.perf_counter()
    assistant = Assistant.open(bundle)
    report.timings["load"] = time.perf_counter() - t1
    report.answer = _timed_answer(report, assistant, bundle / "samples" / clip)
    resolved = assistant.loaded.resolved
    report.checks.append(f"{device_name(resolved.device)} {str(resolved.dtype).replace('torch.', '')}")
    if not is_correct(report.answer, expected):
        raise SelfTestFailure(f"{clip}: answered {report.answer!r}, expected {expected!r}")
    report.checks.insert(0, f"{clip} -> {report.answer!r} (expected {expected!r})")


def _timed_answer(report: Report, assistant, clip: Path) -> str:
    t0 = time.perf_counter()
    pieces = []
    for piece in assistant.stream(audio=clip):
        if not pieces:
            report.timings["first token"] = time.perf_counter() - t0
        pieces.append(piece)
    return "".join(pieces).strip()


# ---------------------------------------------------------------------- what a build can lose
def _portaudio_library() -> str:
    """The PortAudio library sounddevice will open (it asks ctypes.util.find_library, as here)."""
    found = ctypes.util.find_library("portaudio")
    if found is None and sys.platform in ("win32", "darwin"):
        import _sounddevice_data  # the wheels for Windows and macOS carry it

        folder = Path(next(iter(_sounddevice_data.__path__))) / "portaudio-binaries"
        found = next((str(p) for p in sorted(folder.glob("libportaudio*"))), None)
    if found is None:
        raise SelfTestFailure("PortAudio not found: the microphone cannot open")
    return found


def _check_portaudio(report: Report) -> None:
    """The library loads and reports its version; a frozen build must use its own copy."""
    path = _portaudio_library()
    lib = ctypes.CDLL(path)
    lib.Pa_GetVersionText.restype = ctypes.c_char_p
    version = lib.Pa_GetVersionText().decode(errors="replace")
    inside = is_frozen() and Path(sys._MEIPASS).resolve() in Path(path).resolve().parents
    if is_frozen() and not inside:
        raise SelfTestFailure(f"PortAudio comes from the system ({path}), not from the app")
    report.checks.append(f"{version.split(',')[0]} ({'in the app' if inside else path})")


def _check_bitsandbytes(report: Report) -> None:
    """bitsandbytes (4-bit loading, `aura train` on CUDA) imports without fetching a Hub kernel (the network watch
    sees a fetch) and loads its native library for this machine."""
    import importlib.util

    from aura_model.backends import bitsandbytes_available

    if importlib.util.find_spec("bitsandbytes") is None and not is_frozen():
        report.checks.append("bitsandbytes not installed (no 4-bit)")
        return
    if not bitsandbytes_available():
        raise SelfTestFailure("bitsandbytes does not import: no 4-bit loading, no training on CUDA")
    from bitsandbytes import cextension

    if isinstance(cextension.lib, getattr(cextension, "ErrorHandlerMockBNBNativeLibrary", ())):
        raise SelfTestFailure("bitsandbytes' native library did not load")
    native = getattr(getattr(cextension.lib, "_lib", None), "_name", "")
    report.checks.append(f"bitsandbytes {Path(native).name or 'loaded'}")


def _check_vad(report: Report, bundle: Path | None, clip: str) -> None:
    """webrtcvad, through the app's endpointer, finds the speech in the clip."""
    import numpy as np

    from aura_model.audio import load_audio
    from app.listening.vad import VadConfig, VadSegmenter

    bundle = bundle or default_bundle()
    wave = load_audio(bundle / "samples" / clip)
    segmenter = VadSegmenter(VadConfig())
    segments = segmenter.feed(np.concatenate([np.zeros(8000, np.float32), wave, np.zeros(16000, np.float32)]))
    segments += segmenter.flush()
    if not segments:
        raise SelfTestFailure(f"webrtcvad heard no speech in {clip}")
    report.checks.append(f"webrtcvad {segments[0].speech_duration_s:.1f} s of speech")


def _child_reply(conn) -> None:
    conn.send(os.getpid())
    conn.close()


def _check_child_process(report: Report) -> None:
    """A spawned child (how DataLoader workers and trainer children start) runs and exits, no second app."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    t0 = time.perf_counter()
    proc = ctx.Process(target=_child_reply, args=(child,), daemon=True)
    proc.start()
    reply = parent.recv() if parent.poll(60) else None
    proc.join(30)
    if reply != proc.pid or proc.exitcode != 0:
        proc.kill()
        raise SelfTestFailure(f"a spawned child process did not answer (exit code {proc.exitcode})")
    report.checks.append(f"child process {time.perf_counter() - t0:.1f} s")


NATIVE_PLATFORM_PLUGIN = {"linux": "qxcb", "win32": "qwindows", "darwin": "qcocoa"}


def _check_qt(report: Report) -> None:
    """Headless: a QApplication on the offscreen platform, the window's modules, an icon; the native plugin is there."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"  # no display needed, whatever DISPLAY says
    from PySide6.QtCore import QLibraryInfo
    from PySide6.QtWidgets import QApplication

    qapp = QApplication.instance() or QApplication(["aura-gui"])
    import app.widgets.main_window  # noqa: F401  everything the window imports is in the build
    import pyqtgraph  # noqa: F401  and what the Train tab's loss plot imports when first shown
    from app.widgets.icons import icon

    if icon("mic", "#202020").isNull():
        raise SelfTestFailure("the icons did not load (assets/icons or QtSvg missing)")
    plugins = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    native = NATIVE_PLATFORM_PLUGIN.get(sys.platform, "qxcb")
    if not any(p.name.startswith(("lib" + native, native)) for p in plugins.glob("*")):
        raise SelfTestFailure(f"Qt's {native} platform plugin is missing from {plugins}: no window can open")
    report.checks.append(f"Qt {qapp.platformName()} + {native} plugin, icons")


# ---------------------------------------------------------------------- entry
def run(bundle: Path | None = None, clip: str = SELF_TEST_CLIP, gui: bool = False,
        started: float | None = None, quiet: bool = False) -> Report:
    """Every check, in order; the first failure stops the run and is the reason reported.

    ``started``: when the program started (perf_counter), so "import" counts all start-up work;
    ``quiet``: library warnings off, as the entry points do.
    """
    report = Report()
    _watch_network()
    try:
        _answer_question(report, bundle, clip, time.perf_counter() if started is None else started, quiet)
        _check_vad(report, bundle, clip)
        _check_portaudio(report)
        _check_bitsandbytes(report)
        _check_child_process(report)
        if gui:
            _check_qt(report)
    except SelfTestFailure as exc:
        report.failure = str(exc)
    except Exception as exc:  # a broken build fails in unforeseen ways: say which
        report.failure = f"{type(exc).__name__}: {exc}"
    calls = _network_calls()
    report.checks.append(f"network calls {len(calls)}")
    if calls and report.ok:
        report.failure = f"network calls without being asked: {', '.join(calls[:3])}"
    return report


def _emit(line: str) -> None:
    """Print the line; without a console (a windowed build) append it to the log folder instead."""
    print(line, flush=True)
    if console_attached():
        return
    from app.gui import log_dir

    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "self-test.log", "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        pass


def main(gui: bool = False) -> int:
    """`--self-test` of either entry point: 0 when the install works, 1 with the reason otherwise."""
    started = time.perf_counter()
    ensure_std_streams()
    report = run(gui=gui, started=started, quiet=True)
    _emit(report.line())
    return 0 if report.ok else 1
