"""Training data: where clips and transcripts come from, which ones are usable, and the split.

Two kinds of source:

* **A folder of audio files** (recursive; hidden folders skipped). A transcript is, in order
  of preference, a ``.txt`` beside the audio file with the same stem, or a row of a
  ``metadata.csv`` / ``metadata.jsonl`` anywhere in the tree, in the Hugging Face
  ``audiofolder`` convention: a ``file_name`` column relative to the metadata file's folder
  plus a transcript column (``dataset.text_column``, or the first of ``transcription``,
  ``transcript``, ``text``, ``sentence``). Clips without any transcript are allowed (the
  teacher may write one).
* **A Hugging Face ``datasets`` dataset**: a folder written by ``save_to_disk``, a folder
  of data files ``load_dataset`` reads (parquet, csv, json, ...), or a hub name. The audio
  column is read undecoded (``Audio(decode=False)``) and decoded here with soundfile, so
  no ffmpeg/torchcodec is needed; a column of ``{"array", "sampling_rate"}`` dicts works too.

Nothing aborts on one bad item: each problem becomes a line in the :class:`DataReport`
(item, reason) and the item is left out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import audio as audio_io
from ..config import AudioConfig
from ..errors import AuraError
from .config import DatasetConfig

TEXT_COLUMNS = ("transcription", "transcript", "text", "sentence", "normalized_text")
METADATA_FILES = ("metadata.csv", "metadata.jsonl")
HF_SAVED_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")
HF_DATA_SUFFIXES = (".parquet", ".arrow", ".csv", ".json", ".jsonl", ".txt")


@dataclass
class Item:
    """One clip. ``key`` is unique and stable (relative path, or ``split[row]`` for a dataset)."""

    key: str
    path: str | None = None  # audio file of a folder source
    row: int | None = None  # row of a Hugging Face dataset
    transcript: str | None = None  # None = not given (the teacher may write one)
    transcript_source: str = ""  # "dataset" | "teacher" | ""
    audio_hash: str = ""  # sha256 of the prepared waveform, set when the clip is validated
    num_samples: int = 0  # samples at the student's sample rate, set when validated
    teacher_keys: dict[int, str] = field(default_factory=dict)  # teacher layer -> cache key of its states
    response: list[int] | None = None  # the base LLM's answer ids (EOS included when it ended), from the cache
    instruction: str = ""  # text after the audio in the user turn ("" = the bare request); echo items carry one
    ctc_text: str | None = None  # what the CTC term (distill.w_ctc) spells, e.g. a phoneme spelling; None = transcript


@dataclass
class DataReport:
    """What the source held and what was left out, and why (goes into the bundle and the finished event)."""

    source: str
    kind: str  # "folder" | "hf"
    found: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # [{"item": key, "reason": text}]
    n_train: int = 0
    n_val: int = 0
    transcripts: dict[str, int] = field(default_factory=dict)  # source -> count among usable items

    def skip(self, item: str, reason: str) -> None:
        self.skipped.append({"item": item, "reason": reason})

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "found": self.found, "usable": self.n_train + self.n_val,
                "skipped": list(self.skipped), "n_skipped": len(self.skipped), "n_train": self.n_train,
                "n_val": self.n_val, "transcripts": dict(self.transcripts)}

    def summary(self) -> str:
        text = (f"data {self.source}: {self.found} found, {self.n_train} train, {self.n_val} validation, "
                f"{len(self.skipped)} skipped")
        return text


class Source:
    """Lists items and loads their audio."""

    kind = ""

    def __init__(self, name: str):
        self.name = name

    def items(self, report: DataReport) -> list[Item]:
        raise NotImplementedError

    def load(self, item: Item, cfg: AudioConfig) -> np.ndarray:
        """Mono float32 waveform at cfg.sample_rate (audio.prepare_waveform); AuraError if unusable."""
        raise NotImplementedError


# ------------------------------------------------------------------ folders
def _read_transcript_file(path: Path) -> tuple[str | None, str | None]:
    """(text, None) or (None, reason)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        return None, f"transcript {path.name} is not UTF-8 text"
    except OSError as exc:
        return None, f"transcript {path.name} is unreadable ({exc.strerror or exc})"
    text = " ".join(text.split())
    if not text:
        return None, f"transcript file {path.name} is empty"
    return text, None


def _pick_text_column(columns: list[str], wanted: str) -> str | None:
    if wanted:
        return wanted if wanted in columns else None
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    return None


class FolderSource(Source):
    kind = "folder"

    def __init__(self, root: Path, cfg: DatasetConfig):
        super().__init__(str(root))
        self.root = root
        self.cfg = cfg

    def _walk(self, report: DataReport) -> tuple[list[Path], list[Path]]:
        exts = tuple(e.lower() for e in self.cfg.extensions)
        audio, meta = [], []
        seen: set[str] = set()  # real paths of the folders walked: a link back up (a loop) is walked once
        # followlinks: links inside the data folder are part of it; links leading out are followed only when
        # asked (dataset.follow_links_outside: audio kept on another disk, "wavs -> /data/wavs")
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            real = os.path.realpath(dirpath)
            if real in seen:
                dirnames[:] = []
                continue
            seen.add(real)
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and self._may_follow(here / d, report))
            for name in sorted(filenames):
                p = here / name
                if name in METADATA_FILES:
                    meta.append(p)
                elif name.lower().endswith(exts) and not name.startswith(".") and self._may_read(p, report):
                    audio.append(p)
        return audio, meta

    def _may_follow(self, path: Path, report: DataReport) -> bool:
        """Whether a link met while walking leads somewhere the data set may be read from (else reported)."""
        if not path.is_symlink():
            return True
        root, target = Path(os.path.realpath(self.root)), Path(os.path.realpath(path))
        if target == root or root in target.parents:
            return True  # inside the data folder (a loop is walked once)
        if target in root.parents:
            report.skip(self._rel(path), f"a link to {target}, a folder that contains the data folder: not followed")
            return False
        if self.cfg.follow_links_outside:
            return True
        report.skip(self._rel(path), f"a link leading outside the data folder (to {target}): not followed; "
                                     "pass --dataset.follow_links_outside true to use it")
        return False

    def _may_read(self, path: Path, report: DataReport) -> bool:
        """An audio file is read only when it is a regular file: a pipe or device would block the run."""
        if not self._may_follow(path, report):
            return False
        if not path.is_file():
            report.skip(self._rel(path), "not a regular file (a pipe, socket, device or broken link)")
            return False
        return True

    def _metadata(self, files: list[Path], report: DataReport) -> dict[Path, tuple[str | None, str | None]]:
        """audio path -> (transcript, problem) from every metadata file."""
        out: dict[Path, tuple[str | None, str | None]] = {}
        for meta in files:
            rows: list[tuple[int, dict]] = []
            try:
                if meta.suffix == ".csv":
                    with meta.open(encoding="utf-8-sig", newline="") as f:
                        rows = [(i + 2, r) for i, r in enumerate(csv.DictReader(f))]
                else:
                    for i, line in enumerate(meta.read_text(encoding="utf-8-sig").splitlines(), 1):
                        if not line.strip():
                            continue
                        try:
                            row = json.loads(line)
                        except json.JSONDecodeError:
                            report.skip(f"{self._rel(meta)}:{i}", "metadata line is not valid JSON")
                            continue
                        if isinstance(row, dict):
                            rows.append((i, row))
                        else:
                            report.skip(f"{self._rel(meta)}:{i}", "metadata line is not a JSON object")
            except (OSError, UnicodeDecodeError, csv.Error) as exc:
                report.skip(self._rel(meta), f"metadata file is unreadable ({exc})")
                continue
            for line_no, row in rows:
                name = row.get("file_name") or row.get(self.cfg.audio_column)
                if not isinstance(name, str) or not name:
                    report.skip(f"{self._rel(meta)}:{line_no}", "metadata row has no file_name")
                    continue
                audio_path = (meta.parent / name).resolve()
                column = _pick_text_column(list(row), self.cfg.text_column)
                text = row.get(column) if column else None
                if text is None:
                    out[audio_path] = (None, None)
                else:
                    text = " ".join(str(text).split())
                    out[audio_path] = (text, None) if text else (None, f"empty transcript in {meta.name}")
                if not audio_path.is_file():
                    report.skip(f"{self._rel(meta)}:{line_no}", f"metadata names {name!r}, which does not exist")
        return out

    def _rel(self, p: Path) -> str:
        try:
            return str(p.relative_to(self.root))
        except ValueError:
            return str(p)

    def items(self, report: DataReport) -> list[Item]:
        audio, meta_files = self._walk(report)
        meta = self._metadata(meta_files, report)
        items = []
        for p in audio:
            key = self._rel(p)
            txt = p.with_suffix(".txt")
            if txt.is_file():
                text, problem = _read_transcript_file(txt)
            else:
                text, problem = meta.get(p.resolve(), (None, None))
            if problem:
                report.skip(key, problem)
                continue
            items.append(Item(key=key, path=str(p), transcript=text, transcript_source="dataset" if text else ""))
        return items

    def load(self, item: Item, cfg: AudioConfig) -> np.ndarray:
        assert item.path is not None
        return audio_io.load_audio(item.path, cfg)


# ------------------------------------------------------------------ Hugging Face datasets
class HFSource(Source):
    kind = "hf"

    def __init__(self, name: str, ds, cfg: DatasetConfig):
        super().__init__(name)
        self.ds = ds
        self.cfg = cfg
        self.audio_column = self._audio_column(ds, cfg)
        self.text_column = _pick_text_column(list(ds.column_names), cfg.text_column)
        if cfg.text_column and self.text_column is None:
            raise AuraError(f"dataset {name!r} has no column {cfg.text_column!r} (dataset.text_column); "
                            f"columns: {list(ds.column_names)}")
        try:
            from datasets import Audio

            if isinstance(ds.features.get(self.audio_column), Audio):
                # Undecoded: {"bytes", "path"}; decoding here needs only soundfile.
                self.ds = ds.cast_column(self.audio_column, Audio(decode=False))
        except ImportError:  # pragma: no cover - datasets is installed if we got a dataset
            pass

    @staticmethod
    def _audio_column(ds, cfg: DatasetConfig) -> str:
        if cfg.audio_column in ds.column_names:
            return cfg.audio_column
        from datasets import Audio

        found = [n for n, f in ds.features.items() if isinstance(f, Audio)]
        if len(found) == 1:
            return found[0]
        raise AuraError(f"dataset has no audio column {cfg.audio_column!r} (dataset.audio_column); "
                        f"columns: {list(ds.column_names)}")

    def items(self, report: DataReport) -> list[Item]:
        texts = list(self.ds[self.text_column]) if self.text_column else [None] * len(self.ds)
        items = []
        for i, text in enumerate(texts):
            key = f"{self.cfg.split}[{i}]"
            if text is not None:
                text = " ".join(str(text).split())
                if not text:
                    report.skip(key, f"empty transcript in column {self.text_column!r}")
                    continue
            items.append(Item(key=key, row=i, transcript=text, transcript_source="dataset" if text else ""))
        return items

    def load(self, item: Item, cfg: AudioConfig) -> np.ndarray:
        import soundfile as sf

        value = self.ds[item.row][self.audio_column]
        name = f"{self.name} {item.key}"
        if isinstance(value, dict) and value.get("array") is not None:
            return audio_io.prepare_waveform(np.asarray(value["array"]), value.get("sampling_rate"), cfg, name)
        if isinstance(value, dict) and (value.get("bytes") or value.get("path")):
            if value.get("bytes"):
                try:
                    data, sr = sf.read(io.BytesIO(value["bytes"]), dtype="float32", always_2d=True)
                except (sf.SoundFileError, RuntimeError, ValueError, TypeError) as exc:
                    raise AuraError(f"{name}: cannot read audio ({' '.join(str(exc).split())})") from exc
                return audio_io.prepare_waveform(data, sr, cfg, name)
            return audio_io.load_audio(value["path"], cfg)
        if isinstance(value, str):
            return audio_io.load_audio(value, cfg)
        raise AuraError(f"{name}: the audio column holds {type(value).__name__}, not audio")


def _load_hf(data: str, cfg: DatasetConfig):
    try:
        import datasets
    except ImportError as exc:
        raise AuraError(f"{data!r} is not an audio folder; reading Hugging Face datasets needs the `datasets` "
                        "package: pip install datasets") from exc
    p = Path(data)
    try:
        if p.is_dir() and any((p / m).is_file() for m in HF_SAVED_MARKERS):
            ds = datasets.load_from_disk(str(p))
        else:
            ds = datasets.load_dataset(data, cfg.subset or None)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = "" if p.exists() else " (as a hub dataset it needs the network or the Hugging Face cache)"
        raise AuraError(f"cannot load dataset {data!r}{hint}: {first}") from exc
    if isinstance(ds, datasets.DatasetDict):
        if cfg.split not in ds:
            raise AuraError(f"dataset {data!r} has no split {cfg.split!r} (dataset.split); splits: {list(ds)}")
        ds = ds[cfg.split]
    return ds


def open_source(data: str, cfg: DatasetConfig) -> Source:
    """The source behind ``--data``: an audio folder, a saved/loadable HF dataset, or a hub dataset name."""
    if not data:
        raise AuraError("no data given (--data)")
    p = Path(data).expanduser()
    if p.is_dir():
        exts = tuple(e.lower() for e in cfg.extensions)
        saved = any((p / m).is_file() for m in HF_SAVED_MARKERS)
        has_audio = any(n.lower().endswith(exts) for _, _, names in os.walk(p) for n in names)
        if not saved and has_audio:
            return FolderSource(p, cfg)
        has_tables = any(n.lower().endswith(HF_DATA_SUFFIXES) for _, _, names in os.walk(p) for n in names)
        if not saved and not has_tables:
            raise AuraError(f"data folder {str(p)!r} holds no audio files ({', '.join(cfg.extensions)}) "
                            "and no dataset files")
        return HFSource(str(p), _load_hf(str(p), cfg), cfg)
    if p.exists():
        raise AuraError(f"data {str(p)!r} is a file; give a folder of audio files or a dataset")
    # A hub name is "name" or "owner/name"; anything else that does not exist is a mistyped path.
    looks_local = data.startswith(("/", ".", "~")) or "\\" in data or data.count("/") > 1
    if looks_local:
        raise AuraError(f"data path {data!r} does not exist")
    return HFSource(data, _load_hf(data, cfg), cfg)


def list_items(source: Source, cfg: DatasetConfig, report: DataReport) -> list[Item]:
    items = sorted(source.items(report), key=lambda it: it.key)
    if cfg.max_items:
        items = items[: cfg.max_items]
    report.found = len(items) + len(report.skipped)
    return items


def _transcript_group(item: Item) -> str:
    """Clips that say the same words share a group (several recordings of one sentence)."""
    if item.transcript is None or not item.transcript.strip():
        return "\x00" + item.key  # no transcript yet: a group of its own
    return " ".join(item.transcript.lower().split())


def split_items(items: list[Item], val_fraction: float, max_val_items: int, seed: int) -> tuple[list[Item], list[Item]]:
    """Seeded split of the usable items (sorted by key first, so it depends on the data, not the file system).

    Clips with the same transcript stay on one side, so validation never scores a sentence the
    student trained on in another voice; when every group is larger than the validation share,
    clips are split one by one instead.
    """
    items = sorted(items, key=lambda it: it.key)
    n = len(items)
    if n < 2 or val_fraction <= 0 or max_val_items <= 0:
        return items, []
    n_val = min(max_val_items, max(1, int(math.floor(n * val_fraction + 0.5))), n - 1)
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        groups.setdefault(_transcript_group(it), []).append(i)
    members = list(groups.values())  # in order of each group's first key
    val_idx: set[int] = set()
    for g in np.random.default_rng(seed).permutation(len(members)).tolist():
        if len(val_idx) + len(members[g]) <= n_val:
            val_idx.update(members[g])
        if len(val_idx) == n_val:
            break
    if not val_idx:
        val_idx = set(np.random.default_rng(seed).permutation(n)[:n_val].tolist())
    train = [it for i, it in enumerate(items) if i not in val_idx]
    val = [it for i, it in enumerate(items) if i in val_idx]
    return train, val
