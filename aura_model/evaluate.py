"""Exact-match evaluation over a JSONL manifest, for three systems on one loaded model.

Modes:
- ``aura``: audio -> AudioEmbedding -> LLM + LoRA (no transcript anywhere);
- ``cascade``: audio -> the teacher ASR's transcript -> the same LLM with the adapter disabled;
- ``text``: the true transcript (``"text"`` in the manifest) -> the LLM with the adapter disabled
  (the upper bound: what the LLM does when it reads perfectly).

"Seconds to first token" runs from the moment the whole utterance is in memory (the end of
audio) to the first answer token, so it includes feature extraction, the ASR pass in a
cascade, and the LLM prefill. Reading the file from disk is not counted: a microphone hands
the samples over in memory.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np

from .assistant import Assistant
from .audio import check_regular_file
from .config import GenerationSettings
from .errors import AuraError
from .scoring import is_correct

MODES = ("aura", "cascade", "text")


class Transcriber(Protocol):
    """Speech -> text, for the cascade baseline."""

    def __call__(self, waves: Sequence[np.ndarray]) -> list[str]: ...


@dataclass
class Item:
    answer: str  # the expected answer
    audio: str | None = None  # path, resolved against the manifest's folder
    text: str | None = None  # the true transcript / typed request
    family: str | None = None  # optional grouping for per-family accuracy
    where: str | None = None  # "manifest.jsonl:LINE", for messages


@dataclass
class Result:
    index: int
    prediction: str
    answer: str
    correct: bool
    first_token_s: float | None  # None when the answer was empty
    transcript: str | None = None  # cascade only: what the ASR heard
    family: str | None = None


def read_manifest(path: str | Path) -> list[Item]:
    """Items of a JSONL manifest: {"audio": path | "text": str, "answer": str, ["family": str]} per line.

    Every problem is an AuraError naming ``file:line`` and what is wrong; relative audio paths are
    read against the manifest's folder.
    """
    path = Path(path)
    if not path.is_file():
        raise AuraError(f"manifest {str(path)!r} not found")
    items = []
    for n, line in enumerate(_manifest_lines(path), 1):
        if line.strip():
            items.append(_manifest_item(_json_row(path, n, line), path, n))
    if not items:
        raise AuraError(f"manifest {str(path)!r} has no items")
    return items


def _manifest_lines(path: Path) -> list[str]:
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise AuraError(f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the manifest as UTF-8") from exc


def _json_row(path: Path, n: int, line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise AuraError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
    if not isinstance(row, dict):
        raise AuraError(f"{path}:{n}: each line must be a JSON object, got {type(row).__name__}")
    return row


def _manifest_item(row: dict, path: Path, n: int) -> Item:
    where = f"{path}:{n}"
    if "answer" not in row or not ({"audio", "text"} & set(row)):
        raise AuraError(f'{where}: each line needs "answer" and "audio" or "text"')
    answer = row["answer"]
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise AuraError(f'{where}: "answer" must be text (or a number), got {json.dumps(answer)}')
    for key in ("audio", "text", "family"):
        if key in row and not isinstance(row[key], str):
            raise AuraError(f'{where}: "{key}" must be a string, got {json.dumps(row[key])}')
    audio = row.get("audio")
    if audio is not None and not Path(audio).is_absolute():
        audio = str(path.parent / audio)
    return Item(str(answer), audio, row.get("text"), row.get("family"), where)


def check_audio_files(items: Sequence[Item]) -> None:
    """Every audio file a manifest names is a readable regular file: checked before the model loads."""
    for item in items:
        if item.audio is not None:
            try:
                check_regular_file(Path(item.audio))
            except AuraError as exc:
                raise AuraError(f"{item.where}: {exc}" if item.where else str(exc)) from None


def _first_token_and_text(pieces: Iterator[str], t0: float) -> tuple[str, float | None]:
    first = None
    out = []
    for piece in pieces:
        if first is None:
            first = time.perf_counter() - t0
        out.append(piece)
    return "".join(out), first


def evaluate(assistant: Assistant, items: Sequence[Item], mode: str = "aura",
             transcriber: Transcriber | None = None, gen: GenerationSettings | None = None,
             on_result: Callable[[Result], None] | None = None) -> dict:
    """Run every item; returns the summary. ``on_result`` sees each result as it is done."""
    if mode not in MODES:
        raise AuraError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "cascade" and transcriber is None:
        raise AuraError("cascade mode needs an ASR model: the bundle carries no teacher/ that can transcribe")
    gen = gen or GenerationSettings(max_new_tokens=32)
    results: list[Result] = []
    for i, item in enumerate(items):
        try:
            result = _run_item(assistant, i, item, mode, transcriber, gen)
        except (AuraError, KeyboardInterrupt) as exc:
            where = item.where or f"item {i}"
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
            summary = {**summarize(results, mode), "incomplete": True, "stopped_at": where}
            raise IncompleteEvaluation(f"{where}: {reason} (the summary covers the {len(results)} items before it)",
                                       summary) from exc
        results.append(result)
        if on_result:
            on_result(result)
    return summarize(results, mode)


class IncompleteEvaluation(AuraError):
    """An item failed (or Ctrl-C) midway; ``summary`` scores the items done before it, marked incomplete."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message)
        self.summary = summary


def _run_item(assistant: Assistant, i: int, item: Item, mode: str, transcriber: Transcriber | None,
              gen: GenerationSettings) -> Result:
    transcript = None
    if mode == "text":
        if item.text is None:
            raise AuraError(f'item {i}: text mode needs "text" in the manifest')
        t0 = time.perf_counter()
        with assistant.model.adapter_disabled():
            prediction, first = _first_token_and_text(assistant.stream(text=item.text, gen=gen), t0)
    else:
        if item.audio is None:
            raise AuraError(f'item {i}: {mode} mode needs "audio" in the manifest')
        wave = assistant.waveform(item.audio)  # read before the clock starts: the end of audio
        t0 = time.perf_counter()
        if mode == "aura":
            prediction, first = _first_token_and_text(assistant.stream(audio=wave, gen=gen), t0)
        else:
            transcript = transcriber([wave])[0]
            with assistant.model.adapter_disabled():
                prediction, first = _first_token_and_text(assistant.stream(text=transcript or " ", gen=gen), t0)
    return Result(i, prediction, item.answer, is_correct(prediction, item.answer), first, transcript, item.family)


def summarize(results: Sequence[Result], mode: str) -> dict:
    firsts = [r.first_token_s for r in results if r.first_token_s is not None]
    families: dict[str, list[bool]] = {}
    for r in results:
        if r.family:
            families.setdefault(r.family, []).append(r.correct)
    summary = {
        "summary": True,
        "mode": mode,
        "n": len(results),
        "accuracy": sum(r.correct for r in results) / max(1, len(results)),
        "median_first_token_s": statistics.median(firsts) if firsts else None,
    }
    if families:
        summary["accuracy_by_family"] = {f: sum(v) / len(v) for f, v in sorted(families.items())}
    return summary


def result_line(result: Result) -> str:
    row = {k: v for k, v in asdict(result).items() if v is not None or k == "first_token_s"}
    return json.dumps(row, ensure_ascii=False)
