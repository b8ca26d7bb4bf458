"""Progress reporting: a tqdm bar in a terminal, or JSON lines on stdout for the GUI.

JSON mode prints exactly one JSON object per line on the real stdout and flushes it; while the
trainer runs, ``sys.stdout`` is pointed at stderr so that nothing else (a library's print) can
break the stream. Events (``event`` field):

``progress``   ``stage`` ("validate", "transcripts", "teacher", "responses": filling the caches, with
               ``done``/``total`` clips and loss null; "train": one line every ``train.log_every``
               optimizer steps), ``step``, ``total_steps``, ``epoch`` (float, epochs done), ``loss``
               (total), ``loss_<term>`` for each active term (layer, kl, ce), ``lr``,
               ``samples_per_s``, ``eta_s``, ``elapsed_s``
``eval``       ``step``, ``epoch`` and the validation metrics: ``val_loss``, ``val_loss_<term>``,
               ``val_cosine`` (mean over layer pairs), ``val_cosine_s<S>_t<T>`` per pair, ``val_kl``,
               ``val_token_accuracy``, ``val_agreement``, ``val_items``
``checkpoint`` ``step``, ``epoch``, ``path``, ``reason`` ("interval" | "SIGINT" | "SIGTERM")
``finished``   ``step``, ``epoch``, ``loss``, ``output`` (the bundle), ``metrics``, ``data`` (the data report
               with the skipped items), ``samples_per_s``, ``elapsed_s``, ``interrupted`` (null or the signal)
``error``      ``message`` (one line), ``step`` when training had started
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from typing import Any, TextIO


def _clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, tensors/numpy scalars -> float."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        try:
            value = value.item()
        except (ValueError, RuntimeError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class Reporter:
    """Receives the trainer's events. The base class ignores them (used on non-main processes)."""

    def event(self, name: str, **fields: Any) -> None:
        pass

    def message(self, text: str) -> None:
        """A human note (notices, the data report); never on stdout in JSON mode."""

    def close(self) -> None:
        pass

    @contextlib.contextmanager
    def session(self):
        yield self


class ListReporter(Reporter):
    """Keeps every event in memory (tests, the benchmark)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.messages: list[str] = []

    def event(self, name: str, **fields: Any) -> None:
        self.events.append({"event": name, **_clean(fields)})

    def message(self, text: str) -> None:
        self.messages.append(text)

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == name]


class JsonReporter(Reporter):
    """One JSON object per line on the real stdout, flushed at once."""

    def __init__(self, stream: TextIO | None = None, err: TextIO | None = None):
        self.stream = stream or sys.stdout
        self.err = err or sys.stderr
        self.reader_gone = False  # the pipe's reader (the app that started the run) is gone: drop progress

    def event(self, name: str, **fields: Any) -> None:
        line = json.dumps({"event": name, **_clean(fields)}, allow_nan=False) + "\n"
        self._write(self.stream, line)

    def message(self, text: str) -> None:
        self._write(self.err, text + "\n")

    def _write(self, stream: TextIO, text: str) -> None:
        if self.reader_gone:
            return
        try:
            stream.write(text)
            stream.flush()
        except BrokenPipeError:  # training goes on (and writes its checkpoint) without anyone to tell
            self.reader_gone = True

    @contextlib.contextmanager
    def session(self):
        """Route stray prints to stderr while the trainer runs; our events keep the real stdout."""
        real = sys.stdout
        self.stream = real
        sys.stdout = self.err
        try:
            yield self
        finally:
            sys.stdout = real


class TqdmReporter(Reporter):
    """A progress bar on stderr for people at a terminal; eval/checkpoint lines printed above it."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream or sys.stderr
        self.bar = None
        self.stage = ""

    def _bar(self, stage: str, total: int):
        from tqdm.auto import tqdm

        if self.bar is None or self.stage != stage:
            if self.bar is not None:
                self.bar.close()
            label = "train" if stage == "train" else f"prepare: {stage}"
            self.bar = tqdm(total=total, desc=label, file=self.stream, dynamic_ncols=True, leave=stage == "train")
            self.stage = stage
        return self.bar

    def event(self, name: str, **fields: Any) -> None:
        if name == "progress":
            stage = fields.get("stage", "train")
            if stage == "train":
                bar = self._bar(stage, int(fields.get("total_steps") or 0))
                bar.n = int(fields.get("step", 0))
                post = {"loss": f"{fields['loss']:.4f}" if fields.get("loss") is not None else "-"}
                for k, v in fields.items():
                    if k.startswith("loss_") and v is not None:
                        post[k[5:]] = f"{v:.3f}"
                post["lr"] = f"{fields.get('lr', 0):.2e}"
                bar.set_postfix(post, refresh=False)
                bar.refresh()
            else:
                bar = self._bar(stage, int(fields.get("total") or 0))
                bar.n = int(fields.get("done", 0))
                bar.refresh()
        elif name == "eval":
            parts = [f"{k}={v:.4f}" for k, v in fields.items() if k.startswith("val_") and isinstance(v, float)]
            self.message(f"eval @ step {fields.get('step')}: " + " ".join(parts))
        elif name == "checkpoint":
            self.message(f"checkpoint @ step {fields.get('step')}: {fields.get('path')} ({fields.get('reason')})")
        elif name == "finished":
            self.close()
            self.message(f"finished at step {fields.get('step')}: bundle {fields.get('output')}")
        elif name == "error":
            self.close()

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
