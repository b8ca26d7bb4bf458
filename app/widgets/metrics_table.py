"""MetricsTable: the validation metrics of the latest ``eval`` event of a training run."""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem, QWidget

METRIC_LABELS = {  # the trainer's validation metrics (aura_model/train/validation.py) as the tab names them
    "val_loss": "validation loss", "val_cosine": "layer cosine (mean)", "val_kl": "response KL",
    "val_token_accuracy": "token accuracy", "val_agreement": "answer agreement", "val_items": "validation clips",
}


def number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


class MetricsTable(QTableWidget):
    """Two columns, metric and value; the main ones first, then each layer pair's cosine and each loss term."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(0, 2, parent)
        self.setHorizontalHeaderLabels(["validation", "value"])
        self.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.verticalHeader().hide()
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.last: dict[str, Any] = {}  # the latest eval event's fields

    def show_eval(self, fields: dict[str, Any]) -> None:
        self.last = dict(fields)
        values = {k: v for k, v in fields.items() if k.startswith("val_") and v is not None}
        order = [k for k in METRIC_LABELS if k in values] + sorted(k for k in values if k not in METRIC_LABELS)
        self.setRowCount(len(order))
        self.setHorizontalHeaderLabels([f"validation at step {fields.get('step')}", "value"])
        for i, k in enumerate(order):
            self.setItem(i, 0, QTableWidgetItem(METRIC_LABELS.get(k, k)))
            self.setItem(i, 1, QTableWidgetItem(number(values[k])))

    def clear_metrics(self) -> None:
        self.last = {}
        self.setRowCount(0)
        self.setHorizontalHeaderLabels(["validation", "value"])
