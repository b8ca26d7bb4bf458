"""StatusBar: compute device, model + adapter, memory in use, last latency; a progress bar while loading."""

from __future__ import annotations

from PySide6.QtWidgets import QFrame, QLabel, QProgressBar, QStatusBar, QWidget


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


class StatusBar(QStatusBar):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StatusBar")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setMaximumWidth(160)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.stage = QLabel()
        self.stage.hide()
        self.device = QLabel("no model")
        self.model = QLabel()
        self.memory = QLabel()
        self.latency = QLabel("latency —")
        self.device.setToolTip("Where the model runs")
        self.model.setToolTip("Base LLM + AuRA adapter")
        self.memory.setToolTip("Memory in use: VRAM on a CUDA GPU, this process's RAM otherwise")
        self.latency.setToolTip("Last turn: end of speech (or send) to the first token of the answer")
        self.addWidget(self.stage)
        self.addWidget(self.progress)
        for i, label in enumerate((self.device, self.model, self.memory, self.latency)):
            if i:
                self.addPermanentWidget(self._separator())
            self.addPermanentWidget(label)

    @staticmethod
    def _separator() -> QFrame:
        line = QFrame()
        line.setFrameShape(QFrame.Shape.VLine)
        line.setFrameShadow(QFrame.Shadow.Plain)
        line.setObjectName("StatusSeparator")
        return line

    def show_progress(self, stage: str, fraction: float) -> None:
        self.stage.setText(stage)
        self.progress.setValue(int(round(fraction * 100)))
        self.stage.show()
        self.progress.show()

    def hide_progress(self) -> None:
        self.stage.hide()
        self.progress.hide()

    def set_model(self, device: str, model: str, adapter: str | None) -> None:
        self.device.setText(device)
        self.model.setText(f"{model} + {adapter}" if adapter else f"{model} (no adapter: text only)")

    def set_no_model(self, reason: str = "no model") -> None:
        self.device.setText(reason)
        self.model.clear()
        self.memory.clear()

    def set_memory(self, kind: str, n_bytes: int) -> None:
        self.memory.setText(f"{kind} {human_bytes(n_bytes)}")

    def set_latency(self, first_token_ms: float | None, detail: str = "") -> None:
        self.latency.setText("latency —" if first_token_ms is None else f"latency {first_token_ms:.0f} ms")
        self.latency.setToolTip(detail or "Last turn: end of speech (or send) to the first token of the answer")
