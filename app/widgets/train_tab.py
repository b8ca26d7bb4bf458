"""TrainTab: distil a new adapter without a terminal — choose, start, watch, pause/resume/stop, use it.

Left, the setup: teacher and student (a hub id or a folder, checked from their configs), the
clips (previewed with the trainer's own data report), the adapter's name and the preset
(Quick demo / Standard / Custom). Right, the run: its state, the preparation stage with counts,
a progress bar with rate and ETA, live loss curves, the validation metrics as they arrive, the
log, and at the end the evaluation summary and **Use this adapter**.

Nothing heavy runs on the Qt main thread: the checks, the preview, the settings check and the
Quick demo's speech run as background jobs (``app.workers.jobs``), the training itself in a
child process (``app.workers.trainer_process``: `aura train --progress-json`). The run writes its
bundle into the adapter library (``<library>/<name>``) and its checkpoints into
``<library>/.runs/<name>``, where a run paused when the window closed is found again.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QFormLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QPlainTextEdit,
                               QPushButton, QScrollArea, QSplitter, QVBoxLayout, QWidget)

from app.library import output_folder
from app.train_presets import (CUSTOM, QUICK, STANDARD, RunPlan, plan_run, prepare_run, quick_demo_models,
                               trainer_fields, unfinished_run)
from app.train_probes import preview_data, probe_student, probe_teacher
from app.workers.jobs import JobResult, Jobs
from app.workers.trainer_process import TrainerEvent, TrainerExit, TrainerProcess
from aura_model.errors import AuraError

from .dataset_picker import DatasetPicker
from .loss_plot import LossPlot
from .metrics_table import MetricsTable
from .model_picker import ModelPicker
from .run_progress import RunProgress
from .train_options import TrainOptions

BUSY = ("preparing", "running", "pausing", "stopping")  # a run is being set up or its process runs
RESUMABLE = ("paused", "stopped", "failed", "crashed")
LOG_LINES = 5000


def default_cache_root() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("AuRA", "AuRA")) / "quick-demo"


class TrainTab(QWidget):
    use_adapter = Signal(str)  # the finished run's bundle folder: the window makes it the active adapter
    adapter_written = Signal(str)  # a run wrote this bundle into the library (the Adapters tab refreshes)
    busy_changed = Signal(bool)  # a run is being prepared or its trainer runs

    def __init__(self, library: Path, jobs: Jobs, default_bundle: Path | None, cache_root: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("TrainTab")
        self.library, self.jobs, self.default_bundle = Path(library), jobs, default_bundle
        self.cache_root = cache_root or default_cache_root()
        self.trainer = TrainerProcess(self)
        self.plan: RunPlan | None = None
        self.run_state = "idle"  # idle | preparing | running | pausing | stopping | paused | stopped | failed | crashed | finished
        self.output: str | None = None  # the finished run's bundle
        self.finished_fields: dict | None = None  # its ``finished`` event
        self.teacher_summary = None  # the teacher's ModelSummary once checked (its window limits the preview)
        self.last_dialog: QMessageBox | None = None  # the latest question asked (tests answer it)
        self._run_id = 0  # bumped by every start/stop: a late result of an older preparation is ignored
        self._preview_cancel: threading.Event | None = None
        self._shown = False  # the checks (which import the trainer) wait until the tab is first shown
        self._build()
        self._wire()
        self._init_quick_demo()
        self._offer_unfinished_run()
        self._update_buttons()

    def showEvent(self, event) -> None:
        if not self._shown:
            self._shown = True  # not at the window's start: the model loads then, and this is background work too
            self.jobs.run(trainer_fields, done=self._fields_ready)
            for role, picker in (("teacher", self.teacher), ("student", self.student)):
                if picker.text():
                    self._check_model(role)
            self.preview()
        super().showEvent(event)

    # -- layout ---------------------------------------------------------------------------------

    def _build(self) -> None:
        self.teacher = ModelPicker("hub id (e.g. openai/whisper-small) or a local folder", "Choose the teacher folder")
        self.student = ModelPicker("hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct) or a local folder",
                                   "Choose the student LLM folder")
        self.dataset = DatasetPicker()
        self.name = QLineEdit("my-adapter")
        self.options = TrainOptions()
        self.start_button, self.pause_button = QPushButton("Start"), QPushButton("Pause")
        self.resume_button, self.stop_button = QPushButton("Resume"), QPushButton("Stop")
        self.use_button = QPushButton("Use this adapter")
        self.start_button.setDefault(True)
        self.progress = RunProgress()
        self.plot = LossPlot()
        self.metrics = MetricsTable()
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setObjectName("TrainLog")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._setup_panel())
        splitter.addWidget(self._run_panel())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([430, 570])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(splitter)

    def _setup_panel(self) -> QWidget:
        models = QGroupBox("Models and data")
        form = QFormLayout(models)
        form.addRow("Teacher (ASR)", self.teacher)
        form.addRow("Student LLM", self.student)
        form.addRow("Clips", self.dataset)
        form.addRow("Adapter name", self.name)
        inner = QWidget()
        column = QVBoxLayout(inner)
        column.addWidget(models)
        column.addWidget(self.options)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.resume_button, self.stop_button):
            buttons.addWidget(b)
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        return panel

    def _run_panel(self) -> QWidget:
        panel = QWidget()
        layout = QVBoxLayout(panel)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.progress)
        charts = QSplitter(Qt.Orientation.Horizontal)
        charts.addWidget(self.plot)
        charts.addWidget(self.metrics)
        charts.setStretchFactor(0, 3)
        charts.setStretchFactor(1, 1)
        charts.setSizes([480, 220])
        layout.addWidget(charts, 3)
        use = QHBoxLayout()
        use.addStretch(1)
        use.addWidget(self.use_button)
        layout.addLayout(use)
        layout.addWidget(QLabel("Log"))
        layout.addWidget(self.log, 1)
        return panel

    def _wire(self) -> None:
        self.teacher.changed.connect(lambda _text: self._check_model("teacher"))
        self.student.changed.connect(lambda _text: self._check_model("student"))
        self.dataset.changed.connect(lambda _text: self.preview())
        self.options.preset_changed.connect(self._preset_changed)
        self.start_button.clicked.connect(self.start)
        self.pause_button.clicked.connect(self.pause)
        self.resume_button.clicked.connect(self.resume)
        self.stop_button.clicked.connect(self.stop)
        self.use_button.clicked.connect(lambda: self.output and self.use_adapter.emit(self.output))
        self.trainer.event.connect(self._on_event)
        self.trainer.log_line.connect(self.append_log)
        self.trainer.ended.connect(self._on_ended)

    # -- presets --------------------------------------------------------------------------------

    def _init_quick_demo(self) -> None:
        try:
            quick_demo_models(self.default_bundle)
        except AuraError as exc:
            self.options.set_quick_available(False, str(exc))
            self.options.set_preset(STANDARD)
            return
        self._preset_changed(self.options.preset())

    def _fields_ready(self, result: JobResult) -> None:
        if result.ok:
            self.options.set_fields(result.value)
        else:
            self.append_log(f"cannot read the trainer's settings: {result.error}")
        self._update_buttons()

    def _preset_changed(self, preset: str) -> None:
        quick = preset == QUICK
        for picker in (self.teacher, self.student, self.dataset):
            picker.edit.setReadOnly(quick)
            picker.browse.setEnabled(not quick)
        if quick:
            teacher, student = quick_demo_models(self.default_bundle)
            self.teacher.set_text(teacher, check=self._shown)
            self.student.set_text(student, check=self._shown)
            self.dataset.set_text(str(self.cache_root / "spoken" / "train"), check=False)
            self.dataset.set_note("A few hundred demo requests, spoken with espeak-ng when the run starts "
                                  "(the bundled sample clips where espeak-ng is missing).")
            if self.name.text().strip() in ("", "my-adapter"):
                self.name.setText("quick-demo")
            return
        if self.dataset.text() == str(self.cache_root / "spoken" / "train"):
            self.dataset.set_text("", check=False)  # the Quick demo's clips are made for its runs only
            self.dataset.set_note("")
        if self.name.text().strip() == "quick-demo":
            self.name.setText("my-adapter")

    # -- checking the inputs --------------------------------------------------------------------

    def _check_model(self, role: str) -> None:
        picker = self.teacher if role == "teacher" else self.student
        ref = picker.text()
        if not ref:
            picker.set_state("idle", "")
            return
        picker.set_state("checking", "reading its config…")
        probe = probe_teacher if role == "teacher" else probe_student
        self.jobs.run(probe, ref, done=lambda result: self._model_checked(role, ref, result))

    def _model_checked(self, role: str, ref: str, result: JobResult) -> None:
        picker = self.teacher if role == "teacher" else self.student
        if picker.text() != ref:
            return  # the field changed meanwhile: a newer check is on its way
        if not result.ok:
            picker.set_state("error", result.error or "")
            return
        summary = result.value
        picker.set_state("ok" if summary.usable else "error", summary.describe())
        if role == "teacher":
            self.teacher_summary = summary

    def preview(self) -> None:
        """Read every clip of the data set as the trainer would (in the background) and show the data report."""
        if self._preview_cancel is not None:
            self._preview_cancel.set()
        data = self.dataset.text()
        if not data or self.options.preset() == QUICK:
            return
        cancel = threading.Event()
        self._preview_cancel = cancel
        self.dataset.set_checking()
        summary = self.teacher_summary
        window = summary.window_s if summary is not None and summary.ref == self.teacher.text() else None
        self.jobs.run(preview_data, data, window, cancel, done=lambda result: self._previewed(data, cancel, result))

    def _previewed(self, data: str, cancel: threading.Event, result: JobResult) -> None:
        if cancel.is_set() or self.dataset.text() != data:
            return
        if result.ok:
            self.dataset.set_preview(result.value)
        else:
            self.dataset.set_error(result.error or "")

    # -- a run ----------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self.run_state in BUSY

    def _plan(self) -> RunPlan:
        preset = self.options.preset()
        data = str(self.cache_root / "spoken" / "train") if preset == QUICK else self.dataset.text()
        custom = self.options.custom_values() if preset == CUSTOM else {}
        extra = self.options.extra.text() if preset == CUSTOM else ""
        return plan_run(self.library, self.name.text(), self.teacher.text(), self.student.text(), data, preset,
                        custom, extra, self.default_bundle)

    def start(self) -> None:
        """Start a fresh run with the current setup (asks first when it would replace an adapter)."""
        if self.busy:
            return
        try:
            plan = self._plan()
            _, replaces = output_folder(self.library, plan.name)
        except AuraError as exc:
            self.progress.set_state("failed", f"Cannot start: {exc}")
            return
        if not replaces:
            self._launch(plan)
            return
        box = QMessageBox(QMessageBox.Icon.Question, "Replace the adapter?",
                          f"An adapter named “{plan.name}” exists. Replace it when this run finishes?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.accepted.connect(lambda: self._launch(plan))
        box.open()
        self.last_dialog = box

    def _launch(self, plan: RunPlan) -> None:
        self._run_id += 1
        run_id = self._run_id
        self.plan, self.output, self.finished_fields = plan, None, None
        self.plot.clear()
        self.metrics.clear_metrics()
        self.progress.reset()
        self.append_log(f"—— {plan.name}: {plan.preset} run")
        self._set_state("preparing", f"Preparing “{plan.name}”…")
        what = "speaking the demo requests with espeak-ng" if plan.preset == QUICK else "checking the settings"
        self.progress.busy(what + "…")
        self.jobs.run(prepare_run, plan, self.cache_root, self.default_bundle,
                      done=lambda result: self._prepared(run_id, result))

    def _prepared(self, run_id: int, result: JobResult) -> None:
        if run_id != self._run_id or self.run_state != "preparing":
            return  # stopped (or restarted) meanwhile
        if not result.ok:
            self.plan = None  # nothing ran: there is nothing to resume
            self._set_state("failed", f"Cannot start: {result.error}")
            self.progress.reset()
            return
        self.plan, note = result.value
        if note:
            self.append_log(f"data: {note} ({self.plan.data})")
        self._start_process(resume=False)

    def _start_process(self, resume: bool) -> None:
        assert self.plan is not None
        step = self.trainer.checkpoint_step
        self._set_state("running", f"Resuming “{self.plan.name}” from step {step}" if resume
                        else f"Training “{self.plan.name}”")
        self.progress.busy("starting the trainer…")
        try:
            self.trainer.start(self.plan, resume=resume)
        except AuraError as exc:
            self._set_state("failed", f"Cannot start the trainer: {exc}")

    def pause(self) -> None:
        """Write a checkpoint at the end of the current step and end the process; Resume continues from it."""
        if self.run_state == "running":
            self.trainer.pause()
            self._set_state("pausing", "Pausing: a checkpoint is written at the end of this step…")

    def resume(self) -> None:
        """Continue the last run from its newest checkpoint (or start it again when it has none)."""
        if self.busy or self.plan is None or self.run_state not in RESUMABLE:
            return
        self._start_process(resume=self.trainer.checkpoint_step is not None)

    def stop(self) -> None:
        """End the run with a checkpoint (it can still be resumed)."""
        if self.run_state == "preparing":
            self._run_id += 1
            self._set_state("stopped", "Stopped before the trainer started.")
            self.progress.reset()
        elif self.run_state in ("running", "pausing"):
            self.trainer.stop()
            self._set_state("stopping", "Stopping: a checkpoint is written at the end of this step…")

    # -- the trainer's events -------------------------------------------------------------------

    def _on_event(self, event: TrainerEvent) -> None:
        f = event.fields
        if event.name == "progress" and f.get("stage") == "train":
            self.progress.show_step(f)
            self.plot.add_step(int(f.get("step") or 0), {k: v for k, v in f.items() if k.startswith("loss")})
        elif event.name == "progress":
            self.progress.show_stage(f)
        elif event.name == "eval":
            self.metrics.show_eval(f)
            self.plot.add_eval(int(f.get("step") or 0), f.get("val_loss"))
        elif event.name == "checkpoint":
            self.append_log(f"checkpoint at step {f.get('step')} ({f.get('reason')}): {f.get('path')}")
        elif event.name == "finished":
            self.finished_fields = f
            self.progress.show_summary(f)
        elif event.name == "error":
            self.append_log(f"error: {f.get('message')}")

    def _on_ended(self, ended: TrainerExit) -> None:
        name = self.plan.name if self.plan else ""
        if ended.outcome == "finished":
            self.output = ended.output
            self._set_state("finished", f"Finished: “{name}” is in the adapter library. Use it to talk to it.")
            if self.output:
                self.adapter_written.emit(self.output)
            return
        how = {"paused": "Paused", "stopped": "Stopped", "failed": "Failed",
               "crashed": "The trainer stopped unexpectedly"}[ended.outcome]
        if not ended.resumable:
            then = "Resume starts it again (what was cached is kept)."
        elif ended.outcome in ("paused", "stopped"):
            then = "Resume continues from it."
        else:
            then = f"Resume continues from the checkpoint at step {ended.checkpoint_step}."
        self._set_state(ended.outcome, f"{how}: {ended.message}. {then}")
        self.progress.stage.setText("")
        self.progress.bar.setRange(0, 1)

    def append_log(self, line: str) -> None:
        self.log.appendPlainText(line)

    # -- state ----------------------------------------------------------------------------------

    def _set_state(self, state: str, text: str) -> None:
        was_busy = self.busy
        self.run_state = state
        self.progress.set_state(state, text)
        self._update_buttons()
        if was_busy != self.busy:
            self.busy_changed.emit(self.busy)

    def _update_buttons(self) -> None:
        busy = self.busy
        self.start_button.setEnabled(not busy)
        self.pause_button.setEnabled(self.run_state == "running")
        self.stop_button.setEnabled(self.run_state in ("preparing", "running", "pausing"))
        self.resume_button.setEnabled(not busy and self.plan is not None and self.run_state in RESUMABLE)
        self.use_button.setEnabled(self.run_state == "finished" and bool(self.output))
        for w in (self.teacher, self.student, self.dataset, self.name, self.options):
            w.setEnabled(not busy)

    def _offer_unfinished_run(self) -> None:
        """A run paused when the window closed (or that crashed) can be resumed after a restart."""
        found = unfinished_run(self.library)
        if found is None:
            return
        self.plan, step = found
        self.trainer.plan, self.trainer.checkpoint_step = self.plan, step
        self.run_state = "paused"
        self.progress.set_state("paused", f"“{self.plan.name}” was paused at step {step}. Resume continues it.")

    # -- closing --------------------------------------------------------------------------------

    def confirm_close(self) -> bool:
        """Ask before the window closes during a run; True when it may close (the run is then paused)."""
        if not self.busy:
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "Training in progress", "A training run is in progress.",
                          QMessageBox.StandardButton.Cancel, self)
        box.setObjectName("TrainCloseDialog")
        box.setInformativeText("Quitting pauses it: a checkpoint is written at the end of the current step, "
                               "and Resume in this tab continues it next time.")
        pause = box.addButton("Pause and quit", QMessageBox.ButtonRole.AcceptRole)
        box.setDefaultButton(pause)
        self.last_dialog = box
        box.exec()
        return box.clickedButton() is pause

    def shutdown(self) -> None:
        """The window closes: no new work; a running trainer is paused (checkpoint) and waited for, or killed."""
        self._run_id += 1
        if self._preview_cancel is not None:
            self._preview_cancel.set()
        self.trainer.shutdown()
