"""The trainer as a child process: ``aura train --progress-json`` in a QProcess, its JSON lines as signals.

The window never trains in its own process: a run is ``python -m aura_model.train`` (the code
behind `aura train`) with the plan's flags and ``--progress-json``, so a crash, a kill or running
out of memory ends the child, never the window. Its stdout carries one JSON event per line
(``aura_model/train/progress.py``: progress, eval, checkpoint, finished, error), parsed here into
:class:`TrainerEvent`; its stderr (notices, the data report, a traceback) comes as log lines.

Pause and Stop both ask the trainer to write a checkpoint at the next step boundary and exit
(status 143); Resume starts the same command with ``--resume``. On Linux and macOS the request
is SIGTERM (``QProcess.terminate``). On Windows ``terminate`` only posts WM_CLOSE, which a console
process ignores, so there the request is the run's stop file: the trainer, started with
``--stop-file PATH``, checks for it twice a second and stops as SIGTERM would.
``use_stop_file`` chooses the way (tests use both). When the process ends,
:class:`TrainerExit` says how: finished, paused, stopped, failed (with the trainer's own
message) or crashed (killed by a signal, or it died).

A process still running when this object is deleted is killed by Qt; the window asks the user
first and calls :meth:`TrainerProcess.shutdown`, which pauses (checkpoint) and waits, then kills.
If the app itself is killed, the trainer (started with ``--exit-with-parent``) notices that its
parent is gone, writes a checkpoint and exits (Linux, macOS), so the next start can offer Resume.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, Signal

from app.train_presets import RunPlan
from aura_model.checkpoint_layout import SIGNAL_EXIT
from aura_model.errors import AuraError

log = logging.getLogger(__name__)

FAILED = 1
STDERR_TAIL = 40  # lines kept for the message of a failed run
PAUSE_WAIT_MS = 120_000  # how long shutdown() waits for the checkpoint before it kills the trainer


@dataclass(frozen=True)
class TrainerEvent:
    """Payload of ``event``: one JSON line of the trainer (see aura_model/train/progress.py)."""

    name: str  # "progress" | "eval" | "checkpoint" | "finished" | "error"
    fields: dict[str, Any] = field(default_factory=dict)  # the line's other fields, as the trainer wrote them


@dataclass(frozen=True)
class TrainerExit:
    """Payload of ``ended``: the trainer process is gone, and how it went."""

    outcome: str  # "finished" | "paused" | "stopped" | "failed" | "crashed"
    exit_code: int | None  # the process's status; None when a signal killed it or it never started
    message: str  # one line for the user
    checkpoint_step: int | None  # the newest checkpoint of this run (Resume continues there); None = none yet
    output: str | None = None  # the bundle, when finished

    @property
    def resumable(self) -> bool:
        return self.checkpoint_step is not None


def trainer_program() -> tuple[str, list[str]]:
    """(program, leading arguments) that run `aura train` from this installation."""
    if getattr(sys, "frozen", False):  # a PyInstaller build: the `aura` command ships beside the app
        beside = Path(sys.executable).with_name("aura.exe" if os.name == "nt" else "aura")
        if not beside.is_file():
            raise AuraError(f"this build has no {beside.name} beside the app to run the trainer")
        return str(beside), ["train"]
    return sys.executable, ["-m", "aura_model.train"]


def _environment() -> QProcessEnvironment:
    import aura_model

    env = QProcessEnvironment.systemEnvironment()
    root = str(Path(aura_model.__file__).resolve().parent.parent)  # a checkout run from another folder finds it
    env.insert("PYTHONPATH", os.pathsep.join(filter(None, [root, env.value("PYTHONPATH", "")])))
    env.insert("PYTHONUNBUFFERED", "1")
    env.insert("TOKENIZERS_PARALLELISM", "false")
    return env


class TrainerProcess(QObject):
    """One trainer process at a time; restartable (Resume) with the same plan."""

    started = Signal()  # the process is running
    event = Signal(object)  # TrainerEvent, one per JSON line
    log_line = Signal(str)  # a line of the trainer's stderr (or a stdout line that is not JSON)
    ended = Signal(object)  # TrainerExit

    def __init__(self, parent: QObject | None = None, use_stop_file: bool | None = None) -> None:
        super().__init__(parent)
        self.use_stop_file = sys.platform == "win32" if use_stop_file is None else use_stop_file
        self.plan: RunPlan | None = None
        self.checkpoint_step: int | None = None  # newest checkpoint of the plan, across Pause/Resume
        self._process: QProcess | None = None
        self._requested: str | None = None  # "pause" | "stop" | "kill" while the process winds down
        self._stdout = b""
        self._stderr = b""
        self._error: str | None = None  # the trainer's error event
        self._finished: dict[str, Any] | None = None
        self._tail: list[str] = []

    # -- state ----------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    @property
    def pid(self) -> int | None:
        return int(self._process.processId()) if self.running else None

    # -- control --------------------------------------------------------------------------------

    def start(self, plan: RunPlan, resume: bool = False) -> None:
        """Start the trainer on ``plan`` (``resume``: continue from its newest checkpoint)."""
        if self.running:
            raise AuraError("a training run is in progress")
        if not resume:
            self.checkpoint_step = None
        self.plan = plan
        plan.stop_file.unlink(missing_ok=True)
        Path(plan.run_dir).mkdir(parents=True, exist_ok=True)
        program, lead = trainer_program()
        args = [*lead, *plan.flags(), "--progress-json", "--stop-file", str(plan.stop_file), "--exit-with-parent"]
        args += ["--resume"] if resume else []
        self._reset()
        process = QProcess(self)
        process.setProgram(program)
        process.setArguments(args)
        process.setWorkingDirectory(plan.run_dir)
        process.setProcessEnvironment(_environment())
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        process.started.connect(self.started)
        self._process = process
        self.log_line.emit("$ aura train " + " ".join(args[len(lead):]))
        process.start()

    def _reset(self) -> None:
        self._requested, self._error, self._finished = None, None, None
        self._stdout, self._stderr, self._tail = b"", b"", []

    def pause(self) -> None:
        """Checkpoint at the next step boundary, then exit (Resume continues from there)."""
        self._request("pause")

    def stop(self) -> None:
        """End the run with a checkpoint (it can still be resumed)."""
        self._request("stop")

    def _request(self, what: str) -> None:
        if not self.running or self.plan is None:
            return
        self._requested = what
        if self.use_stop_file:
            self.plan.stop_file.write_text(what + "\n")
        else:
            self._process.terminate()  # type: ignore[union-attr]  # SIGTERM: the trainer checkpoints, exits 143

    def kill(self) -> None:
        """End the process now (no checkpoint)."""
        if self.running:
            self._requested = "kill"
            self._process.kill()  # type: ignore[union-attr]

    def shutdown(self, wait_ms: int = PAUSE_WAIT_MS) -> None:
        """The window is closing: pause (checkpoint) and wait, then kill what is left. Blocks up to ``wait_ms``."""
        if not self.running:
            return
        process = self._process
        self.pause()
        if not process.waitForFinished(wait_ms):  # type: ignore[union-attr]
            log.warning("the trainer did not stop within %d ms; killing it", wait_ms)
            process.kill()  # type: ignore[union-attr]
            process.waitForFinished(10_000)  # type: ignore[union-attr]

    # -- output ---------------------------------------------------------------------------------

    def _read_stdout(self) -> None:
        self._stdout += bytes(self._process.readAllStandardOutput().data())  # type: ignore[union-attr]
        *lines, self._stdout = self._stdout.split(b"\n")
        for raw in lines:
            self._handle_stdout(raw.decode("utf-8", errors="replace").strip())

    def _handle_stdout(self, line: str) -> None:
        if not line:
            return
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            self._log(line)
            return
        if not isinstance(data, dict) or "event" not in data:
            self._log(line)
            return
        name = str(data.pop("event"))
        if name == "checkpoint" and isinstance(data.get("step"), int):
            self.checkpoint_step = data["step"]
        elif name == "error":
            self._error = str(data.get("message") or "")
        elif name == "finished":
            self._finished = data
        self.event.emit(TrainerEvent(name, data))

    def _read_stderr(self) -> None:
        self._stderr += bytes(self._process.readAllStandardError().data())  # type: ignore[union-attr]
        *lines, self._stderr = self._stderr.replace(b"\r", b"\n").split(b"\n")
        for raw in lines:
            text = raw.decode("utf-8", errors="replace").rstrip()
            if text.strip():
                self._log(text)

    def _log(self, text: str) -> None:
        self._tail = (self._tail + [text])[-STDERR_TAIL:]
        self.log_line.emit(text)

    # -- the end --------------------------------------------------------------------------------

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            message = f"could not start the trainer: {self._process.errorString()}"  # type: ignore[union-attr]
            self._process.deleteLater()  # type: ignore[union-attr]
            self._process = None
            self.ended.emit(TrainerExit("failed", None, message, self.checkpoint_step))

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._read_stdout()
        self._read_stderr()
        self._handle_stdout(self._stdout.decode("utf-8", errors="replace").strip())
        if self._stderr.strip():
            self._log(self._stderr.decode("utf-8", errors="replace").rstrip())
        self._stdout = self._stderr = b""
        crashed = status == QProcess.ExitStatus.CrashExit
        outcome = self._exit(None if crashed else code, code if crashed else None)
        self._process.deleteLater()  # type: ignore[union-attr]
        self._process = None
        if self.plan is not None:
            self.plan.stop_file.unlink(missing_ok=True)
        self.ended.emit(outcome)

    def _exit(self, code: int | None, signal_number: int | None) -> TrainerExit:
        step = self.checkpoint_step
        if code == 0:
            output = (self._finished or {}).get("output") or (self.plan.output if self.plan else None)
            return TrainerExit("finished", 0, "finished", step, output)
        if code in SIGNAL_EXIT.values():  # stopped by SIGINT / SIGTERM after a checkpoint
            outcome = "paused" if self._requested == "pause" else "stopped"
            where = f"checkpoint at step {step}" if step is not None else \
                "before the first step, so there is no checkpoint yet (the caches filled so far are kept)"
            return TrainerExit(outcome, code, where, step)
        if code is not None:
            reason = self._error or self._last_line() or f"the trainer exited with status {code}"
            return TrainerExit("failed", code, reason, step)
        if signal_number == 15 and self._requested in ("pause", "stop"):  # SIGTERM outside the trainer's handler
            where = f"checkpoint at step {step}" if step is not None else "stopped while starting: no checkpoint yet"
            return TrainerExit("paused" if self._requested == "pause" else "stopped", None, where, step)
        how = "was killed" if self._requested == "kill" else f"crashed or was killed (signal {signal_number})"
        last = self._last_line()
        return TrainerExit("crashed", None, f"the trainer process {how}" + (f"; its last words: {last}" if last else ""),
                           step)

    def _last_line(self) -> str:
        lines = [t for t in self._tail if not t.startswith(("$ aura train", "Loading weights"))]
        return lines[-1].strip() if lines else ""
