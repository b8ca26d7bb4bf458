"""RunProgress: where a training run stands — its state, its stage, a progress bar with rate and ETA,
and at the end its evaluation summary."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from .metrics_table import METRIC_LABELS, number
from .theme import ERROR, OK, WARN

STAGES = {  # the trainer's preparation stages (aura_model/train/progress.py) as the tab names them
    "validate": "reading the clips",
    "transcripts": "transcripts",
    "teacher": "teacher cache",
    "responses": "base LLM answers",
}
STATE_COLORS = {"finished": OK, "failed": ERROR, "crashed": ERROR, "paused": WARN, "stopped": WARN}


def duration(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s', or '–'."""
    if seconds is None:
        return "–"
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


class RunProgress(QWidget):
    """State line, stage, progress bar, rate/ETA line, end-of-run summary."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = QLabel("No run yet.")
        self.state.setObjectName("RunState")
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.stage = QLabel("")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.detail = QLabel("")
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in (self.state, self.stage, self.bar, self.detail, self.summary):
            layout.addWidget(w)

    def set_state(self, state: str, text: str) -> None:
        """The run's state in words ("Training", "Paused at step 40 …", "Failed: …")."""
        color = STATE_COLORS.get(state)
        self.state.setStyleSheet(f"color: {color}; font-weight: 600;" if color else "font-weight: 600;")
        self.state.setText(text)

    def reset(self) -> None:
        self.stage.setText("")
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.detail.setText("")
        self.summary.hide()

    def busy(self, text: str) -> None:
        """A step without counts (speaking the demo requests, starting the trainer): a moving bar."""
        self.stage.setText(text)
        self.bar.setRange(0, 0)

    def show_stage(self, fields: dict[str, Any]) -> None:
        """A preparation ``progress`` event: stage, done/total clips, rate, ETA."""
        done, total = int(fields.get("done") or 0), int(fields.get("total") or 0)
        self.stage.setText(f"Preparing: {STAGES.get(fields.get('stage'), fields.get('stage'))} {done}/{total}")
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(done)
        self.detail.setText(self._rate(fields, "clips/s"))

    def show_step(self, fields: dict[str, Any]) -> None:
        """A training ``progress`` event: step/total, loss, samples/s, ETA."""
        step, total = int(fields.get("step") or 0), int(fields.get("total_steps") or 0)
        loss = fields.get("loss")
        self.stage.setText(f"Training: step {step}/{total}" + (f" · loss {loss:.4f}" if loss is not None else ""))
        self.bar.setRange(0, max(1, total))
        self.bar.setValue(step)
        epoch = fields.get("epoch")
        self.detail.setText(self._rate(fields, "samples/s") + (f" · epoch {epoch:.2f}" if epoch is not None else ""))

    @staticmethod
    def _rate(fields: dict[str, Any], unit: str) -> str:
        rate = fields.get("samples_per_s")
        rate_text = f"{rate:.1f} {unit}" if rate else f"– {unit}"
        return f"{rate_text} · ETA {duration(fields.get('eta_s'))} · elapsed {duration(fields.get('elapsed_s'))}"

    def show_summary(self, fields: dict[str, Any]) -> None:
        """The ``finished`` event: the evaluation summary of the run."""
        metrics = fields.get("metrics") or {}
        data = fields.get("data") or {}
        lines = [f"<b>Finished</b> after {fields.get('step')} steps, {duration(fields.get('elapsed_s'))} of training"
                 + (f" at {fields['samples_per_s']:.1f} samples/s" if fields.get("samples_per_s") else "") + "."]
        if data:
            lines.append(f"Data: {data.get('n_train', 0)} training and {data.get('n_val', 0)} validation clips; "
                         f"{data.get('n_skipped', 0)} could not be used.")
        shown = [f"{METRIC_LABELS.get(k, k)} {number(metrics[k])}" for k in METRIC_LABELS
                 if k in metrics and metrics[k] is not None]
        lines.append("Evaluation: " + (", ".join(shown) if shown else "no validation clips"))
        if fields.get("loss") is not None:
            lines.append(f"Final training loss {fields['loss']:.4f}.")
        self.summary.setText("<br>".join(lines))
        self.summary.show()
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
