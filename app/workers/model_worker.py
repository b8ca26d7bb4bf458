"""The model worker: one long-lived QObject in its own QThread that holds the Assistant.

The GUI never touches the model: it sends a :class:`LoadRequest` or an
:class:`AskRequest` (queued slot calls, executed one after another on the worker
thread) and gets signals back. Stopping cannot be a queued slot call, since the
worker is busy generating when it is wanted: each AskRequest carries its own
``threading.Event`` that the GUI sets, and generation ends between two tokens.

Lifetime: :class:`ModelThread` starts the thread; ``shutdown()`` quits it and
waits, and the thread's ``finished`` deletes the worker (``finished -> quit ->
deleteLater``).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from app.listening.pipeline import samples_for_model
from aura_model.config import GenerationSettings, RuntimeConfig
from aura_model.errors import AuraError

log = logging.getLogger(__name__)

WARMUP_TEXT = "hello"  # a one-token answer to this after loading, so the first real turn is not the slow one


# ---------------------------------------------------------------------- payloads
@dataclass(frozen=True)
class LoadRequest:
    """What to load; replaces the model loaded before."""

    bundle: str | None  # AuRA bundle folder; None = a plain base model (typed chat only)
    base: str | None  # base LLM override (hub id or folder); None = the bundle's own
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # device and quantization
    warmup: bool = True  # decode one token after loading so the first turn's latency is representative


@dataclass(frozen=True)
class LoadProgress:
    """Payload of ``loading``: a step of loading, for the progress bar."""

    stage: str  # what is happening, e.g. "loading the model"
    fraction: float  # 0..1 of the way


@dataclass(frozen=True)
class ModelInfo:
    """Payload of ``loaded``: what the status bar shows about the loaded model."""

    device: str  # GPU name or "CPU (N cores)"
    model: str  # the base LLM's name (bundle's recorded id, or the folder/hub id)
    adapter: str | None  # the bundle's folder name; None for a plain base model
    quantization: str  # 4bit | 8bit | none
    dtype: str  # compute dtype, e.g. "float32"
    memory_bytes: int  # VRAM allocated on CUDA, resident RAM of the process otherwise
    memory_kind: str  # "VRAM" or "RAM"
    notices: tuple[str, ...]  # fallbacks the user should hear about (e.g. no CUDA -> CPU)
    can_hear: bool  # False for a plain base model: it reads text only
    load_s: float  # seconds the load took
    cuda_devices: int = 0  # CUDA GPUs on this machine (for the Settings device list)


@dataclass
class AskRequest:
    """One turn for the model (the argument of ``ask``)."""

    turn: int  # the conversation turn the answer belongs to (echoed in every reply signal)
    audio: str | np.ndarray | None = None  # an audio file path, or float32 mono samples at sample_rate
    text: str | None = None  # typed text (alone, or an instruction with the audio)
    sample_rate: int = 16000  # Hz of ``audio`` when it is samples
    gen: GenerationSettings = field(default_factory=GenerationSettings)
    history: tuple[dict[str, Any], ...] = ()  # earlier {"role", "content"} messages sent along
    system_prompt: str | None = None  # None = the bundle's own
    origin: float = field(default_factory=time.perf_counter)  # perf_counter() at end of speech (or at send): latency is counted from here
    stop: threading.Event = field(default_factory=threading.Event)  # set by the GUI to end generation between tokens


@dataclass(frozen=True)
class TokenPiece:
    """Payload of ``token``: the next piece of an answer's text."""

    turn: int  # AskRequest.turn
    text: str  # decoded text; the pieces of a turn concatenate to its answer


@dataclass(frozen=True)
class AnswerDone:
    """Payload of ``answer_done``: an answer is complete (or was stopped)."""

    turn: int  # AskRequest.turn
    text: str  # the whole answer
    first_token_ms: float | None  # AskRequest.origin -> first piece (end of speech to first token); None if empty
    model_first_token_ms: float | None  # worker start of the request -> first piece (features, embedding, prefill)
    total_ms: float  # worker start of the request -> done
    pieces: int  # text pieces streamed
    stopped: bool  # ended by the stop event before the model finished
    memory_bytes: int  # memory in use after the answer (see ModelInfo.memory_bytes)


@dataclass(frozen=True)
class AskFailed:
    """Payload of ``failed``: a turn could not be answered."""

    turn: int  # AskRequest.turn
    message: str  # the reason, for the user


def _describe(exc: BaseException) -> str:
    if isinstance(exc, AuraError):
        return str(exc)
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"unexpected error: {type(exc).__name__}: {first}"


# ---------------------------------------------------------------------- the worker
class ModelWorker(QObject):
    """Holds the Assistant; every slot runs on the worker thread."""

    loading = Signal(object)  # LoadProgress
    loaded = Signal(object)  # ModelInfo
    load_failed = Signal(str)  # why loading failed (the app keeps running without a model)
    token = Signal(object)  # TokenPiece
    answer_done = Signal(object)  # AnswerDone
    failed = Signal(object)  # AskFailed

    def __init__(self) -> None:
        super().__init__()
        self.assistant = None  # aura_model.assistant.Assistant once loaded

    @Slot(object)
    def load(self, request: LoadRequest) -> None:
        t0 = time.perf_counter()
        try:
            self.loading.emit(LoadProgress("releasing the previous model", 0.05))
            self._release()
            self.loading.emit(LoadProgress("importing the model libraries", 0.1))
            from aura_model.assistant import Assistant

            self.loading.emit(LoadProgress("loading the model", 0.3))
            assistant = Assistant.open(request.bundle, request.base, request.runtime)
            if request.warmup:
                self.loading.emit(LoadProgress("warming up", 0.85))
                self._warm_up(assistant)
            self.assistant = assistant
            self.loading.emit(LoadProgress("ready", 1.0))
            self.loaded.emit(self._info(assistant, time.perf_counter() - t0))
        except Exception as exc:  # AuraError, or a library failure: reported, never fatal
            log.warning("loading failed: %s", traceback.format_exc())
            self.assistant = None
            self.load_failed.emit(_describe(exc))

    @Slot(object)
    def ask(self, request: AskRequest) -> None:
        started = time.perf_counter()
        assistant = self.assistant
        if assistant is None:
            self.failed.emit(AskFailed(request.turn, "no model is loaded (choose one in Settings)"))
            return
        text, first = [], None
        try:
            audio = self._audio_for(assistant, request)
            for piece in assistant.stream(audio, request.text, request.gen, request.stop, request.history,
                                          request.system_prompt):
                if first is None:
                    first = time.perf_counter()
                text.append(piece)
                self.token.emit(TokenPiece(request.turn, piece))
        except Exception as exc:
            log.warning("answering failed: %s", traceback.format_exc())
            self.failed.emit(AskFailed(request.turn, _describe(exc)))
            return
        done = time.perf_counter()
        self.answer_done.emit(AnswerDone(
            turn=request.turn,
            text="".join(text),
            first_token_ms=None if first is None else (first - request.origin) * 1000,
            model_first_token_ms=None if first is None else (first - started) * 1000,
            total_ms=(done - started) * 1000,
            pieces=len(text),
            stopped=request.stop.is_set(),
            memory_bytes=self._memory(assistant),
        ))

    # -- helpers ------------------------------------------------------------------------------

    @staticmethod
    def _audio_for(assistant, request: AskRequest):
        """File paths go as they are; samples are resampled when the model hears another rate."""
        if isinstance(request.audio, np.ndarray):
            return samples_for_model(assistant, request.audio, request.sample_rate)
        return request.audio

    @staticmethod
    def _warm_up(assistant) -> None:
        try:
            for _ in assistant.stream(text=WARMUP_TEXT, gen=GenerationSettings(max_new_tokens=1)):
                pass
        except Exception:  # a warm-up failure is not a load failure; the first real turn will tell
            log.warning("warm-up failed: %s", traceback.format_exc())

    @staticmethod
    def _memory(assistant) -> int:
        from aura_model import backends

        return backends.memory_in_use(assistant.loaded.resolved.device)

    def _info(self, assistant, load_s: float) -> ModelInfo:
        d = assistant.describe()
        loaded = assistant.loaded
        model = (loaded.meta.get("base") or {}).get("id") or Path(str(loaded.base_ref)).name or str(loaded.base_ref)
        return ModelInfo(
            device=d["device"],
            model=str(model),
            adapter=Path(d["bundle"]).name if d["bundle"] else None,
            quantization=d["quantization"],
            dtype=d["dtype"],
            memory_bytes=int(d["memory_bytes"]),
            memory_kind="VRAM" if loaded.resolved.device.type == "cuda" else "RAM",
            notices=tuple(d["notices"]),
            can_hear=assistant.can_hear,
            load_s=load_s,
            cuda_devices=self._cuda_devices(),
        )

    @staticmethod
    def _cuda_devices() -> int:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def _release(self) -> None:
        if self.assistant is None:
            return
        device = self.assistant.loaded.resolved.device
        self.assistant = None
        gc.collect()
        if device.type == "cuda":
            import torch

            torch.cuda.empty_cache()


class ModelThread(QObject):
    """Starts the worker's thread and forwards requests to it as queued calls."""

    _load = Signal(object)  # LoadRequest, to ModelWorker.load on the worker thread
    _ask = Signal(object)  # AskRequest, to ModelWorker.ask on the worker thread

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.worker = ModelWorker()
        self._thread: QThread | None = QThread()
        self._thread.setObjectName("aura-model")
        self.worker.moveToThread(self._thread)
        self._thread.finished.connect(self.worker.deleteLater)
        self._load.connect(self.worker.load)
        self._ask.connect(self.worker.ask)
        self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def load(self, request: LoadRequest) -> None:
        self._load.emit(request)

    def ask(self, request: AskRequest) -> None:
        self._ask.emit(request)

    def shutdown(self) -> None:
        """Quit the thread once the request in progress ends (stop it first), and wait for it."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        thread.quit()
        thread.wait()
