"""Background jobs: short library calls (reading configs, listing and decoding clips, archives) off the UI thread.

The Train and Adapters tabs ask questions whose answers take from milliseconds to a minute and
import the trainer (torch) on first use: what a teacher or student looks like, what a data set
holds, what the library holds, an import or export. ``Jobs.run(fn, *args, done=callback)`` runs
``fn`` on a small thread pool; ``callback(JobResult)`` is then called on the Qt main thread (a
queued signal). Results are plain dataclasses; no Qt object is made or dropped in a pool thread.

``shutdown()`` stops taking jobs and drops the results of those still running (a hub request or
a preview may take a while); the pool's threads end when their call returns.
"""

from __future__ import annotations

import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QObject, Qt, Signal, Slot

from aura_model.errors import AuraError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobResult:
    """Payload of a job's callback: what the call returned, or why it failed."""

    value: Any  # what the function returned (None when it failed)
    error: str | None  # one line for the user when it failed (an AuraError's message, or the exception's)

    @property
    def ok(self) -> bool:
        return self.error is None


def describe_error(exc: BaseException) -> str:
    if isinstance(exc, AuraError):
        return " ".join(str(exc).split())
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


class Jobs(QObject):
    """A few worker threads for library calls; results come back on the main thread."""

    _finished = Signal(object)  # (callback, JobResult), emitted from a pool thread, delivered on the main thread

    def __init__(self, parent: QObject | None = None, workers: int = 2) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="aura-job")
        self._closed = threading.Event()
        self._finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def run(self, fn: Callable[..., Any], *args: Any, done: Callable[[JobResult], None] | None = None) -> None:
        """Call ``fn(*args)`` on a pool thread; ``done(JobResult)`` follows on the main thread."""
        if self._closed.is_set():
            return
        self._pool.submit(self._call, fn, args, done)

    def _call(self, fn: Callable[..., Any], args: tuple, done: Callable[[JobResult], None] | None) -> None:
        try:
            result = JobResult(fn(*args), None)
        except Exception as exc:  # reported to the caller, never fatal
            if not isinstance(exc, AuraError):
                log.warning("background job %s failed: %s", getattr(fn, "__name__", fn), traceback.format_exc())
            result = JobResult(None, describe_error(exc))
        if not self._closed.is_set():
            try:
                self._finished.emit((done, result))
            except RuntimeError:  # the window (and this object) went away while the job ran
                pass

    @Slot(object)
    def _deliver(self, payload: tuple) -> None:
        done, result = payload
        if done is not None and not self._closed.is_set():
            done(result)

    def shutdown(self) -> None:
        """No new jobs; running ones finish on their own and their results are dropped."""
        self._closed.set()
        self._pool.shutdown(wait=False, cancel_futures=True)
