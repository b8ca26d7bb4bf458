"""On-disk caches of everything the trainer computes once per clip and reuses across epochs and runs.

Layout under ``cache_dir`` (one file per entry, written atomically: temp file + rename, so a
killed run never leaves half an entry and parallel processes never see one)::

    teacher/ab/<key>.safetensors    fp16 states of one teacher layer of one clip, the tensor "layer.<t>" (T, D),
                                    already aligned to 50 Hz and pooled by `stack` (T = the clip's audio tokens);
                                    one entry per layer, so a layer map that reuses cached layers recomputes none
    transcripts/ab/<key>.json       {"text": ...} written by the teacher for a clip without a transcript
    responses/ab/<key>.json         {"ids": [...], "text": ...} the base LLM's greedy answer to the transcript

Keys are sha256 digests of everything the entry depends on (see the ``*_key`` functions), so
a different teacher, teacher layer, stack, audio front-end or base model never reads a stale entry.
A corrupt entry is treated as missing and rewritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

CACHE_VERSION = 1  # bump when the meaning of an entry changes


def sha256_text(*parts: Any) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\x00")
    return h.hexdigest()


def hash_waveform(wave: np.ndarray, sample_rate: int) -> str:
    """Identity of a clip: the prepared float32 waveform itself (container and file name do not matter)."""
    h = hashlib.sha256()
    h.update(f"{sample_rate}:".encode())
    h.update(np.ascontiguousarray(wave, dtype=np.float32).tobytes())
    return h.hexdigest()


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then rename over ``path``; the temp file is removed on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def teacher_key(audio_hash: str, teacher_fp: str, layer: int, alignment: dict[str, Any]) -> str:
    """Key of one teacher layer's states of one clip."""
    return sha256_text("teacher-layer", CACHE_VERSION, audio_hash, teacher_fp, int(layer), alignment)


def teacher_keys(audio_hash: str, teacher_fp: str, layers: list[int], alignment: dict[str, Any]) -> dict[int, str]:
    """layer -> teacher_key, for each of ``layers`` (repeats collapse)."""
    return {t: teacher_key(audio_hash, teacher_fp, t, alignment) for t in sorted(set(layers))}


def transcript_key(audio_hash: str, teacher_fp: str, settings: dict[str, Any]) -> str:
    return sha256_text("transcript", CACHE_VERSION, audio_hash, teacher_fp, settings)


def response_key(base_fp: str, prompt: dict[str, Any], transcript: str, max_tokens: int) -> str:
    return sha256_text("response", CACHE_VERSION, base_fp, prompt, transcript, max_tokens)


class Cache:
    """The three caches under one folder; counts hits and misses for the training summary."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.stats = {"teacher_hits": 0, "teacher_misses": 0, "transcript_hits": 0, "transcript_misses": 0,
                      "response_hits": 0, "response_misses": 0}

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / key[:2] / f"{key}{suffix}"

    # ------------------------------------------------------------------ teacher states
    def teacher_path(self, key: str) -> Path:
        return self._path("teacher", key, ".safetensors")

    def has_teacher(self, key: str) -> bool:
        return self.teacher_path(key).is_file()

    def load_teacher(self, key: str) -> dict[int, torch.Tensor] | None:
        """The entry's layer -> (T, D) fp16, or None when missing or corrupt."""
        from safetensors.torch import load_file

        path = self.teacher_path(key)
        if not path.is_file():
            return None
        try:
            tensors = load_file(str(path))
            return {int(name.split(".", 1)[1]): t for name, t in tensors.items()}
        except Exception:  # a corrupt entry (e.g. a disk error) is recomputed, never trusted
            return None

    def load_teacher_layers(self, keys: dict[int, str]) -> dict[int, torch.Tensor] | None:
        """layer -> (T, D) fp16 for every layer of ``keys`` (layer -> teacher_key), or None when any is missing,
        corrupt or holds another layer."""
        out = {}
        for t, key in keys.items():
            entry = self.load_teacher(key)
            if entry is None or t not in entry:
                return None
            out[t] = entry[t]
        return out

    def save_teacher(self, key: str, states: dict[int, torch.Tensor]) -> None:
        from safetensors.torch import save_file

        tensors = {f"layer.{t}": s.detach().to("cpu", torch.float16).contiguous() for t, s in states.items()}
        atomic_write(self.teacher_path(key), lambda tmp: save_file(tensors, tmp))

    # ------------------------------------------------------------------ JSON entries
    def _load_json(self, kind: str, key: str) -> dict[str, Any] | None:
        path = self._path(kind, key, ".json")
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def _save_json(self, kind: str, key: str, data: dict[str, Any]) -> None:
        atomic_write_text(self._path(kind, key, ".json"), json.dumps(data, ensure_ascii=False))

    def load_transcript(self, key: str) -> str | None:
        data = self._load_json("transcripts", key)
        return data.get("text") if data and isinstance(data.get("text"), str) else None

    def save_transcript(self, key: str, text: str) -> None:
        self._save_json("transcripts", key, {"text": text})

    def load_response(self, key: str) -> list[int] | None:
        data = self._load_json("responses", key)
        ids = data.get("ids") if data else None
        if isinstance(ids, list) and all(isinstance(i, int) for i in ids) and ids:
            return ids
        return None

    def save_response(self, key: str, ids: list[int], text: str) -> None:
        self._save_json("responses", key, {"ids": [int(i) for i in ids], "text": text})
