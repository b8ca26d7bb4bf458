"""The distillation loop, under Hugging Face Accelerate.

``train(spec)`` does, in order:

1. cheap checks that need no weights: the student's tokenizer has a chat template, the teacher
   is an audio encoder, the layer map fits both, a ``--resume`` checkpoint matches the settings;
2. the data: list the clips, decode each once (bad ones skipped and reported), then fill the
   caches (teacher transcripts, teacher states; see ``prepare.py``), releasing the teacher;
3. the student: base LLM (frozen; 4-bit NF4 + ``prepare_model_for_kbit_training`` on CUDA, as
   QLoRA does), a fresh LoRA and AudioEmbedding, and the training-only projection heads; the
   base LLM's answers to the transcripts are generated once (cached);
4. the loop: AdamW + warm-up/decay schedule, gradient accumulation, clipping, mixed precision,
   DDP across processes (``accelerate launch``), checkpoints every N steps and on SIGINT/SIGTERM,
   validation every M steps;
5. the bundle (``bundle.save_bundle``), written by the main process only, with the training
   summary and the last validation metrics in ``aura_config.json``.

Exact resume: the data order is a function of (seed, epoch) and the position is (epoch, batch);
the checkpoint holds the trainable weights, optimizer, scheduler, grad scaler and every RNG state,
and evaluation runs inside ``torch.random.fork_rng`` so it never shifts the training RNG. On the
CPU with ``train.deterministic`` a resumed run ends with the same weights as an uninterrupted one.

Interrupts: SIGINT/SIGTERM set a flag; at the next optimizer-step boundary (agreed across
processes) the loop writes a checkpoint, emits a ``checkpoint`` event and returns with
``interrupted`` set; ``aura train`` then exits 130 (SIGINT) or 143 (SIGTERM). A second SIGINT
stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import backends
from ..bundle import load_llm, load_llm_config, load_tokenizer, save_bundle
from ..config import GenerationSettings
from ..distill import (ProjectionHeads, TeacherDecoderLoss, TokenCTCHead, layer_alignment_loss, monotonic_match_loss,
                       projected_layerwise_loss, response_ce, response_kl, text_state_loss, total_loss)
from ..embedding import AudioEmbedding
from ..errors import AuraError
from ..model import AuraModel, attach_lora, eos_token_ids
from ..processor import AuraProcessor
from . import checkpoint as ckpt
from .augment import MaskSettings, mask_generator, spec_augment
from .batching import Batch, Collator, batches_per_epoch, epoch_batches, loader
from .cache import Cache
from .config import TrainSpec, spec_differences
from .data import DataReport, Item, list_items, open_source, split_items
from .prepare import (LazyTeacher, Ranks, StopRequested, base_fingerprint, cut_at_eos, fill_responses,
                      fill_teacher_states, fill_transcripts, validate_items)
from .progress import Reporter, TqdmReporter
from .teacher import (Teacher, check_decoder_teacher, inspect_teacher, load_decoder, model_fingerprint,
                      resolve_teacher_dtype, whisper_stem)

SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, the shell's convention
HISTORY_IN_BUNDLE = 200  # loss points kept in aura_config.json


@dataclass
class TrainResult:
    """What a run did. ``exit_code`` is what `aura train` returns."""

    output: Path | None  # the bundle, None when interrupted before the end
    steps: int  # optimizer steps done in total (including those before a resume)
    total_steps: int
    epoch: float  # epochs done
    losses: list[dict[str, float]]  # one entry per step: {"step", "loss", "loss_<term>"}
    metrics: dict[str, Any]  # last validation metrics
    data: dict[str, Any]  # the DataReport
    samples: int  # clips trained on by this invocation (all processes)
    timing: dict[str, float]  # seconds per stage: validate, transcripts, teacher, student, responses, train, eval, save
    samples_per_s: float  # training loop only
    end_to_end_samples_per_s: float  # samples / (cache filling + training loop): what the teacher cache speeds up
    interrupted: str | None = None  # "SIGINT" | "SIGTERM" when stopped by a signal (a checkpoint was written)
    checkpoint: Path | None = None  # the last checkpoint written
    teacher_loaded: bool = False  # False when every teacher output came from the cache
    cache: dict[str, int] = field(default_factory=dict)
    num_processes: int = 1

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT.get(self.interrupted or "", 1) if self.interrupted else 0

    @property
    def first_loss(self) -> float | None:
        return self.losses[0]["loss"] if self.losses else None

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1]["loss"] if self.losses else None


# ------------------------------------------------------------------ the training module
def with_echo_items(items: list[Item], echo_prompt: str) -> list[Item]:
    """``items``, then (when ``echo_prompt`` is set) one copy of each asking the base LLM to repeat it."""
    if not echo_prompt:
        return items
    return items + [dataclasses.replace(it, key=f"{it.key}#echo", instruction=echo_prompt, response=None)
                    for it in items]


def gather_spans(h: torch.Tensor, spans: list[list[tuple[int, int]]], t_max: int) -> torch.Tensor:
    """(B, L, D) states -> (B, t_max, D): each row's (first) span, zero-padded at the end (all zero without one)."""
    rows = []
    for b, row in enumerate(spans):
        start, n = row[0] if row else (0, 0)
        n = min(n, t_max)
        rows.append(nn.functional.pad(h[b, start:start + n], (0, 0, 0, t_max - n)))
    return torch.stack(rows)


def span_mask(spans: list[list[tuple[int, int]]], width: int) -> torch.Tensor:
    """(B, width) bool: True on the first ``length`` positions of each row's (first) span."""
    lengths = torch.tensor([min(row[0][1], width) if row else 0 for row in spans])
    return torch.arange(width)[None, :] < lengths[:, None]


@dataclass
class BaseTargets:
    """What the base LLM (adapter off) reading the transcript gives the student to match."""

    logits: torch.Tensor | None  # (B, R, V) on the response slots, for the KL (None when it is off)
    states: list[torch.Tensor]  # per text-state layer, (B, S, D) on the shared suffix (empty when off)
    transcript: list[torch.Tensor] = field(default_factory=list)  # per text-alignment layer, (B, N, D) on the
    #   transcript tokens (empty when off)
    transcript_mask: torch.Tensor | None = None  # (B, N) bool, real transcript tokens


class DistillModule(nn.Module):
    """AuraModel + projection heads; forward computes the loss terms (the module DDP wraps)."""

    def __init__(self, aura: AuraModel, heads: ProjectionHeads | None, layer_map: list[tuple[int, int]], distill,
                 state_layers: list[int] | None = None, align_layers: list[int] | None = None,
                 ctc_head: TokenCTCHead | None = None, ctc_layer: int | None = None,
                 decoder_loss: TeacherDecoderLoss | None = None, decode_pair: int | None = None):
        super().__init__()
        self.decoder_loss = decoder_loss  # the teacher's frozen decoder (distill.w_decode), or None
        self.decode_pair = decode_pair  # index in layer_map of the pair whose head it reads
        self.ctc_head = ctc_head
        self.ctc_layer = ctc_layer
        self.aura = aura
        self.heads = heads
        self.layer_map = list(layer_map)
        self.distill = distill
        self.state_layers = list(state_layers or [])
        self.align_layers = list(align_layers or [])

    def _run(self, batch: Batch, base: BaseTargets | None, with_responses: bool):
        d = self.distill
        want_layer = self.heads is not None
        want_state = bool(self.state_layers) and base is not None and bool(base.states)
        want_align = bool(self.align_layers) and base is not None and bool(base.transcript)
        want_ctc = self.ctc_head is not None and bool(batch.ctc_targets)
        want_decode = self.decoder_loss is not None and bool(batch.decode_targets) and want_layer
        r = batch.responses.shape[1] if with_responses else 0
        s = batch.student
        out = self.aura(s.input_ids, s.attention_mask, s.position_ids, s.audio_spans, batch.features,
                        batch.frame_lengths, output_hidden_states=want_layer or want_state or want_align or want_ctc,
                        use_cache=False, logits_to_keep=r + 1)
        terms: dict[str, torch.Tensor] = {}
        projected = teacher = None  # per layer pair: the student's span through its head, the teacher's states
        if want_layer:
            t_max = batch.layer_mask.shape[1]
            spans = [gather_spans(out.hidden_states[sl], s.audio_spans, t_max) for sl, _ in self.layer_map]
            projected = self.heads(spans)
            teacher = [batch.teacher[tl] for _, tl in self.layer_map]
            terms["layer"], _ = projected_layerwise_loss(projected, teacher, batch.layer_mask, d.beta)
        if want_decode:
            states = projected[self.decode_pair]
            terms["decode"] = self.decoder_loss(states, span_mask(s.audio_spans, states.shape[1]).to(states.device),
                                                batch.decode_targets)
        if want_state:
            width = batch.shared_suffix.shape[1]
            mine = [out.hidden_states[layer][:, -width:] for layer in self.state_layers] if width else []
            terms["state"] = (text_state_loss(mine, base.states, batch.shared_suffix, d.beta) if width
                              else out.logits.sum() * 0.0)
        if want_align:
            t_max = max(batch.audio_tokens)
            audio_mask = span_mask(s.audio_spans, t_max).to(out.logits.device)
            terms["align"] = torch.stack([
                monotonic_match_loss(gather_spans(out.hidden_states[layer], s.audio_spans, t_max), text, audio_mask,
                                     base.transcript_mask, d.align_gamma)
                for layer, text in zip(self.align_layers, base.transcript)]).mean()
        if want_ctc:
            t_max = max(batch.audio_tokens)
            terms["ctc"] = self.ctc_head(gather_spans(out.hidden_states[self.ctc_layer], s.audio_spans, t_max),
                                         span_mask(s.audio_spans, t_max).to(out.logits.device), batch.ctc_targets)
        logits = out.logits[:, :-1] if with_responses else None  # (B, R, V): slot i predicts response slot i
        base_logits = base.logits if base is not None else None
        if with_responses and base_logits is not None and (d.w_kl > 0 or not self.training):
            terms["kl"] = response_kl(logits, base_logits, batch.response_mask, d.kl_temperature)
        if with_responses and (d.w_ce > 0 or not self.training):
            terms["ce"] = response_ce(logits, batch.responses, batch.response_mask)
        return terms, projected, teacher, logits

    def forward(self, batch: Batch, base: BaseTargets | None = None) -> dict[str, torch.Tensor]:
        with_responses = batch.responses is not None and self.distill.needs_response
        terms, _, _, _ = self._run(batch, base, with_responses)
        return terms

    @torch.no_grad()
    def eval_sums(self, batch: Batch, base: BaseTargets | None) -> dict[str, Any]:
        """Sums over this batch for the validation metrics (the caller divides after reducing)."""
        with_responses = batch.responses is not None
        terms, projected, teacher, logits = self._run(batch, base, with_responses)
        out: dict[str, Any] = {"items": batch.size}
        if projected is not None:
            n = float(batch.layer_mask.sum())
            out["layer_positions"] = n
            out["layer_sum"] = float(terms["layer"]) * n
            # cosine on layer-normalised features = 1 - the loss with beta 0
            out["cosine_sums"] = [(1.0 - float(layer_alignment_loss(p, t, batch.layer_mask, 0.0))) * n
                                  for p, t in zip(projected, teacher)]
        if with_responses:
            n = float(batch.response_mask.sum())
            out["response_tokens"] = n
            if "kl" in terms:
                out["kl_sum"] = float(terms["kl"]) * n
            out["ce_sum"] = float(terms["ce"]) * n
            hits = (logits.argmax(-1) == batch.responses) & batch.response_mask
            out["token_hits"] = float(hits.sum())
        if "state" in terms and batch.shared_suffix is not None:
            n = float(batch.shared_suffix.sum())
            out["state_positions"] = n
            out["state_sum"] = float(terms["state"]) * n
        if "align" in terms:
            out["align_items"] = float(batch.size)
            out["align_sum"] = float(terms["align"]) * batch.size
        if "ctc" in terms:
            out["ctc_items"] = float(batch.size)
            out["ctc_sum"] = float(terms["ctc"]) * batch.size
        if "decode" in terms:
            out["decode_items"] = float(batch.size)
            out["decode_sum"] = float(terms["decode"]) * batch.size
        return out


# ------------------------------------------------------------------ process-wide settings
@contextlib.contextmanager
def torch_settings(cfg):
    """Threads and deterministic mode for the run, restored afterwards (tests run several trainings in one process)."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it at step boundaries."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def stop_signals():
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals can only be caught on the main thread; the caller stops us another way
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if flag.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        flag.signal = name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def make_accelerator(cfg, find_unused: bool):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise AuraError("train.device is cuda but CUDA is not available on this machine")
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    try:
        return Accelerator(cpu=cpu, mixed_precision=mp,
                           kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)])
    except ValueError as exc:
        raise AuraError(f"cannot set up Accelerate (mixed_precision={mp}): {exc}") from exc


def reset_accelerate(accelerator) -> None:
    """Let a later train() in the same (single) process choose other settings."""
    if accelerator is None or accelerator.num_processes > 1:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def lr_lambda(name: str, warmup: int, total: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if name == "constant":
            return 1.0
        progress = min(1.0, float(step - warmup) / float(max(1, total - warmup)))
        if name == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


# ------------------------------------------------------------------ the trainer
class Trainer:
    def __init__(self, spec: TrainSpec, reporter: Reporter, on_step: Callable[[int], None] | None = None,
                 teacher_loader: Callable[..., Teacher] | None = None):
        self.spec = spec
        self.t = spec.train
        self.d = spec.distill
        self.reporter = reporter
        self.on_step = on_step
        self.teacher_loader = teacher_loader
        self.timing: dict[str, float] = {}
        self.need_response = self.d.needs_response
        self.masks = MaskSettings(self.d.student_freq_masks, self.d.student_freq_width, self.d.student_time_masks,
                                  float(self.d.student_time_width))

    # -------------------------------------------------------------- entry
    def run(self) -> TrainResult:
        self.spec.check_paths()
        with torch_settings(self.t):
            self.acc = None
            try:
                self.acc = make_accelerator(self.t, find_unused=not self.need_response)
                with stop_signals() as stop:
                    return self._run(stop)
            finally:
                reset_accelerate(self.acc)

    @contextlib.contextmanager
    def _timed(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timing[name] = self.timing.get(name, 0.0) + time.perf_counter() - t0

    def _run(self, stop: StopFlag) -> TrainResult:
        acc = self.acc
        self.rep = self.reporter if acc.is_main_process else Reporter()
        self.ranks = Ranks(acc.process_index, acc.num_processes, acc.wait_for_everyone, lambda: stop.signal)
        self._check_models()
        resume_from = self._resume_point()
        try:
            train_items, val_items = self._prepare_data()
            train_items = with_echo_items(train_items, self.d.echo_prompt)
            self._build_student()
            if self.need_response:
                with self._timed("responses"):
                    base_fp = base_fingerprint(model_fingerprint(self.spec.student, self.llm_config),
                                               self.tokenizer, self.quantization, self.resolved.dtype)
                    fill_responses(train_items + val_items, self.aura, self.processor, self.eos_ids, base_fp,
                                   self.cache, self.t, self.rep, self.ranks)
        except StopRequested as exc:
            self.rep.message(f"stopped by {exc.signal} while filling the caches; what is cached so far is kept")
            return self._stopped_early(exc.signal)
        self.train_items, self.val_items = train_items, val_items
        self._build_optimizer()
        self.state = {"step": 0, "epoch": 0, "batch": 0, "samples": 0, "history": [], "evals": [], "elapsed_s": 0.0,
                      "resumed_from": None}
        if resume_from is not None:
            self._load_checkpoint(resume_from)
        return self._loop(stop)

    # -------------------------------------------------------------- 1. checks without weights
    def _check_models(self) -> None:
        spec, t = self.spec, self.t
        self.tokenizer = load_tokenizer(spec.student, t.trust_remote_code)
        self.processor = AuraProcessor(self.tokenizer, spec.model.prompt)  # refuses a tokenizer without chat template
        self.llm_config = load_llm_config(spec.student, t.trust_remote_code)
        text_cfg = self.llm_config.get_text_config() if hasattr(self.llm_config, "get_text_config") else self.llm_config
        self.n_student = int(text_cfg.num_hidden_layers)
        self.d_student = int(text_cfg.hidden_size)
        spec.model.lora.check_layers(self.n_student)  # before any data or weights
        self.info = inspect_teacher(spec.teacher, t.trust_remote_code, want_transcriber=self.d.needs_transcript)
        self.layer_map = (self.d.resolve_layer_map(self.n_student, self.info.num_layers) if self.d.w_layer > 0 else [])
        self.state_layers = self.d.resolve_state_layers(self.n_student) if self.d.w_state > 0 else []
        self.align_layers = self.d.resolve_align_layers(self.n_student) if self.d.w_align > 0 else []
        self.ctc_layer = self.d.resolve_ctc_layer(self.n_student, self.layer_map) if self.d.w_ctc > 0 else None
        self.decode_pair = None
        if self.d.w_decode > 0:
            check_decoder_teacher(self.info)
            self.decode_pair = self.d.resolve_decode_pair(self.layer_map, self.info.num_layers)
        self.teacher_layers = sorted({tl for _, tl in self.layer_map})
        for flag, ref, what in ((t.bundle_base, spec.student, "train.bundle_base"),
                                (t.bundle_teacher, spec.teacher, "train.bundle_teacher")):
            if flag and not Path(ref).is_dir():
                raise AuraError(f"{what} copies a local model folder into the bundle, but {ref!r} is not a local folder")

    def _resume_point(self) -> Path | None:
        root = self.spec.checkpoint_dir
        if not self.spec.resume:
            if self.acc.is_main_process:
                removed = ckpt.remove_all(root)
                if removed:
                    self.rep.message(f"removed {removed} checkpoint(s) of an earlier run in {root} (not --resume)")
            self.acc.wait_for_everyone()
            return None
        latest = ckpt.latest_checkpoint(root)
        if latest is None:
            raise AuraError(f"--resume: no checkpoint in {str(root)!r} to resume from")
        saved = ckpt.read_state(latest)
        diffs = spec_differences(saved.get("spec", {}), self.spec.to_dict())
        if saved.get("num_processes", 1) != self.acc.num_processes:
            diffs.append(f"number of processes {saved.get('num_processes', 1)} -> {self.acc.num_processes}")
        if diffs:
            raise AuraError(f"--resume: checkpoint {latest.name} in {str(root)!r} was made with other settings ("
                            + "; ".join(diffs) + "); resume with the same settings, or start afresh without --resume")
        if self.acc.is_main_process:
            ckpt.remove_temp(root)
        self.acc.wait_for_everyone()
        return latest

    # -------------------------------------------------------------- 2. data and caches
    def _prepare_data(self):
        spec, t, acc = self.spec, self.t, self.acc
        audio_cfg = spec.model.audio
        self.source = open_source(spec.data, spec.dataset)
        self.report = DataReport(spec.data, self.source.kind)
        items = list_items(self.source, spec.dataset, self.report)
        if not items:
            raise AuraError(f"no usable items in {spec.data!r}: " + self._skip_summary())
        window = (self.info.window_samples / self.info.sample_rate
                  if self.info.window_samples and self.d.w_layer > 0 else None)
        with self._timed("validate"):
            items = validate_items(items, self.source, audio_cfg, self.report, self.rep, self.ranks, window)
        self.cache = Cache(t.cache_dir or _default_cache_dir())
        self.lazy_teacher = LazyTeacher(self.info, acc.device, resolve_teacher_dtype(t.teacher_dtype, acc.device),
                                        t.trust_remote_code, self.teacher_loader)
        try:
            with self._timed("transcripts"):
                items = fill_transcripts(items, self.d.needs_transcript, self.lazy_teacher, self.cache, self.source,
                                         audio_cfg, t, self.report, self.rep, self.ranks)
            if self.layer_map and items:
                with self._timed("teacher"):
                    fill_teacher_states(items, self.teacher_layers, self.lazy_teacher, self.cache, self.source,
                                        audio_cfg, spec.model.embedding.stack, t, self.rep, self.ranks)
        finally:
            self.lazy_teacher.release()
        train_items, val_items = split_items(items, t.val_fraction, t.max_val_items, t.seed)
        self.report.n_train, self.report.n_val = len(train_items), len(val_items)
        sources: dict[str, int] = {}
        for it in items:
            key = it.transcript_source or "none"
            sources[key] = sources.get(key, 0) + 1
        self.report.transcripts = sources
        if not train_items:
            raise AuraError(f"no usable items in {spec.data!r}: " + self._skip_summary())
        self.rep.message(self.report.summary())
        for s in self.report.skipped:
            self.rep.message(f"  skipped {s['item']}: {s['reason']}")
        return train_items, val_items

    def _skip_summary(self) -> str:
        r = self.report
        if not r.skipped:
            return "it holds no audio files"
        shown = "; ".join(f"{s['item']}: {s['reason']}" for s in r.skipped[:3])
        more = f" (and {len(r.skipped) - 3} more)" if len(r.skipped) > 3 else ""
        return f"all {len(r.skipped)} skipped - {shown}{more}"

    # -------------------------------------------------------------- 3. the student
    def _build_student(self) -> None:
        spec, t, acc = self.spec, self.t, self.acc
        device = acc.device
        quant = t.quantization
        if quant == "auto":
            quant = "4bit" if device.type == "cuda" and backends.bitsandbytes_available() else "none"
        elif quant == "4bit" and not backends.bitsandbytes_available():
            raise AuraError("train.quantization 4bit needs bitsandbytes: pip install bitsandbytes")
        dtype = torch.float32
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.quantization = quant
        self.resolved = backends.Resolved(device=device, quantization=quant, dtype=dtype)
        with self._timed("student"):
            llm = load_llm(spec.student, self.resolved, t.trust_remote_code)
            if quant != "none":
                from peft import prepare_model_for_kbit_training

                if device.type == "cpu":
                    # bitsandbytes repacks a 4-bit weight for a CPU inference kernel without autograd the first
                    # time the layer runs in eval mode (our answer generation does): gradients through it would
                    # then silently stop. Training must keep the differentiable layout.
                    for m in llm.modules():
                        if hasattr(m, "support_avx512bf16_for_cpu"):
                            m.support_avx512bf16_for_cpu = False

                llm = prepare_model_for_kbit_training(
                    llm, use_gradient_checkpointing=t.gradient_checkpointing,
                    gradient_checkpointing_kwargs={"use_reentrant": False})
            elif t.gradient_checkpointing:
                llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            from accelerate.utils import set_seed

            set_seed(t.seed)  # the same initial adapter on every process and in every run
            cfg = spec.model
            embedding = AudioEmbedding(cfg.audio.n_mels, self.d_student, cfg.embedding)
            embedding.match_scale(llm.get_input_embeddings().weight)
            if self.d.stem_from_teacher:
                self._init_stem(embedding)
            embedding = embedding.to(device)
            llm = attach_lora(llm, cfg.lora)
            self.aura = AuraModel(llm, embedding, cfg.prompt.audio_attention)
            heads = (ProjectionHeads(self.layer_map, self.d_student, self.info.width).to(device)
                     if self.layer_map else None)
            ctc_head = None
            if self.d.w_ctc > 0:
                ctc_head = TokenCTCHead(llm.get_input_embeddings().weight, self.processor.placeholder_id).to(device)
            decoder_loss, self.decode_ids = None, None
            if self.d.w_decode > 0:
                decoder, proj_out, pad_id, self.decode_ids = load_decoder(
                    self.info, device, resolve_teacher_dtype(t.teacher_dtype, device), t.trust_remote_code)
                decoder_loss = TeacherDecoderLoss(decoder, proj_out, pad_id)
                self.rep.message(f"teacher decoder term: the teacher's decoder reads the head of pair "
                                 f"{list(self.layer_map[self.decode_pair])}")
            self.module = DistillModule(self.aura, heads, self.layer_map, self.d, self.state_layers, self.align_layers,
                                        ctc_head, self.ctc_layer, decoder_loss, self.decode_pair)
            self.module.train()
        self.eos_ids = eos_token_ids(self.tokenizer, self.aura.llm)

    def _init_stem(self, embedding: AudioEmbedding) -> None:
        stem = whisper_stem(self.info)
        if stem is None:
            self.rep.message("embedding: conv stem starts random (the teacher has no Whisper conv stem on disk)")
            return
        try:
            embedding.load_stem(stem)
        except ValueError as exc:
            self.rep.message(f"embedding: conv stem starts random, the teacher's does not fit ({exc}); "
                             f"set embedding.conv_channels to {stem['conv2.weight'].shape[0]} to start from it")
            return
        self.rep.message("embedding: conv stem starts from the teacher's")

    def _build_optimizer(self) -> None:
        t = self.t
        named = [(n, p) for n, p in self.module.named_parameters() if p.requires_grad]
        self.trainable_names = [n for n, _ in named]
        self.trainable_params = [p for _, p in named]
        decay = [p for _, p in named if p.ndim >= 2]
        no_decay = [p for _, p in named if p.ndim < 2]
        groups = [g for g in ({"params": decay, "weight_decay": t.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
        optimizer = torch.optim.AdamW(groups, lr=t.lr)
        world = self.acc.num_processes
        self.batches_per_epoch = batches_per_epoch(len(self.train_items), t.batch_size, world)
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / t.grad_accum)
        self.total_steps = t.max_steps or t.epochs * self.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(t.scheduler, t.warmup_steps, self.total_steps))
        self.prepared, self.optimizer = self.acc.prepare(self.module, optimizer)
        self.unwrapped: DistillModule = self.acc.unwrap_model(self.prepared)
        self.collate = Collator(self.source, self.processor, self.spec.model, self.cache, self.teacher_layers,
                                want_response=self.need_response, want_base=self.d.needs_base,
                                want_ctc=self.d.w_ctc > 0, decode_ids=self.decode_ids)

    # -------------------------------------------------------------- checkpoints
    def _trainable_state(self) -> dict[str, torch.Tensor]:
        params = dict(self.unwrapped.named_parameters())
        return {n: params[n].detach().float() if params[n].dtype != torch.float32 else params[n].detach()
                for n in self.trainable_names}

    def _save_checkpoint(self, reason: str) -> Path:
        acc, root = self.acc, self.spec.checkpoint_dir
        step = self.state["step"]
        tmp = ckpt.temp_dir(root, step)
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        ckpt.save_rng(tmp, acc.process_index)
        acc.wait_for_everyone()
        path = root / ckpt.step_name(step)
        if acc.is_main_process:
            scaler = acc.scaler.state_dict() if getattr(acc, "scaler", None) is not None else None
            state = dict(self.state, spec=self.spec.to_dict(), num_processes=acc.num_processes,
                         layer_map=[list(p) for p in self.layer_map])
            ckpt.save_common(tmp, self._trainable_state(), self.optimizer.state_dict(), self.scheduler.state_dict(),
                             scaler, state)
            path = ckpt.commit(tmp, root, step, self.t.keep_checkpoints)
        acc.wait_for_everyone()
        self.last_checkpoint = path
        self.rep.event("checkpoint", step=step, epoch=self._epoch_float(), path=str(path), reason=reason)
        return path

    def _load_checkpoint(self, folder: Path) -> None:
        tensors = ckpt.load_trainable(folder)
        missing = sorted(set(self.trainable_names) - set(tensors))
        extra = sorted(set(tensors) - set(self.trainable_names))
        if missing or extra:
            raise AuraError(f"checkpoint {folder} does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
        params = dict(self.unwrapped.named_parameters())
        with torch.no_grad():
            for n in self.trainable_names:
                if params[n].shape != tensors[n].shape:
                    raise AuraError(f"checkpoint {folder}: {n} has shape {tuple(tensors[n].shape)}, "
                                    f"the model has {tuple(params[n].shape)}")
                params[n].copy_(tensors[n].to(params[n].device, params[n].dtype))
        self.optimizer.load_state_dict(ckpt.load_optimizer(folder))
        self.scheduler.load_state_dict(ckpt.load_scheduler(folder))
        scaler = ckpt.load_scaler(folder)
        if scaler is not None and getattr(self.acc, "scaler", None) is not None:
            self.acc.scaler.load_state_dict(scaler)
        saved = ckpt.read_state(folder)
        for key in ("step", "epoch", "batch", "samples", "history", "evals", "elapsed_s"):
            self.state[key] = saved[key]
        self.state["resumed_from"] = saved["step"]
        self.resume_rng = folder  # restored right before the first step

    # -------------------------------------------------------------- the loop
    def _epoch_float(self) -> float:
        return self.state["epoch"] + self.state["batch"] / max(1, self.batches_per_epoch)

    @torch.no_grad()
    def _base_targets(self, batch: Batch) -> BaseTargets:
        """The base LLM (adapter off, eval mode) reading the transcript: logits on the response slots and
        hidden states of the text-state layers on the shared suffix."""
        aura = self.unwrapped.aura
        b = batch.base
        r = batch.responses.shape[1]
        want_states = bool(self.state_layers) and batch.shared_suffix is not None
        want_align = bool(self.align_layers)
        was_training = aura.llm.training
        aura.llm.eval()
        try:
            with aura.adapter_disabled(), self.acc.autocast():
                out = aura(b.input_ids, b.attention_mask, b.position_ids, use_cache=False, logits_to_keep=r + 1,
                           output_hidden_states=want_states or want_align)
        finally:
            aura.llm.train(was_training)
        targets = BaseTargets(out.logits[:, :-1].float(), [])
        if want_states and batch.shared_suffix.shape[1]:
            width = batch.shared_suffix.shape[1]
            targets.states = [out.hidden_states[layer][:, -width:].float() for layer in self.state_layers]
        if want_align:
            n_max = max([row[0][1] for row in b.audio_spans if row] or [1])
            targets.transcript = [gather_spans(out.hidden_states[layer], b.audio_spans, n_max).float()
                                  for layer in self.align_layers]
            targets.transcript_mask = span_mask(b.audio_spans, n_max).to(out.logits.device)
        return targets

    def _should_stop(self, stop: StopFlag) -> str | None:
        if self.acc.num_processes == 1:
            return stop.signal
        flag = torch.tensor([2.0 if stop.signal == "SIGTERM" else 1.0 if stop.signal else 0.0], device=self.acc.device)
        got = float(self.acc.reduce(flag, "sum").item())
        if got <= 0:
            return None
        return stop.signal or ("SIGTERM" if got >= 2 else "SIGINT")

    def _loop(self, stop: StopFlag) -> TrainResult:
        acc, t, st = self.acc, self.t, self.state
        world, rank = acc.num_processes, acc.process_index
        self.last_checkpoint: Path | None = None
        metrics: dict[str, Any] = st["evals"][-1] if st["evals"] else {}
        last_eval_step = metrics.get("step", -1)
        if getattr(self, "resume_rng", None) is not None:
            ckpt.restore_rng(self.resume_rng, rank)
        self.rep.message(f"training: {len(self.train_items)} clips, {self.total_steps} steps "
                         f"({self.steps_per_epoch} per epoch), {world} process(es), device {acc.device}, "
                         f"mixed precision {acc.mixed_precision}, quantization {self.quantization}")
        elapsed_base = st["elapsed_s"]
        loop_t0 = time.perf_counter()
        loop_samples = 0
        loop_steps = 0
        paused = 0.0  # eval and checkpoint time, left out of samples/s
        interrupted = None
        while st["step"] < self.total_steps and interrupted is None:
            batches = epoch_batches(len(self.train_items), st["epoch"], t.seed, t.batch_size, world, rank)
            data = loader(self.train_items, batches[st["batch"]:], self.collate, t.num_workers)
            i = st["batch"]
            while i < len(batches) and st["step"] < self.total_steps:
                window = min(t.grad_accum, len(batches) - i)
                sums: dict[str, float] = {}
                n_local = 0
                for j in range(window):
                    batch = next(data)
                    if self.masks.active:  # the student hears a masked clip; its targets stay the clean clip's
                        batch.features = spec_augment(batch.features, batch.frame_lengths, self.masks,
                                                      mask_generator(t.seed, st["step"], j, rank))
                    batch = batch.to(acc.device)
                    base = self._base_targets(batch) if self.d.needs_base else None
                    sync = contextlib.nullcontext() if j == window - 1 else acc.no_sync(self.prepared)
                    with sync:
                        terms = self.prepared(batch, base)
                        loss = total_loss(terms, self.d)
                        acc.backward(loss / window)
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) / window
                    sums["total"] = sums.get("total", 0.0) + float(loss.detach()) / window
                    n_local += batch.size
                if t.max_grad_norm > 0:
                    acc.clip_grad_norm_(self.trainable_params, t.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                i += window
                st["step"] += 1
                st["epoch"], st["batch"] = (st["epoch"] + 1, 0) if i >= len(batches) else (st["epoch"], i)
                st["samples"] += n_local * world
                loop_samples += n_local * world
                loop_steps += 1
                record = self._record(sums)
                st["history"].append(record)
                if st["step"] % t.log_every == 0 or st["step"] == self.total_steps:
                    elapsed = time.perf_counter() - loop_t0 - paused
                    rate = loop_samples / elapsed if elapsed > 0 else None
                    eta = (self.total_steps - st["step"]) * elapsed / loop_steps if loop_steps else None
                    self.rep.event("progress", stage="train", step=st["step"], total_steps=self.total_steps,
                                   epoch=self._epoch_float(), lr=self.scheduler.get_last_lr()[0],
                                   samples_per_s=rate, eta_s=eta, elapsed_s=elapsed_base + elapsed,
                                   **record_fields(record))
                if self.on_step is not None:
                    self.on_step(st["step"])
                interrupted = self._should_stop(stop)
                p0 = time.perf_counter()
                if not interrupted and t.eval_every and st["step"] % t.eval_every == 0 and self.val_items:
                    metrics = self._evaluate()  # before the checkpoint, so that it holds this eval too
                    last_eval_step = st["step"]
                if interrupted or (t.checkpoint_every and st["step"] % t.checkpoint_every == 0):
                    st["elapsed_s"] = elapsed_base + (p0 - loop_t0 - paused)
                    self._save_checkpoint(interrupted or "interval")
                paused += time.perf_counter() - p0
                if interrupted:
                    break
        loop_time = time.perf_counter() - loop_t0 - paused
        self.timing["train"] = loop_time
        st["elapsed_s"] = elapsed_base + loop_time
        if interrupted is None and t.eval_at_end and self.val_items and last_eval_step != st["step"]:
            metrics = self._evaluate()
        output = None
        if interrupted is None:
            output = self._save_bundle(metrics)
        return self._finish(output, metrics, interrupted, loop_samples, loop_time)

    def _record(self, sums: dict[str, float]) -> dict[str, float]:
        keys = sorted(sums)
        values = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=self.acc.device)
        if self.acc.num_processes > 1:
            values = self.acc.reduce(values, "mean")
        reduced = dict(zip(keys, values.tolist()))
        record = {"step": self.state["step"], "loss": reduced.pop("total")}
        record.update({f"loss_{k}": v for k, v in reduced.items()})
        return record

    # -------------------------------------------------------------- validation
    def _evaluate(self) -> dict[str, Any]:
        acc = self.acc
        with self._timed("eval"):
            devices = [acc.device.index or 0] if acc.device.type == "cuda" else []
            with torch.random.fork_rng(devices=devices):
                metrics = self._evaluate_inner()
        metrics = {"step": self.state["step"], "epoch": self._epoch_float(), **metrics}
        self.state["evals"].append(metrics)
        self.rep.event("eval", **metrics)
        return metrics

    def _evaluate_inner(self) -> dict[str, Any]:
        acc, t = self.acc, self.t
        module = self.unwrapped
        mine = self.ranks.share(self.val_items)
        collate = Collator(self.source, self.processor, self.spec.model, self.cache, self.teacher_layers,
                           want_response=self.need_response, want_base=self.need_response, want_prompt_only=True,
                           want_ctc=self.d.w_ctc > 0, decode_ids=self.decode_ids)
        k = len(self.layer_map)
        # [items, layer_positions, layer_sum, cos_1..cos_k, response_tokens, kl_sum, ce_sum, token_hits, agree,
        #  state_positions, state_sum, align_items, align_sum, ctc_items, ctc_sum, decode_items, decode_sum]
        sums = torch.zeros(16 + k, dtype=torch.float64)
        gen = GenerationSettings(max_new_tokens=t.response_max_tokens)
        was_training = module.training
        module.eval()
        try:
            for start in range(0, len(mine), t.batch_size):
                batch = collate(mine[start:start + t.batch_size]).to(acc.device)
                base = self._base_targets(batch) if batch.base is not None else None
                with acc.autocast():
                    out = module.eval_sums(batch, base)
                sums[0] += out["items"]
                sums[1] += out.get("layer_positions", 0.0)
                sums[2] += out.get("layer_sum", 0.0)
                for j, c in enumerate(out.get("cosine_sums", [])):
                    sums[3 + j] += c
                sums[3 + k] += out.get("response_tokens", 0.0)
                sums[4 + k] += out.get("kl_sum", 0.0)
                sums[5 + k] += out.get("ce_sum", 0.0)
                sums[6 + k] += out.get("token_hits", 0.0)
                if batch.responses is not None:
                    sums[7 + k] += self._agreements(batch, gen)
                sums[8 + k] += out.get("state_positions", 0.0)
                sums[9 + k] += out.get("state_sum", 0.0)
                sums[10 + k] += out.get("align_items", 0.0)
                sums[11 + k] += out.get("align_sum", 0.0)
                sums[12 + k] += out.get("ctc_items", 0.0)
                sums[13 + k] += out.get("ctc_sum", 0.0)
                sums[14 + k] += out.get("decode_items", 0.0)
                sums[15 + k] += out.get("decode_sum", 0.0)
        finally:
            module.train(was_training)
        if acc.num_processes > 1:
            sums = acc.reduce(sums.to(acc.device), "sum").cpu()
        return self._metrics_from(sums.tolist(), k)

    @torch.no_grad()
    def _agreements(self, batch: Batch, gen: GenerationSettings) -> int:
        """Clips whose greedy answer from audio equals the base LLM's answer from the transcript."""
        aura = self.unwrapped.aura
        p = batch.prompt_only
        with self.acc.autocast():
            out = aura.generate_ids(p.input_ids, p.attention_mask, p.audio_spans, batch.features, batch.frame_lengths,
                                    gen=gen, eos_ids=self.eos_ids, pad_id=self.processor.pad_id,
                                    position_ids=p.position_ids)
        agree = 0
        for row, ref in zip(out.tolist(), batch.response_lists):
            agree += int(cut_at_eos(row, self.eos_ids) == cut_at_eos(ref, self.eos_ids))
        return agree

    def _metrics_from(self, s: list[float], k: int) -> dict[str, Any]:
        n_items, positions = s[0], s[1]
        m: dict[str, Any] = {"val_items": int(n_items)}
        loss = 0.0
        if k and positions > 0:
            m["val_loss_layer"] = s[2] / positions
            loss += self.d.w_layer * m["val_loss_layer"]
            cos = [c / positions for c in s[3:3 + k]]
            for (sl, tl), c in zip(self.layer_map, cos):
                m[f"val_cosine_s{sl}_t{tl}"] = c
            m["val_cosine"] = sum(cos) / len(cos)
        tokens = s[3 + k]
        if tokens > 0:
            m["val_kl"] = s[4 + k] / tokens
            m["val_loss_ce"] = s[5 + k] / tokens
            if self.d.w_kl > 0:
                m["val_loss_kl"] = m["val_kl"]
                loss += self.d.w_kl * m["val_kl"]
            if self.d.w_ce > 0:
                loss += self.d.w_ce * m["val_loss_ce"]
            m["val_token_accuracy"] = s[6 + k] / tokens
            m["val_agreement"] = s[7 + k] / max(1.0, n_items)
        if s[8 + k] > 0:
            m["val_loss_state"] = s[9 + k] / s[8 + k]
            loss += self.d.w_state * m["val_loss_state"]
        if s[10 + k] > 0:
            m["val_loss_align"] = s[11 + k] / s[10 + k]
            loss += self.d.w_align * m["val_loss_align"]
        if s[12 + k] > 0:
            m["val_loss_ctc"] = s[13 + k] / s[12 + k]
            loss += self.d.w_ctc * m["val_loss_ctc"]
        if s[14 + k] > 0:
            m["val_loss_decode"] = s[15 + k] / s[14 + k]
            loss += self.d.w_decode * m["val_loss_decode"]
        m["val_loss"] = loss
        return m

    # -------------------------------------------------------------- the end
    def _save_bundle(self, metrics: dict[str, Any]) -> Path:
        spec, t, acc = self.spec, self.t, self.acc
        out = Path(spec.output)
        if acc.is_main_process:
            with self._timed("save"):
                save_bundle(out, self.unwrapped.aura, self.tokenizer, spec.model, base_id=spec.student,
                            base_config=self.llm_config, teacher=spec.teacher, training=self._summary(),
                            metrics={k: v for k, v in metrics.items()},
                            include_base=spec.student if t.bundle_base else None,
                            include_teacher=spec.teacher if t.bundle_teacher else None, card=self._card(metrics))
        acc.wait_for_everyone()
        return out

    def _summary(self) -> dict[str, Any]:
        st = self.state
        history = st["history"]
        stride = max(1, math.ceil(len(history) / HISTORY_IN_BUNDLE))
        return {
            "teacher": self.spec.teacher, "student": self.spec.student, "data": self.spec.data,
            "steps": st["step"], "total_steps": self.total_steps, "epochs": round(self._epoch_float(), 4),
            "samples_seen": st["samples"], "num_processes": self.acc.num_processes,
            "device": str(self.acc.device), "mixed_precision": self.acc.mixed_precision,
            "quantization": self.quantization, "layer_map": [list(p) for p in self.layer_map],
            "teacher_info": {"model_type": self.info.model_type, "layers": self.info.num_layers,
                             "width": self.info.width, "features": self.info.describe_features()},
            "first_loss": history[0]["loss"] if history else None,
            "final_loss": history[-1] if history else None,
            "loss_history": history[::stride] + ([history[-1]] if history and (len(history) - 1) % stride else []),
            "evals": st["evals"], "data_report": self.report.to_dict(), "cache": dict(self.cache.stats),
            "teacher_loaded": self.lazy_teacher.loaded, "resumed_from_step": st["resumed_from"],
            "elapsed_s": round(st["elapsed_s"], 3), "config": self.spec.to_dict(),
        }

    def _card(self, metrics: dict[str, Any]) -> str:
        lines = [
            "# AuRA adapter", "",
            f"Distilled from teacher `{self.spec.teacher}` into base LLM `{self.spec.student}` "
            f"on `{self.spec.data}` ({self.report.n_train} training clips, {self.state['step']} steps).", "",
            "Load it with `aura chat --bundle <this folder>`. Validation metrics:", "",
        ]
        lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in metrics.items()]
        return "\n".join(lines) + "\n"

    def _finish(self, output: Path | None, metrics: dict[str, Any], interrupted: str | None, samples: int,
                loop_time: float) -> TrainResult:
        prep = sum(self.timing.get(k, 0.0) for k in ("validate", "transcripts", "teacher", "responses"))
        st = self.state
        result = TrainResult(
            output=output, steps=st["step"], total_steps=self.total_steps, epoch=self._epoch_float(),
            losses=list(st["history"]), metrics=metrics, data=self.report.to_dict(), samples=samples,
            timing=dict(self.timing), samples_per_s=samples / loop_time if loop_time > 0 else 0.0,
            end_to_end_samples_per_s=samples / (prep + loop_time) if prep + loop_time > 0 else 0.0,
            interrupted=interrupted, checkpoint=self.last_checkpoint, teacher_loaded=self.lazy_teacher.loaded,
            cache=dict(self.cache.stats), num_processes=self.acc.num_processes,
        )
        if interrupted is None:
            self.rep.event("finished", step=st["step"], epoch=self._epoch_float(), loss=result.final_loss,
                           output=str(output), metrics=metrics, data=result.data,
                           samples_per_s=result.samples_per_s, elapsed_s=st["elapsed_s"], interrupted=None)
        return result


    def _stopped_early(self, signal_name: str) -> TrainResult:
        """A stop before the first step: no checkpoint (there is no training state yet), exit 130/143."""
        report = getattr(self, "report", None)
        cache = getattr(self, "cache", None)
        lazy = getattr(self, "lazy_teacher", None)
        return TrainResult(output=None, steps=0, total_steps=0, epoch=0.0, losses=[], metrics={},
                           data=report.to_dict() if report else {}, samples=0, timing=dict(self.timing),
                           samples_per_s=0.0, end_to_end_samples_per_s=0.0, interrupted=signal_name,
                           teacher_loaded=bool(lazy and lazy.loaded), cache=dict(cache.stats) if cache else {},
                           num_processes=self.acc.num_processes)


def record_fields(record: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in record.items() if k != "step"}


def _default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("aura")) / "train"


def train(spec: TrainSpec, reporter: Reporter | None = None, *, on_step: Callable[[int], None] | None = None,
          teacher_loader: Callable[..., Teacher] | None = None) -> TrainResult:
    """Run (or resume) one distillation; returns what it did. Raises AuraError for bad input.

    ``reporter`` receives the progress events (default: a tqdm bar on stderr). ``on_step(step)`` is
    called after every optimizer step (tests use it to deliver a signal at a known step).
    ``teacher_loader(info, device, dtype, trust_remote_code)`` replaces ``Teacher.load``.
    """
    return Trainer(spec, reporter or TqdmReporter(), on_step, teacher_loader).run()
