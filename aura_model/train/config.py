"""Trainer configuration: one dataclass per concern, plus the TrainSpec that holds a whole run.

A run is described by a YAML or JSON file shaped like ``TrainSpec.to_dict()``::

    teacher: openai/whisper-small         # hub id or local folder
    student: Qwen/Qwen2.5-0.5B-Instruct   # hub id or local folder
    data: ./clips                         # audio folder, saved HF dataset, or hub dataset name
    output: ./my-adapter                  # the bundle folder written at the end
    audio:     {...}   # aura_model.config.AudioConfig
    embedding: {stack: 4}
    lora:      {r: 16}
    prompt:    {...}
    distill:   {w_kl: 1.0, layer_map: [[1, 2], [2, 4]]}
    train:     {lr: 2.0e-4, max_steps: 1000}
    dataset:   {text_column: sentence}

Every field can be overridden on the command line as ``--<section>.<field> VALUE``
(``--train.lr 3e-4 --distill.w_kl 0 --lora.r 8``); precedence: defaults < file < flags.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint_layout import default_checkpoint_dir
from ..config import (MODEL_SECTIONS, AudioConfig, ConfigBase, EmbeddingConfig, LoraSettings, ModelConfig,
                      PoolingConfig, PromptConfig, check)
from ..distill import DistillConfig
from ..errors import AuraError

SCHEDULERS = ("constant", "linear", "cosine")
MIXED_PRECISION = ("auto", "no", "fp16", "bf16")
TRAIN_QUANTIZATION = ("auto", "4bit", "none")
TRAIN_DEVICES = ("auto", "cpu", "cuda")
TEACHER_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class TrainConfig(ConfigBase):
    """The optimisation loop, checkpoints, evaluation, caches and devices."""

    lr: float = 2e-4  # peak learning rate of AdamW for LoRA + AudioEmbedding (+ projection heads)
    weight_decay: float = 0.0  # AdamW decoupled weight decay, applied to matrices only (not biases/norms)
    batch_size: int = 8  # clips per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step; effective batch = batch_size * grad_accum * processes
    epochs: int = 3  # passes over the training split (ignored when max_steps > 0)
    max_steps: int = 0  # optimizer steps to run; 0 = as many as `epochs` take
    warmup_steps: int = 0  # linear warm-up from 0 to lr over this many optimizer steps
    scheduler: str = "cosine"  # constant | linear | cosine: decay after warm-up, to 0 at the last step
    max_grad_norm: float = 1.0  # gradient clipping by global norm; 0 = no clipping
    eval_every: int = 0  # optimizer steps between validation passes; 0 = only at the end
    eval_at_end: bool = True  # run a validation pass after the last step (its metrics go into the bundle)
    checkpoint_every: int = 0  # optimizer steps between checkpoints; 0 = only on SIGINT/SIGTERM
    keep_checkpoints: int = 2  # the last K checkpoints are kept, older ones deleted
    log_every: int = 1  # optimizer steps between progress events
    seed: int = 0  # seeds python, numpy and torch; also the data order and the train/validation split
    deterministic: bool = False  # torch.use_deterministic_algorithms(True): exact resume, slower on GPU
    num_threads: int = 0  # torch CPU threads; 0 = leave torch's default (1 avoids spin-wait on a busy CPU)
    mixed_precision: str = "auto"  # auto | no | fp16 | bf16 ; auto = bf16 (fp16 if unsupported) on CUDA, no on CPU
    gradient_checkpointing: bool = False  # recompute the LLM's activations in backward: less memory, ~30% slower
    quantization: str = "auto"  # auto | 4bit | none ; auto = 4-bit NF4 base (QLoRA) on CUDA, none on CPU
    device: str = "auto"  # auto | cpu | cuda ; under `accelerate launch` each process takes its own GPU
    val_fraction: float = 0.1  # share of the usable clips held out for validation (split by `seed`)
    max_val_items: int = 64  # cap on the validation split's size
    response_max_tokens: int = 64  # longest base-LLM answer generated (and distilled) per clip
    response_batch_size: int = 8  # prompts per batch when the base LLM writes the answers (cached)
    teacher_batch_size: int = 8  # clips per teacher forward when filling the teacher cache
    teacher_dtype: str = "auto"  # auto | float32 | float16 | bfloat16 ; auto = bf16/fp16 on CUDA, fp32 on CPU
    transcribe: bool = True  # a teacher that can transcribe (Whisper + decoder) writes missing transcripts
    transcribe_language: str = ""  # language for Whisper transcription, e.g. "en"; "" = the model's default
    transcript_max_tokens: int = 128  # cap on a transcript written by the teacher, in its tokens
    num_workers: int = 0  # DataLoader worker processes for audio decoding + log-mel; 0 = in the main process
    cache_dir: str = ""  # teacher/transcript/response cache; "" = the user cache folder (platformdirs) /aura/train
    checkpoint_dir: str = ""  # where checkpoints go; "" = "<output>.checkpoints" beside the bundle
    bundle_base: bool = False  # copy the (local) student LLM into the bundle's base/ (the demo bundle does)
    bundle_teacher: bool = False  # copy the (local) teacher into the bundle's teacher/
    trust_remote_code: bool = False  # passed to transformers when loading teacher and student

    def __post_init__(self) -> None:
        if self.mixed_precision is False:  # YAML 1.1 reads a bare `no` as false
            self.mixed_precision = "no"
        check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("batch_size", "grad_accum", "epochs", "keep_checkpoints", "log_every", "response_max_tokens",
                     "response_batch_size", "teacher_batch_size", "transcript_max_tokens"):
            check(isinstance(getattr(self, name), int) and getattr(self, name) >= 1,
                   f"{name} must be an integer >= 1, got {getattr(self, name)!r}")
        for name in ("max_steps", "warmup_steps", "eval_every", "checkpoint_every", "num_threads", "num_workers",
                     "max_val_items", "seed"):
            check(isinstance(getattr(self, name), int) and getattr(self, name) >= 0,
                   f"{name} must be an integer >= 0, got {getattr(self, name)!r}")
        check(self.scheduler in SCHEDULERS, f"scheduler must be one of {SCHEDULERS}, got {self.scheduler!r}")
        check(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        check(self.mixed_precision in MIXED_PRECISION,
               f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        check(self.quantization in TRAIN_QUANTIZATION,
               f"quantization must be one of {TRAIN_QUANTIZATION}, got {self.quantization!r}")
        check(self.device in TRAIN_DEVICES, f"device must be one of {TRAIN_DEVICES}, got {self.device!r}")
        check(self.teacher_dtype in TEACHER_DTYPES,
               f"teacher_dtype must be one of {TEACHER_DTYPES}, got {self.teacher_dtype!r}")
        check(0 <= self.val_fraction < 1, f"val_fraction must be in [0, 1), got {self.val_fraction}")


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".aifc")


@dataclass
class DatasetConfig(ConfigBase):
    """How the data is read: column names of a Hugging Face dataset, limits."""

    audio_column: str = "audio"  # the audio column of a Hugging Face dataset (or metadata file's file column)
    text_column: str = ""  # transcript column; "" = the first of transcription, transcript, text, sentence
    split: str = "train"  # split of a Hugging Face dataset to train on (a validation split is cut from it)
    subset: str = ""  # configuration name of a Hugging Face dataset, "" = its default
    max_items: int = 0  # use at most this many items (first in sorted order); 0 = all
    extensions: tuple[str, ...] = AUDIO_EXTENSIONS  # audio files a folder dataset picks up (case-insensitive)
    follow_links_outside: bool = False  # follow links leading out of the data folder (audio on another disk)

    def __post_init__(self) -> None:
        check(bool(self.audio_column), "audio_column must not be empty")
        check(self.max_items >= 0, f"max_items must be >= 0, got {self.max_items}")
        check(len(self.extensions) > 0, "extensions must not be empty")


# Section name on the command line / in the file -> dataclass.
SECTIONS: dict[str, type] = {
    "audio": AudioConfig,
    "embedding": EmbeddingConfig,
    "lora": LoraSettings,
    "prompt": PromptConfig,
    "pooling": PoolingConfig,
    "distill": DistillConfig,
    "train": TrainConfig,
    "dataset": DatasetConfig,
}
PATH_KEYS = ("teacher", "student", "data", "output")


@dataclass
class TrainSpec:
    """Everything one training run needs: what to read, what to write, and every setting."""

    teacher: str = ""  # teacher ASR model: hub id or local folder (Whisper, wav2vec2, HuBERT, ...)
    student: str = ""  # base chat LLM: hub id or local folder
    data: str = ""  # audio folder, saved Hugging Face dataset folder, or hub dataset name
    output: str = ""  # bundle folder written at the end (replaced atomically)
    model: ModelConfig = field(default_factory=ModelConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    resume: bool = False  # continue from the latest checkpoint in train.checkpoint_dir

    def section(self, name: str):
        if name in MODEL_SECTIONS:
            return getattr(self.model, name)
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: getattr(self, k) for k in PATH_KEYS}
        out.update(self.model.to_dict())
        for name in ("distill", "train", "dataset"):
            out[name] = getattr(self, name).to_dict()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "TrainSpec":
        data = dict(data or {})
        unknown = sorted(set(data) - set(PATH_KEYS) - set(SECTIONS) - {"resume"})
        if unknown:
            raise AuraError(f"unknown key(s) {unknown} in the training config; known: "
                            f"{sorted(PATH_KEYS) + sorted(SECTIONS)}")
        sections = {name: _coerce_section(SECTIONS[name], data.get(name)) for name in SECTIONS}
        paths = {k: "" if data.get(k) is None else str(data[k]) for k in PATH_KEYS}
        return cls(
            **paths,
            model=ModelConfig(**{n: SECTIONS[n].from_dict(sections[n]) for n in MODEL_SECTIONS}),
            distill=DistillConfig.from_dict(sections["distill"]),
            train=TrainConfig.from_dict(sections["train"]),
            dataset=DatasetConfig.from_dict(sections["dataset"]),
            resume=bool(data.get("resume", False)),
        )

    def check_paths(self) -> None:
        missing = [f"--{k}" for k in PATH_KEYS if not getattr(self, k)]
        if missing:
            raise AuraError(f"missing {', '.join(missing)}: give them on the command line or in the --config file")

    @property
    def checkpoint_dir(self) -> Path:
        if self.train.checkpoint_dir:
            return Path(self.train.checkpoint_dir)
        return default_checkpoint_dir(self.output)


# ------------------------------------------------------------------ values from text (flags, YAML)
def field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _parse_bool(text: str, where: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise AuraError(f"{where}: expected true or false, got {text!r}")


def parse_value(text: str, tp: Any, where: str) -> Any:
    """A command-line string -> a value of the field's annotated type."""
    import yaml

    args = typing.get_args(tp)
    if tp is bool:
        return _parse_bool(text, where)
    if tp is str:
        return text
    if type(None) in args and text.strip().lower() in ("none", "null", "~", ""):
        return None
    try:
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if int in args and type(None) in args:
            return int(text)
        value = yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise AuraError(f"{where}: cannot read {text!r} as {_type_name(tp)}") from exc
    if isinstance(value, str) and "tuple[str" in str(tp):  # "q_proj,v_proj" as well as [q_proj, v_proj]
        value = [v.strip() for v in value.split(",") if v.strip()]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce_section(cls: type, data: Any) -> dict[str, Any] | None:
    """Values read from YAML/JSON: numbers written as strings (YAML reads 3e-4 as a string) become numbers."""
    if data is None:
        return None
    if not isinstance(data, dict):
        raise AuraError(f"section {cls.__name__} must be a mapping of field: value, got {data!r}")
    types = field_types(cls)
    out = dict(data)
    for name, value in data.items():
        tp = types.get(name)
        if tp is None:
            continue  # from_dict names unknown fields
        if isinstance(value, str) and tp in (int, float, bool):
            out[name] = parse_value(value, tp, f"{cls.__name__}.{name}")
        elif tp is float and isinstance(value, int) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def field_comments(cls: type) -> dict[str, str]:
    """The trailing comment of each field in the dataclass source: the help text of its flag."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):  # frozen app without sources
        return {}
    out: dict[str, str] = {}
    above = ""  # the full-line comments right above a field document it when it has no trailing one
    for line in source.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above = f"{above} {stripped.lstrip('#').strip()}".strip()
            continue
        m = re.match(r"^\s+(\w+): [^=]+= .*?(?:  # (.+))?$", line)
        if m:
            out[m.group(1)] = (m.group(2) or above).strip()
        above = ""
    return {k: v for k, v in out.items() if v}


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML (.yaml/.yml) or JSON (.json) training config -> a dict shaped like TrainSpec.to_dict()."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise AuraError(f"config file {str(p)!r} not found")
    try:
        text = p.read_text(encoding="utf-8")
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise AuraError(f"config file {str(p)!r} is unreadable: {detail}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AuraError(f"config file {str(p)!r} must hold a mapping (teacher:, student:, train: ...)")
    return data


def build_spec(config_file: str | Path | None = None, overrides: dict[str, str] | None = None,
               paths: dict[str, str | None] | None = None, resume: bool = False) -> TrainSpec:
    """Defaults < config file < ``overrides`` ("section.field" -> text) < ``paths`` (teacher/student/data/output)."""
    data = read_config_file(config_file) if config_file else {}
    for key, text in (overrides or {}).items():
        section, _, name = key.partition(".")
        if section not in SECTIONS:
            raise AuraError(f"unknown setting --{key}: sections are {sorted(SECTIONS)}")
        cls = SECTIONS[section]
        types = field_types(cls)
        if name not in types:
            known = [f.name for f in dataclasses.fields(cls)]
            raise AuraError(f"unknown setting --{key}; {section} has {known}")
        sec = data.setdefault(section, {}) or {}
        data[section] = sec
        sec[name] = parse_value(text, types[name], f"--{key}")
    for key, value in (paths or {}).items():
        if value is not None:
            data[key] = value
    if resume:
        data["resume"] = True
    return TrainSpec.from_dict(data)


# Settings that may differ between a run and its resumption (they do not change the trajectory).
RESUMABLE_DIFFERENCES = {
    "train.max_steps", "train.epochs", "train.eval_every", "train.eval_at_end", "train.checkpoint_every",
    "train.keep_checkpoints", "train.log_every", "train.num_workers", "train.cache_dir", "train.checkpoint_dir",
    "train.bundle_base", "train.bundle_teacher", "train.max_val_items", "train.teacher_batch_size",
    "train.response_batch_size", "train.num_threads", "output", "resume",
}


def spec_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """'section.field saved -> current' for every setting that differs and matters for resuming."""
    diffs = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else k)
            return
        if prefix in RESUMABLE_DIFFERENCES:
            return
        if a != b:
            diffs.append(f"{prefix} {a!r} -> {b!r}")

    walk(saved, current, "")
    return diffs
