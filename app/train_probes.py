"""What the Train tab shows about its inputs before a run, read with the trainer's own code. Qt-free.

* :func:`probe_teacher` / :func:`probe_student`: a model's type, layers and width (and for the
  student whether it has a chat template), from its config and tokenizer only: no weights load.
  A hub id must be a local folder or in the Hugging Face cache when offline; online its config is
  fetched with a short timeout. Either way the answer is a message, never a hang.
* :func:`preview_data`: the trainer's own listing (``data.open_source`` / ``list_items``) and clip
  check (``prepare.validate_items``): how many clips, their total length, how many have
  transcripts, and the data report's skipped files with the reason.

Everything here imports the trainer (and torch): callers run it in a background thread
(``app.workers.jobs``), never on the Qt main thread.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aura_model.errors import AuraError

HUB_TIMEOUT_S = 8.0  # longest wait for the hub when a model is not cached (then a message, not a hang)


# ---------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSummary:
    """What the Train tab shows about a teacher or student."""

    ref: str  # the hub id or folder as given
    role: str  # "teacher" | "student"
    model_type: str  # e.g. "whisper", "llama"
    layers: int  # encoder layers (teacher) or decoder layers (student)
    width: int  # hidden size
    chat_template: bool | None = None  # student: its tokenizer has a chat template (training needs one)
    notes: tuple[str, ...] = ()  # e.g. "transcribes", "clips up to 30 s"
    window_s: float | None = None  # teacher: the longest clip it takes (Whisper's window); None = any

    @property
    def usable(self) -> bool:
        return self.role == "teacher" or bool(self.chat_template)

    def describe(self) -> str:
        parts = [self.model_type, f"{self.layers} layers", f"width {self.width}"]
        if self.role == "student":
            parts.append("chat template" if self.chat_template else "NO chat template: it cannot be trained")
        return " · ".join(parts + list(self.notes))


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        return True


def _looks_local(ref: str) -> bool:
    return ref.startswith(("/", ".", "~")) or "\\" in ref or ref.count("/") > 1 or (len(ref) > 1 and ref[1] == ":")


def ensure_available(ref: str, what: str) -> None:
    """A local folder, a hub id in the local cache, or (online) a hub id whose config can be fetched now."""
    ref = ref.strip()
    if not ref:
        raise AuraError(f"no {what} given")
    if Path(ref).expanduser().is_dir():
        return
    if _looks_local(ref):
        raise AuraError(f"{what} folder {ref!r} does not exist")
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(ref, "config.json"), str):
        return
    if _offline():
        raise AuraError(f"{what} {ref!r} is not a local folder and not in the local Hugging Face cache, and the hub "
                        "is offline (HF_HUB_OFFLINE): download it once with a network connection, or choose a folder")
    try:
        hf_hub_download(ref, "config.json", etag_timeout=HUB_TIMEOUT_S)
    except Exception as exc:  # no network, unknown id, gated repository
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise AuraError(f"{what} {ref!r} is not in the local Hugging Face cache and the hub did not give it "
                        f"({first}); check the id and the network, or choose a local folder") from exc


def probe_teacher(ref: str) -> ModelSummary:
    """The teacher as the trainer sees it (``teacher.inspect_teacher``: config, feature extractor, tokenizer)."""
    from aura_model.train.teacher import inspect_teacher

    ensure_available(ref, "teacher")
    info = inspect_teacher(ref.strip())
    window = info.window_samples / info.sample_rate if info.window_samples else None
    notes = (["transcribes"] if info.can_transcribe else []) + ([f"clips up to {window:g} s"] if window else [])
    return ModelSummary(ref, "teacher", info.model_type, info.num_layers, info.width, None, tuple(notes), window)


def probe_student(ref: str) -> ModelSummary:
    """The student's config and tokenizer (``bundle.load_llm_config`` / ``load_tokenizer``); no weights."""
    from aura_model.bundle import fingerprint, load_llm_config, load_tokenizer

    ensure_available(ref, "student LLM")
    fp = fingerprint(load_llm_config(ref.strip()))
    tokenizer = load_tokenizer(ref.strip())
    return ModelSummary(ref, "student", str(fp["model_type"]), int(fp["num_hidden_layers"]), int(fp["hidden_size"]),
                        bool(getattr(tokenizer, "chat_template", None)))


# ---------------------------------------------------------------------- data
@dataclass(frozen=True)
class DataPreview:
    """The trainer's data report for a data set, before any run."""

    source: str  # the folder or dataset name as given
    kind: str  # "folder" | "hf"
    found: int  # clips listed
    usable: int  # clips that decode and fit the limits
    seconds: float  # total length of the usable clips
    with_transcript: int  # usable clips with a transcript (the others need a teacher that transcribes)
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"item", "reason"}]: the data report's lines

    def describe(self) -> str:
        minutes = self.seconds / 60
        return (f"{self.usable} clips · {minutes:.1f} min · {self.with_transcript} with transcripts · "
                f"{len(self.skipped)} could not be used")


def preview_data(data: str, window_s: float | None = None, cancel: threading.Event | None = None) -> DataPreview:
    """List and decode every clip as the trainer's first stage does; ``cancel`` set stops it (AuraError)."""
    from aura_model.config import AudioConfig
    from aura_model.train.config import DatasetConfig
    from aura_model.train.data import DataReport, list_items, open_source
    from aura_model.train.prepare import Ranks, StopRequested, validate_items
    from aura_model.train.progress import Reporter

    data = data.strip()
    source = open_source(data, DatasetConfig())
    report = DataReport(data, source.kind)
    items = list_items(source, DatasetConfig(), report)
    audio = AudioConfig()
    stop = (lambda: "cancelled" if cancel.is_set() else None) if cancel is not None else (lambda: None)
    try:
        good = validate_items(items, source, audio, report, Reporter(), Ranks(stop=stop), window_s)
    except StopRequested as exc:
        raise AuraError("the data preview was cancelled") from exc
    seconds = sum(it.num_samples for it in good) / audio.sample_rate
    with_text = sum(1 for it in good if it.transcript)
    return DataPreview(data, source.kind, report.found, len(good), seconds, with_text, list(report.skipped))
