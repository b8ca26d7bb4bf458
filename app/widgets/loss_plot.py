"""LossPlot: live training-loss curves, one per loss term, and the validation loss as points (pyqtgraph).

Points arrive with every ``progress`` event; the curves are redrawn at most every
``REDRAW_MS``, so a fast trainer cannot flood the window. A resumed run continues the same
curves: its first step follows its checkpoint, and the points of steps the interrupted run made
after that checkpoint (which the resumed run makes again) are dropped first.

pyqtgraph is imported when the plot is first shown, not when the window starts.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

REDRAW_MS = 150
FLOOR = 1e-6  # losses are >= 0; the log axis needs them > 0
COLORS = ("#3e82f7", "#e5a50a", "#2eb872", "#a05ee0", "#e5484d", "#14a3b8", "#8d6e63")
VAL_COLOR = "#e5484d"
LABELS = {"loss": "total", "val_loss": "validation (total)"}


class LossPlot(QWidget):
    """One curve per loss term against the optimizer step; the validation loss as points."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(180)
        self.widget: Any = None  # the pyqtgraph PlotWidget, made when first shown
        self.legend: Any = None
        self.series: dict[str, tuple[list[float], list[float]]] = {}  # name -> (steps, values)
        self._curves: dict[str, Any] = {}  # name -> its pyqtgraph PlotDataItem
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_MS)
        self._timer.timeout.connect(self.redraw)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)

    def showEvent(self, event) -> None:
        if self.widget is None:
            self._make_plot()
            self.redraw()
        super().showEvent(event)

    def _make_plot(self) -> None:
        import pyqtgraph as pg

        palette = self.palette()
        self.widget = pg.PlotWidget(background=palette.color(QPalette.ColorRole.Base))
        item = self.widget.getPlotItem()
        item.setLogMode(x=False, y=True)
        item.showGrid(x=True, y=True, alpha=0.2)
        item.setLabel("bottom", "step")
        item.setLabel("left", "loss")
        item.setClipToView(True)
        item.setDownsampling(auto=True, mode="peak")
        self.legend = item.addLegend(offset=(-10, 10))
        text = palette.color(QPalette.ColorRole.Text)
        for axis in ("bottom", "left"):
            item.getAxis(axis).setTextPen(text)
        self._layout.addWidget(self.widget)

    def add_step(self, step: int, losses: dict[str, float]) -> None:
        """The losses of one training step ({"loss": total, "loss_<term>": ...})."""
        self._rewind(step)
        for name, value in losses.items():
            if value is not None:
                self._append(name, step, value)
        self._schedule()

    def add_eval(self, step: int, val_loss: float | None) -> None:
        if val_loss is not None:
            self._append("val_loss", step, val_loss)
            self._schedule()

    def points(self, name: str) -> list[tuple[float, float]]:
        steps, values = self.series.get(name, ([], []))
        return list(zip(steps, values))

    def clear(self) -> None:
        self.series.clear()
        for curve in self._curves.values():
            self.widget.removeItem(curve)
        if self.legend is not None:
            self.legend.clear()
        self._curves.clear()

    def _rewind(self, step: int) -> None:
        """Drop the points at ``step`` and after: a resumed run makes them again from its checkpoint."""
        total = self.series.get("loss")
        if total is None or not total[0] or total[0][-1] < step:
            return
        for name, (steps, values) in self.series.items():
            keep = sum(1 for s in steps if s < step)
            del steps[keep:], values[keep:]

    def _append(self, name: str, step: int, value: float) -> None:
        steps, values = self.series.setdefault(name, ([], []))
        steps.append(float(step))
        values.append(max(float(value), FLOOR))

    def _schedule(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    def redraw(self) -> None:
        if self.widget is None:
            return  # not shown yet: drawn when it is
        for name, (steps, values) in self.series.items():
            curve = self._curves.get(name) or self._curve(name)
            curve.setData(steps, values)

    def _curve(self, name: str) -> Any:
        import pyqtgraph as pg

        label = LABELS.get(name, name.removeprefix("loss_"))
        if name == "val_loss":
            curve = self.widget.plot([], [], pen=None, symbol="o", symbolSize=7, symbolBrush=VAL_COLOR, name=label)
        else:
            color = COLORS[len([n for n in self._curves if n != "val_loss"]) % len(COLORS)]
            curve = self.widget.plot([], [], pen=pg.mkPen(color, width=2.2 if name == "loss" else 1.4), name=label)
        self._curves[name] = curve
        return curve
