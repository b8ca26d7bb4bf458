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
    """Items of a JSONL manifest: {"audio": path | "text": str, "answer": str, ["family": str]} per line."""
    path = Path(path)
    if not path.is_file():
        raise AuraError(f"manifest {str(path)!r} not found")
    items = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AuraError(f"{path}:{n}: not valid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or "answer" not in row or not ({"audio", "text"} & set(row)):
            raise AuraError(f'{path}:{n}: each line needs "answer" and "audio" or "text"')
        audio = row.get("audio")
        if audio is not None and not Path(audio).is_absolute():
            audio = str(path.parent / audio)
        items.append(Item(str(row["answer"]), audio, row.get("text"), row.get("family")))
    if not items:
        raise AuraError(f"manifest {str(path)!r} has no items")
    return items


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
    results = []
    for i, item in enumerate(items):
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
        result = Result(i, prediction, item.answer, is_correct(prediction, item.answer), first, transcript, item.family)
        results.append(result)
        if on_result:
            on_result(result)
    return summarize(results, mode)


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
