"""Python's cyclic garbage collector, run on the Qt main thread only.

CPython collects in whichever thread allocates when a threshold is crossed. When that is a worker
thread (the model worker, the capture thread) and the garbage holds Qt objects, their destructors run
off the GUI thread, which Qt does not allow and which can crash the process: the test suite once died
with a segfault while "Garbage-collecting" inside the model worker. So while a collector is active,
automatic collection is off and a main-thread timer collects whenever gc's own thresholds are passed.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer


class MainThreadGarbageCollector(QObject):
    """Create it on the main thread (e.g. with the QApplication as parent); ``stop()`` restores gc."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        self._thresholds = gc.get_threshold()
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.check)
        self._timer.start(interval_ms)

    def check(self) -> int | None:
        """Collect the oldest generation whose count passed its threshold (as gc would); returns it, or None."""
        counts = gc.get_count()
        for generation in (2, 1, 0):
            if counts[generation] > self._thresholds[generation]:
                gc.collect(generation)
                return generation
        return None

    def stop(self) -> None:
        """Stop the timer, collect once here, and give automatic collection back."""
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()
