"""The models of a run: first what they look like, checked without loading weights; then the student.

``check_models`` reads only the tokenizer and the configs, so a bad layer map, a student without
chat template or a teacher that is no audio encoder fail before any data or weights are touched.
``build_student`` loads the base LLM (frozen; 4-bit NF4 + ``prepare_model_for_kbit_training`` on
CUDA, as QLoRA does), adds a fresh LoRA and AudioEmbedding and the training-only projection heads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from .. import backends
from ..bundle import load_llm, load_llm_config, load_tokenizer
from ..distill import ProjectionHeads, TeacherDecoderLoss, TokenCTCHead
from ..embedding import AudioEmbedding
from ..errors import AuraError
from ..model import AuraModel, attach_lora, eos_token_ids
from ..pooling import TokenPooler
from ..processor import AuraProcessor
from .config import TrainSpec
from .objective import DistillModule
from .progress import Reporter
from .teacher import TeacherInfo, check_decoder_teacher, inspect_teacher, load_decoder, resolve_teacher_dtype, whisper_stem


@dataclass
class ModelPlan:
    """What the student and teacher look like and which of their layers the loss terms read."""

    tokenizer: Any  # the student's
    processor: AuraProcessor
    llm_config: Any  # the student LLM's config
    n_student: int  # student layers
    d_student: int  # student width
    info: TeacherInfo
    layer_map: list[tuple[int, int]]  # (student layer, teacher layer) pairs of the layer term ([] when off)
    state_layers: list[int]  # student layers of the text-state term ([] when off)
    align_layers: list[int]  # student layers of the text-alignment term ([] when off)
    ctc_layer: int | None  # student layer the CTC head spells from (None when off)
    decode_pair: int | None  # index in layer_map of the pair the teacher's decoder reads (None when off)
    read_layers: list[int] = field(default_factory=list)  # token-rate: LLM layers of the read term ([] when off)

    @property
    def teacher_layers(self) -> list[int]:
        """The teacher layers whose states are cached and read."""
        return sorted({tl for _, tl in self.layer_map})


def check_models(spec: TrainSpec) -> ModelPlan:
    """Read the tokenizer and the configs and resolve every layer setting; refuses what cannot work."""
    t, d = spec.train, spec.distill
    tokenizer = load_tokenizer(spec.student, t.trust_remote_code)
    processor = AuraProcessor(tokenizer, spec.model.prompt)  # refuses a tokenizer without chat template
    llm_config = load_llm_config(spec.student, t.trust_remote_code)
    text_cfg = llm_config.get_text_config() if hasattr(llm_config, "get_text_config") else llm_config
    n_student, d_student = int(text_cfg.num_hidden_layers), int(text_cfg.hidden_size)
    spec.model.lora.check_layers(n_student)  # before any data or weights
    if spec.model.pooling.enabled:
        check_token_rate(spec, n_student)
    elif d.token_rate:
        raise AuraError("distill.w_count, w_tokens, w_read and w_slot_kl train token-rate AuRA: set pooling.layers "
                        "(the lower LLM layers that hear the clip) or switch them off")
    info = inspect_teacher(spec.teacher, t.trust_remote_code, want_transcriber=d.needs_transcript)
    layer_map = d.resolve_layer_map(n_student, info.num_layers) if d.w_layer > 0 else []
    state_layers = d.resolve_state_layers(n_student) if d.w_state > 0 else []
    align_layers = d.resolve_align_layers(n_student) if d.w_align > 0 else []
    ctc_layer = d.resolve_ctc_layer(n_student, layer_map) if d.w_ctc > 0 else None
    decode_pair = None
    if d.w_decode > 0:
        check_decoder_teacher(info)
        decode_pair = d.resolve_decode_pair(layer_map, info.num_layers)
    _check_bundle_copies(spec)
    read_layers = d.resolve_read_layers(n_student) if d.w_read > 0 else []
    if layer_map and spec.model.pooling.enabled and max(sl for sl, _ in layer_map) > spec.model.pooling.layers:
        raise AuraError(f"the layer map {[list(p) for p in layer_map]} pairs student layers above pooling.layers "
                        f"{spec.model.pooling.layers}: only the hearing layers see the clip alone")
    return ModelPlan(tokenizer, processor, llm_config, n_student, d_student, info, layer_map, state_layers,
                     align_layers, ctc_layer, decode_pair, read_layers)


def check_token_rate(spec: TrainSpec, n_student: int) -> None:
    """Settings that token-rate AuRA needs; the LoRA goes on the hearing layers only (the base LLM reads)."""
    d, k = spec.distill, spec.model.pooling.layers
    if k >= n_student:
        raise AuraError(f"pooling.layers {k}: the student LLM has {n_student} layers; the hearing layers must "
                        "leave some to read with")
    if d.w_count <= 0:
        raise AuraError("token-rate AuRA needs distill.w_count > 0: the pooler must learn to count the tokens it "
                        "makes at inference")
    mixed = [f"w_{t}" for t in ("state", "align", "ctc", "decode") if d.weight(t) > 0]
    if mixed:
        raise AuraError(f"{', '.join(mixed)} belong to frame-rate AuRA; with pooling.layers set, use "
                        "w_tokens, w_read and w_slot_kl")
    lora = spec.model.lora
    if lora.layers is None:
        spec.model.lora = dataclasses.replace(lora, layers=tuple(range(1, k + 1)))
    elif max(lora.layers) > k:
        raise AuraError(f"lora.layers {list(lora.layers)}: with pooling.layers {k} only layers 1..{k} hear; the "
                        "base LLM reads without the adapter, so LoRA above them would never be used")


def _check_bundle_copies(spec: TrainSpec) -> None:
    for flag, ref, what in ((spec.train.bundle_base, spec.student, "train.bundle_base"),
                            (spec.train.bundle_teacher, spec.teacher, "train.bundle_teacher")):
        if flag and not Path(ref).is_dir():
            raise AuraError(f"{what} copies a local model folder into the bundle, but {ref!r} is not a local folder")


@dataclass
class Student:
    """The student built for training."""

    module: DistillModule  # the AuraModel (base LLM + LoRA + AudioEmbedding) with the training-only heads
    quantization: str  # of the base LLM: "4bit" | "none"
    resolved: backends.Resolved  # device, quantization and dtype the base LLM was loaded with
    decode_ids: Callable[[str], list[int]] | None  # transcript -> teacher decoder ids (None: that term is off)
    eos_ids: list[int]  # the tokens that end an answer

    @property
    def aura(self) -> AuraModel:
        return self.module.aura


def resolve_quantization(name: str, device: torch.device) -> backends.Resolved:
    """How the frozen base LLM is loaded: 4-bit on CUDA when bitsandbytes is there (auto), compute dtype."""
    if name == "auto":
        name = "4bit" if device.type == "cuda" and backends.bitsandbytes_available() else "none"
    elif name == "4bit" and not backends.bitsandbytes_available():
        raise AuraError("train.quantization 4bit needs bitsandbytes: pip install bitsandbytes")
    dtype = torch.float32
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return backends.Resolved(device=device, quantization=name, dtype=dtype)


def load_base_llm(spec: TrainSpec, resolved: backends.Resolved):
    """The frozen base LLM, made ready for training through it (k-bit preparation, gradient checkpointing)."""
    t = spec.train
    llm = load_llm(spec.student, resolved, t.trust_remote_code)
    if resolved.quantization == "none":
        if t.gradient_checkpointing:
            llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return llm
    from peft import prepare_model_for_kbit_training

    if resolved.device.type == "cpu":
        # bitsandbytes repacks a 4-bit weight for a CPU inference kernel without autograd the first
        # time the layer runs in eval mode (our answer generation does): gradients through it would
        # then silently stop. Training must keep the differentiable layout.
        for m in llm.modules():
            if hasattr(m, "support_avx512bf16_for_cpu"):
                m.support_avx512bf16_for_cpu = False
    return prepare_model_for_kbit_training(llm, use_gradient_checkpointing=t.gradient_checkpointing,
                                           gradient_checkpointing_kwargs={"use_reentrant": False})


def build_student(spec: TrainSpec, plan: ModelPlan, device: torch.device, rep: Reporter) -> Student:
    """Base LLM + a fresh LoRA and AudioEmbedding (the same on every process and in every run) + the heads."""
    from accelerate.utils import set_seed

    resolved = resolve_quantization(spec.train.quantization, device)
    llm = load_base_llm(spec, resolved)
    set_seed(spec.train.seed)  # the same initial adapter on every process and in every run
    cfg = spec.model
    embedding = AudioEmbedding(cfg.audio.n_mels, plan.d_student, cfg.embedding)
    embedding.match_scale(llm.get_input_embeddings().weight)
    if spec.distill.stem_from_teacher:
        init_stem(embedding, plan.info, rep)
    embedding = embedding.to(device)
    llm = attach_lora(llm, cfg.lora)
    pooler = None
    if cfg.pooling.enabled:
        pooler = TokenPooler(plan.d_student, cfg.pooling)
        pooler.match_scale(llm.get_input_embeddings().weight)
        pooler = pooler.to(device)
    aura = AuraModel(llm, embedding, cfg.prompt.audio_attention, None, pooler, cfg.pooling.layers)
    module, decode_ids = _distill_module(spec, plan, aura, device, rep)
    module.train()
    return Student(module, resolved.quantization, resolved, decode_ids, eos_token_ids(plan.tokenizer, aura.llm))


def _distill_module(spec: TrainSpec, plan: ModelPlan, aura: AuraModel, device: torch.device, rep: Reporter):
    """(the DistillModule with the heads of the active terms, the teacher's transcript -> decoder ids or None)."""
    d = spec.distill
    heads = ProjectionHeads(plan.layer_map, plan.d_student, plan.info.width).to(device) if plan.layer_map else None
    ctc_head = None
    if d.w_ctc > 0:
        ctc_head = TokenCTCHead(aura.llm.get_input_embeddings().weight, plan.processor.placeholder_id).to(device)
    decoder_loss, decode_ids = None, None
    if d.w_decode > 0:
        decoder, proj_out, pad_id, decode_ids = load_decoder(
            plan.info, device, resolve_teacher_dtype(spec.train.teacher_dtype, device), spec.train.trust_remote_code)
        decoder_loss = TeacherDecoderLoss(decoder, proj_out, pad_id)
        rep.message(f"teacher decoder term: the teacher's decoder reads the head of pair "
                    f"{list(plan.layer_map[plan.decode_pair])}")
    module = DistillModule(aura, heads, plan.layer_map, d, plan.state_layers, plan.align_layers, ctc_head,
                           plan.ctc_layer, decoder_loss, plan.decode_pair, plan.read_layers)
    return module, decode_ids


def init_stem(embedding: AudioEmbedding, info: TeacherInfo, rep: Reporter) -> None:
    """Start the embedding's conv stem from the Whisper teacher's, when it has one that fits."""
    stem = whisper_stem(info)
    if stem is None:
        rep.message("embedding: conv stem starts random (the teacher has no Whisper conv stem on disk)")
        return
    try:
        embedding.load_stem(stem)
    except ValueError as exc:
        rep.message(f"embedding: conv stem starts random, the teacher's does not fit ({exc}); "
                    f"set embedding.conv_channels to {stem['conv2.weight'].shape[0]} to start from it")
        return
    rep.message("embedding: conv stem starts from the teacher's")
