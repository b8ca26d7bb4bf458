"""Before the first step: validate the clips and fill the caches (transcripts, teacher states, answers).

``open_data`` lists the clips, ``prepare_items`` runs the stages in order and splits the clips.
Each stage looks in the cache first and computes only what is missing. Under ``accelerate
launch`` the missing entries are dealt round-robin to the processes, each writes its share
(atomically), all wait at a barrier, then every process reads the complete cache. The teacher
is loaded lazily, on the first clip that really needs it, and released before the student is
loaded: a warm cache means the teacher is never loaded at all, and teacher and student are never
in memory together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import GenerationSettings
from ..errors import AuraError
from .batching import text_prompt_ids
from .cache import Cache, response_key, sha256_text, teacher_keys, transcript_key
from .data import DataReport, Item, Source, list_items, open_source, split_items
from .progress import Reporter
from .teacher import Teacher, TeacherInfo, align_and_pool, resolve_teacher_dtype, student_conv_frames


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived while filling the caches (what is cached so far stays cached)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal = signal_name


@dataclass
class Ranks:
    """Who am I among the processes, how to wait for the others, and whether a stop was requested."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = lambda: None
    stop: Callable[[], str | None] = lambda: None

    def share(self, items: list) -> list:
        return items[self.rank::self.world]


class StageProgress:
    """progress events for one preparation stage: done/total clips, rate and ETA."""

    def __init__(self, reporter: Reporter, stage: str, total: int, ranks: Ranks):
        self.reporter, self.stage, self.total, self.ranks = reporter, stage, total, ranks
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.emit(0, force=True)

    def emit(self, done: int, force: bool = False) -> None:
        stop = self.ranks.stop()
        if stop:
            raise StopRequested(stop)
        now = time.perf_counter()
        if not force and now - self.last < 0.5 and done < self.total:
            return
        self.last = now
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 and done else None
        eta = (self.total - done) / rate if rate else None
        self.reporter.event("progress", stage=self.stage, done=done, total=self.total, step=0, total_steps=None,
                            epoch=0.0, loss=None, lr=None, samples_per_s=rate, eta_s=eta, elapsed_s=elapsed)


class LazyTeacher:
    """Loads the teacher on first use only."""

    def __init__(self, info: TeacherInfo, device: torch.device, dtype: torch.dtype, trust_remote_code: bool,
                 loader: Callable[..., Teacher] | None = None):
        self.info, self.device, self.dtype, self.trust = info, device, dtype, trust_remote_code
        self.loader = loader or Teacher.load
        self._teacher: Teacher | None = None
        self.loaded = False  # ever loaded in this run (the training summary records it)

    def get(self) -> Teacher:
        if self._teacher is None:
            self._teacher = self.loader(self.info, self.device, self.dtype, self.trust)
            self.loaded = True
        return self._teacher

    def release(self) -> None:
        if self._teacher is not None:
            self._teacher.release()
            self._teacher = None


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


# ------------------------------------------------------------------ 1. clips
def validate_items(items: list[Item], source: Source, audio_cfg, report: DataReport, reporter: Reporter,
                   ranks: Ranks, teacher_window_s: float | None) -> list[Item]:
    """Decode every clip once: unreadable, empty, silent, too long -> skipped with the reason; hash the rest."""
    from .cache import hash_waveform

    progress = StageProgress(reporter, "validate", len(items), ranks)
    good = []
    for i, it in enumerate(items, 1):
        try:
            wave = source.load(it, audio_cfg)
        except AuraError as exc:
            report.skip(it.key, str(exc))
        else:
            seconds = len(wave) / audio_cfg.sample_rate
            if teacher_window_s is not None and seconds > teacher_window_s + 1e-9:
                report.skip(it.key, f"clip is {seconds:.2f} s, longer than the teacher's {teacher_window_s:g} s window")
            else:
                it.audio_hash = hash_waveform(wave, audio_cfg.sample_rate)
                it.num_samples = len(wave)
                good.append(it)
        progress.emit(i)
    return good


# ------------------------------------------------------------------ 2. transcripts
def fill_transcripts(items: list[Item], needed: bool, teacher: LazyTeacher, cache: Cache, source: Source,
                     audio_cfg, train_cfg, report: DataReport, reporter: Reporter, ranks: Ranks) -> list[Item]:
    """Give every clip a transcript (dataset, else the teacher's, cached) when the response terms need one."""
    lacking = [it for it in items if not it.transcript]
    if not needed or not lacking:
        return items
    info = teacher.info
    if not (train_cfg.transcribe and info.can_transcribe):
        why = ("train.transcribe is off" if not train_cfg.transcribe else
               f"teacher {info.ref!r} cannot transcribe (it needs Whisper's decoder and a tokenizer)")
        for it in lacking:
            report.skip(it.key, f"no transcript, and {why}")
        return [it for it in items if it.transcript]
    if info.window_samples:
        window_s = info.window_samples / info.sample_rate
        too_long = [it for it in lacking if it.num_samples / audio_cfg.sample_rate > window_s + 1e-9]
        for it in too_long:
            report.skip(it.key, f"no transcript, and the clip is longer than the teacher's {window_s:g} s window")
        dropped = {it.key for it in too_long}
        lacking = [it for it in lacking if it.key not in dropped]
        items = [it for it in items if it.key not in dropped]
    settings = {"max_tokens": train_cfg.transcript_max_tokens, "language": train_cfg.transcribe_language,
                "features": info.describe_features()}
    keys = {it.key: transcript_key(it.audio_hash, info.fingerprint, settings) for it in lacking}
    missing = [it for it in lacking if cache.load_transcript(keys[it.key]) is None]
    cache.stats["transcript_hits"] += len(lacking) - len(missing)
    cache.stats["transcript_misses"] += len(missing)
    ranks.barrier()  # everyone has looked before anyone writes: the shares cover `missing` exactly
    mine = ranks.share(missing)
    progress = StageProgress(reporter, "transcripts", len(mine), ranks)
    done = 0
    for chunk in _chunks(mine, train_cfg.teacher_batch_size):
        waves = [source.load(it, audio_cfg) for it in chunk]
        texts = teacher.get().transcribe(waves, audio_cfg.sample_rate, train_cfg.transcript_max_tokens,
                                         train_cfg.transcribe_language)
        for it, text in zip(chunk, texts):
            cache.save_transcript(keys[it.key], text)
        done += len(chunk)
        progress.emit(done)
    ranks.barrier()
    for it in lacking:
        text = cache.load_transcript(keys[it.key])
        if text:
            it.transcript, it.transcript_source = text, "teacher"
        else:
            report.skip(it.key, "no transcript, and the teacher's transcript of it is empty")
    return [it for it in items if it.transcript]


# ------------------------------------------------------------------ 3. teacher states
def teacher_alignment(audio_cfg, stack: int, info: TeacherInfo) -> dict[str, Any]:
    """Everything besides audio, teacher and layers that the cached states depend on."""
    return {"student_audio": {"sample_rate": audio_cfg.sample_rate, "n_fft": audio_cfg.n_fft,
                              "hop_length": audio_cfg.hop_length}, "stack": stack,
            "teacher_features": info.describe_features()}


def fill_teacher_states(items: list[Item], teacher_layers: list[int], teacher: LazyTeacher, cache: Cache,
                        source: Source, audio_cfg, stack: int, train_cfg, reporter: Reporter, ranks: Ranks) -> None:
    """Make sure the pooled fp16 states of the mapped teacher layers of every clip are in the cache.

    Each layer of each clip is its own entry: a clip whose entries hold some of the layers already (an earlier
    run with another layer map) only gets the missing ones written, from one teacher pass."""
    info = teacher.info
    alignment = teacher_alignment(audio_cfg, stack, info)
    lacking: dict[str, list[int]] = {}  # item key -> its layers without a cache entry
    for it in items:
        it.teacher_keys = teacher_keys(it.audio_hash, info.fingerprint, teacher_layers, alignment)
        absent = [t for t, key in it.teacher_keys.items() if cache.load_teacher_layers({t: key}) is None]
        if absent:
            lacking[it.key] = absent
    missing = [it for it in items if it.key in lacking]
    cache.stats["teacher_hits"] += len(items) - len(missing)
    cache.stats["teacher_misses"] += len(missing)
    ranks.barrier()  # everyone has looked before anyone writes: the shares cover `missing` exactly
    mine = ranks.share(missing)
    progress = StageProgress(reporter, "teacher", len(mine), ranks)
    done = 0
    for chunk in _chunks(mine, train_cfg.teacher_batch_size):
        waves = [source.load(it, audio_cfg) for it in chunk]
        wanted = sorted({t for it in chunk for t in lacking[it.key]})
        encoded = teacher.get().encode(waves, audio_cfg.sample_rate, wanted)
        for it, states in zip(chunk, encoded):
            n_frames = student_conv_frames(it.num_samples, audio_cfg)
            for t in lacking[it.key]:
                cache.save_teacher(it.teacher_keys[t], {t: align_and_pool(states[t], n_frames, stack)})
        done += len(chunk)
        progress.emit(done)
    ranks.barrier()


# ------------------------------------------------------------------ 4. base answers
def base_fingerprint(student_fp: str, tokenizer, quantization: str, dtype: torch.dtype) -> str:
    return sha256_text(student_fp, len(tokenizer), quantization, str(dtype))


@torch.no_grad()
def fill_responses(items: list[Item], aura, processor, eos_ids: list[int], base_fp: str, cache: Cache,
                   train_cfg, reporter: Reporter, ranks: Ranks) -> None:
    """The base LLM's greedy answer to each transcript (adapter disabled), generated once and cached as ids."""
    from .batching import pad_left

    max_tokens = train_cfg.response_max_tokens
    prompts = {it.key: text_prompt_ids(processor, it.transcript or "", it.instruction) for it in items}
    keys = {it.key: response_key(base_fp, prompts[it.key], "", max_tokens) for it in items}
    missing = [it for it in items if cache.load_response(keys[it.key]) is None]
    cache.stats["response_hits"] += len(items) - len(missing)
    cache.stats["response_misses"] += len(missing)
    ranks.barrier()  # everyone has looked before anyone writes: the shares cover `missing` exactly
    mine = sorted(ranks.share(missing), key=lambda it: (len(prompts[it.key]), it.key))  # less padding
    progress = StageProgress(reporter, "responses", len(mine), ranks)
    gen = GenerationSettings(max_new_tokens=max_tokens)
    was_training = aura.training
    aura.eval()
    done = 0
    try:
        for chunk in _chunks(mine, train_cfg.response_batch_size):
            toks = pad_left([prompts[it.key] for it in chunk], [[] for _ in chunk], processor.pad_id)
            with aura.adapter_disabled():
                out = aura.generate_ids(toks.input_ids, toks.attention_mask, gen=gen, eos_ids=eos_ids,
                                        pad_id=processor.pad_id)
            for it, row in zip(chunk, out.tolist()):
                ids = cut_at_eos(row, eos_ids, keep_eos=True)
                cache.save_response(keys[it.key], ids, processor.decode(cut_at_eos(ids, eos_ids)))
            done += len(chunk)
            progress.emit(done)
    finally:
        aura.train(was_training)
    ranks.barrier()
    for it in items:
        it.response = cache.load_response(keys[it.key])
        if not it.response:  # cannot happen unless the cache folder is tampered with
            raise AuraError(f"the base model's answer for {it.key} is missing from the cache {cache.root}")


def cut_at_eos(ids: list[int], eos_ids: list[int], keep_eos: bool = False) -> list[int]:
    eos = set(eos_ids)
    for i, t in enumerate(ids):
        if t in eos:
            return list(ids[: i + 1] if keep_eos else ids[:i])
    return list(ids)


# ------------------------------------------------------------------ the stages in order
@dataclass
class Data:
    """Where the clips come from, what became of them, and the caches they fill."""

    source: Source
    report: DataReport  # clips found, skipped (with the reason), the split, where transcripts came from
    cache: Cache
    teacher: LazyTeacher  # loaded on the first clip that needs it, released once the caches are full


def open_data(spec, info: TeacherInfo, device: torch.device, cache_dir: str | Path,
              teacher_loader: Callable[..., Teacher] | None) -> tuple[Data, list[Item]]:
    """The data source and its clips, listed but not decoded yet; refuses a source without any."""
    source = open_source(spec.data, spec.dataset)
    report = DataReport(spec.data, source.kind)
    items = list_items(source, spec.dataset, report)
    if not items:
        raise AuraError(f"no usable items in {spec.data!r}: " + skip_summary(report))
    t = spec.train
    teacher = LazyTeacher(info, device, resolve_teacher_dtype(t.teacher_dtype, device), t.trust_remote_code,
                          teacher_loader)
    return Data(source, report, Cache(cache_dir), teacher), items


def prepare_items(spec, data: Data, items: list[Item], teacher_layers: list[int], reporter: Reporter, ranks: Ranks,
                  clock) -> tuple[list[Item], list[Item]]:
    """Validate the clips and fill the transcript and teacher caches; returns (training, validation) items.

    ``clock(stage)`` times each stage. Raises StopRequested on a signal (what is cached so far stays cached)."""
    t, audio_cfg, info = spec.train, spec.model.audio, data.teacher.info
    window = info.window_samples / info.sample_rate if info.window_samples and spec.distill.w_layer > 0 else None
    with clock("validate"):
        items = validate_items(items, data.source, audio_cfg, data.report, reporter, ranks, window)
    try:
        with clock("transcripts"):
            items = fill_transcripts(items, spec.distill.needs_transcript, data.teacher, data.cache, data.source,
                                     audio_cfg, t, data.report, reporter, ranks)
        if teacher_layers and items:
            with clock("teacher"):
                fill_teacher_states(items, teacher_layers, data.teacher, data.cache, data.source, audio_cfg,
                                    spec.model.embedding.stack, t, reporter, ranks)
    finally:
        data.teacher.release()
    return _split(spec, items, data.report, reporter)


def _split(spec, items: list[Item], report: DataReport, reporter: Reporter) -> tuple[list[Item], list[Item]]:
    t = spec.train
    train_items, val_items = split_items(items, t.val_fraction, t.max_val_items, t.seed)
    report.n_train, report.n_val = len(train_items), len(val_items)
    sources: dict[str, int] = {}
    for it in items:
        key = it.transcript_source or "none"
        sources[key] = sources.get(key, 0) + 1
    report.transcripts = sources
    if not train_items:
        raise AuraError(f"no usable items in {spec.data!r}: " + skip_summary(report))
    reporter.message(report.summary())
    for s in report.skipped:
        reporter.message(f"  skipped {s['item']}: {s['reason']}")
    return train_items, val_items


def skip_summary(report: DataReport) -> str:
    """Why no clip is usable, for the error message."""
    if not report.skipped:
        return "it holds no audio files"
    shown = "; ".join(f"{s['item']}: {s['reason']}" for s in report.skipped[:3])
    more = f" (and {len(report.skipped) - 3} more)" if len(report.skipped) > 3 else ""
    return f"all {len(report.skipped)} skipped - {shown}{more}"
