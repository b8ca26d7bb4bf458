"""Distillation losses, as pure functions (no model loading, no I/O).

Two signals teach the student (LLM + LoRA reading audio through the AudioEmbedding):

* **Layer-wise alignment.** Student decoder layer ``s`` is paired with teacher encoder
  layer ``t``. On the audio span, the student state goes through a training-only
  linear head to the teacher width and is compared with the teacher state (time pooled
  by ``stack`` to the student's audio-token rate): ``(1 - cosine) + beta * MSE`` on
  layer-normalised features, averaged over real (unpadded) positions.
* **Response distillation.** KL between the student's next-token distributions on the
  response and those of the frozen base LLM reading the transcript (Hinton-style
  temperature), optionally plus plain cross-entropy on the response tokens.
* **Text-state distillation** (optional). After the audio span, the student's prompt and
  the base LLM's transcript prompt are the same tokens (the end of the user turn, the
  assistant header, the response). On those shared positions the student's hidden states,
  layer by layer, are pulled towards the base LLM's: after hearing the request the student
  should *think* what the base LLM thinks after reading it, not only answer alike. Same
  per-position form as the layer loss, without heads (both sides are the same LLM).

Conventions used throughout:

* Masks are ``torch.bool`` tensors, ``True`` = a real position that counts.
  Padding positions never contribute, even when they hold garbage or NaN: every loss
  selects with ``torch.where`` before doing any arithmetic.
* Layer numbers are 1-based and index Hugging Face ``hidden_states`` directly
  (``hidden_states[0]`` is the embedding output, ``hidden_states[k]`` the output of layer k).
* Losses are computed in float32 whatever the input dtype (bf16/fp16 on GPU) and
  return a 0-dim tensor.
* Teacher tensors are targets: they are detached, no gradient flows into them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import check, ConfigBase, check_layer_numbers, check_layers_exist
from .errors import AuraError

LayerMap = list[tuple[int, int]]

# Names of the terms total_loss() combines, and the config weight of each.
LOSS_TERMS = ("layer", "kl", "ce", "state", "align", "ctc", "decode")


# --------------------------------------------------------------------------- config


def _normalise_layer_map(layer_map: Any) -> tuple[tuple[int, int], ...]:
    """Sequence of pairs (tuples or JSON lists) -> tuple of (student, teacher) int tuples.

    Checks only what needs no model: the shape of each pair and indices >= 1.
    """
    if isinstance(layer_map, (str, bytes)) or not isinstance(layer_map, Sequence):
        raise AuraError(f"layer_map must be a list of [student_layer, teacher_layer] pairs, got {layer_map!r}")
    if len(layer_map) == 0:
        raise AuraError("layer_map must not be empty; use null/None for the default map")
    pairs = []
    for pair in layer_map:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise AuraError(f"layer_map entry must be a [student_layer, teacher_layer] pair, got {pair!r}")
        s, t = pair
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in (s, t)):
            raise AuraError(f"layer_map entry must hold two integers, got {pair!r}")
        if s < 1 or t < 1:
            raise AuraError(
                f"layer_map entry {pair!r}: layer indices are 1-based (0 is the embedding output), must be >= 1"
            )
        pairs.append((s, t))
    return tuple(pairs)


@dataclass
class DistillConfig(ConfigBase):
    """Distillation objective: which terms count, how much, and which layers are paired.

    Total loss = w_layer * mean_k L_layer(k) + w_kl * KL + w_ce * CE + w_state * mean_l L_state(l)
    + w_align * mean_l L_align(l) + w_ctc * CTC + w_decode * CE_decoder;
    a weight of 0 switches its term off (it is then not even computed), which is how ablations run.
    """

    w_layer: float = 1.0  # weight of the layer-wise alignment loss (mean over layer pairs)
    w_kl: float = 1.0  # weight of the response KL against the base LLM reading the transcript
    w_ce: float = 0.0  # weight of plain cross-entropy on the response tokens; off by default (KL carries more)
    # weight of the text-state loss: student vs base-LLM-reading-the-transcript hidden states on the positions
    # after the audio span (end of the user turn, assistant header, response), every layer in state_layers
    w_state: float = 0.0
    state_layers: tuple[int, ...] | None = None  # 1-based LLM layers of the text-state loss; None = every layer
    # weight of the text-alignment loss: on the audio span, the student's hidden states must hold the base LLM's
    # states of the transcript tokens, in order, one audio position per token (monotonic soft-DTW; the other
    # positions are free), at every layer in align_layers, so the upper layers read heard words as they read text
    w_align: float = 0.0
    # hidden_states indices of the text-alignment loss; None = n // 2 .. n - 1, the inputs of the upper half's layers
    align_layers: tuple[int, ...] | None = None
    align_gamma: float = 0.1  # soft-min temperature of the alignment (smaller: closer to the single best alignment)
    # weight of a CTC loss on the audio span: the student's states at hidden_states[ctc_layer] must spell the
    # transcript in the LLM's own tokens, classified by cosine against the LLM's (frozen) token embeddings, with
    # the placeholder/pad token as CTC blank: the heard words become text-like directions, in order
    w_ctc: float = 0.0
    ctc_layer: int | None = None  # hidden_states index of the CTC loss; None = the top student layer of the layer map
    # weight of the teacher-decoder term: the layer map's pair that ends at the teacher's top (output) layer has a
    # projection head; its output on the audio span is read by the Whisper teacher's own frozen decoder, which
    # must write the transcript (teacher-forced cross-entropy). The layer loss matches the teacher's states
    # direction by direction; this one weights what the teacher's decoder reads in them (the words). Needs
    # w_layer > 0 and a Whisper teacher with its decoder and tokenizer.
    w_decode: float = 0.0
    beta: float = 1.0  # weight of the MSE inside each layer loss, next to (1 - cosine)
    kl_temperature: float = 2.0  # softens both distributions in the KL; ~2 passes on the teacher's "dark knowledge"
    # (student_layer, teacher_layer) pairs, 1-based hidden_states indices; None = default_layer_map()
    layer_map: tuple[tuple[int, int], ...] | None = None
    # An instruction that makes the base LLM say the request back, e.g. "Repeat exactly what I said.". When set,
    # every training clip is also used once with it after the audio, and the KL/CE terms then distil the base
    # LLM's echo of the transcript: word-by-word supervision of what was heard, next to the (short) answers.
    # Validation keeps the bare requests. "" = off.
    echo_prompt: str = ""
    # Start the AudioEmbedding's conv stem from the Whisper teacher's own (conv1/conv2), when the shapes fit:
    # embedding.conv_channels equal to the teacher's width and the same n_mels. A trained acoustic front-end
    # instead of a random one; the rest of the embedding and the LoRA start as usual.
    stem_from_teacher: bool = True
    # SpecAugment on the student's log-mel input during training ("noisy student"): the teacher states and base
    # answers stay those of the clean clip. 0 masks = off (the default); validation and inference never mask.
    student_freq_masks: int = 0  # mel-band masks per training clip, each 0..student_freq_width bands wide
    student_freq_width: int = 8  # widest mel-band mask, in bands
    student_time_masks: int = 0  # time masks per training clip, each 0..student_time_width of its frames long
    student_time_width: float = 0.05  # longest time mask, as a fraction of the clip's frames (at most 0.5)

    def __post_init__(self) -> None:
        for name in ("w_layer", "w_kl", "w_ce", "w_state", "w_align", "w_ctc", "w_decode"):
            w = getattr(self, name)
            check(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0,
                   f"{name} must be a finite number >= 0, got {w!r}")
        check(any(getattr(self, f"w_{t}") > 0 for t in LOSS_TERMS),
               "at least one of w_layer, w_kl, w_ce, w_state, w_align, w_ctc, w_decode must be > 0, got all zero")
        check(self.w_decode == 0 or self.w_layer > 0,
               "w_decode reads the layer-wise term's projection head: it needs w_layer > 0")
        check(self.ctc_layer is None or (isinstance(self.ctc_layer, int) and self.ctc_layer >= 0),
               f"ctc_layer must be a hidden_states index >= 0 (or null), got {self.ctc_layer!r}")
        for name in ("state_layers", "align_layers"):
            if getattr(self, name) is not None:
                setattr(self, name, check_layer_numbers(name, getattr(self, name)))
        check(isinstance(self.align_gamma, (int, float)) and self.align_gamma > 0,
               f"align_gamma must be > 0, got {self.align_gamma!r}")
        check(isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0,
               f"beta must be a finite number >= 0, got {self.beta!r}")
        check(isinstance(self.kl_temperature, (int, float)) and math.isfinite(self.kl_temperature)
               and self.kl_temperature > 0,
               f"kl_temperature must be > 0, got {self.kl_temperature!r}")
        check(isinstance(self.echo_prompt, str), f"echo_prompt must be a string, got {self.echo_prompt!r}")
        check(not self.echo_prompt or self.w_kl > 0 or self.w_ce > 0 or self.w_state > 0,
               "echo_prompt needs a response term (w_kl, w_ce or w_state > 0): the echo is distilled as a response")
        for name in ("student_freq_masks", "student_freq_width", "student_time_masks"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{name} must be an integer >= 0, got {v!r}")
        check(isinstance(self.student_time_width, (int, float)) and 0 <= self.student_time_width <= 0.5,
               f"student_time_width must be a fraction in [0, 0.5], got {self.student_time_width!r}")
        if self.layer_map is not None:
            # Accepts JSON's list of lists as well as tuples; stored as a tuple of tuples.
            self.layer_map = _normalise_layer_map(self.layer_map)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.layer_map is not None:
            out["layer_map"] = [list(pair) for pair in self.layer_map]  # plain JSON: list of lists
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DistillConfig":
        # The base class turns top-level lists into tuples; __post_init__ then normalises
        # the inner [s, t] lists, so a JSON layer_map round-trips.
        return super().from_dict(data)

    def weight(self, term: str) -> float:
        """Config weight of one of LOSS_TERMS."""
        if term not in LOSS_TERMS:
            raise ValueError(f"unknown loss term {term!r}; known: {LOSS_TERMS}")
        return float(getattr(self, f"w_{term}"))

    @property
    def needs_response(self) -> bool:
        """Whether a term reads the base LLM's answer (KL, CE and the text-state/alignment losses all do)."""
        return self.w_kl > 0 or self.w_ce > 0 or self.w_state > 0 or self.w_align > 0 or self.w_ctc > 0

    @property
    def needs_base(self) -> bool:
        """Whether training runs the base LLM on the transcript each step (KL, text states, text alignment)."""
        return self.w_kl > 0 or self.w_state > 0 or self.w_align > 0

    def resolve_state_layers(self, n_student_layers: int) -> list[int]:
        """The LLM layers the text-state loss compares: the configured ones (checked), else all of them."""
        return _resolve_layers("state_layers", self.state_layers, range(1, n_student_layers + 1), n_student_layers)

    def resolve_align_layers(self, n_student_layers: int) -> list[int]:
        """The hidden_states the text-alignment loss compares: the configured ones (checked), else the inputs
        of the upper half's layers, n // 2 .. n - 1 (at least layer 1)."""
        default = range(max(1, n_student_layers // 2), max(2, n_student_layers))
        return _resolve_layers("align_layers", self.align_layers, default, n_student_layers)

    @property
    def needs_transcript(self) -> bool:
        """Whether a term reads each clip's transcript (the response terms, and the teacher-decoder term)."""
        return self.needs_response or self.w_decode > 0

    def resolve_decode_pair(self, layer_map: LayerMap, n_teacher_layers: int) -> int:
        """Index in ``layer_map`` of the pair the teacher-decoder term reads: the one paired with the teacher's
        top layer (what its decoder attends to), the highest student layer if several are."""
        top = [i for i, (_, t) in enumerate(layer_map) if t == n_teacher_layers]
        if not top:
            raise AuraError(f"w_decode: the teacher's decoder reads its top layer ({n_teacher_layers}), but no pair of "
                            f"the layer map {[list(p) for p in layer_map]} ends there; add one, e.g. "
                            f"[{max(s for s, _ in layer_map)}, {n_teacher_layers}]")
        return max(top, key=lambda i: layer_map[i][0])

    def resolve_ctc_layer(self, n_student_layers: int, layer_map: LayerMap) -> int:
        """The hidden_states index the CTC term spells from: the configured one (checked), else the top
        student layer of ``layer_map`` (without a map, n // 2, at least 1)."""
        if self.ctc_layer is None:
            return max([s for s, _ in layer_map] or [max(1, n_student_layers // 2)])
        if self.ctc_layer > n_student_layers:
            raise AuraError(f"ctc_layer {self.ctc_layer}: the student LLM has {n_student_layers} layers "
                            f"(valid: 0..{n_student_layers})")
        return self.ctc_layer

    def resolve_layer_map(self, n_student_layers: int, n_teacher_layers: int) -> LayerMap:
        """The map training uses: the configured one verbatim (after validation), else the default."""
        if self.layer_map is None:
            return default_layer_map(n_student_layers, n_teacher_layers)
        return validate_layer_map(self.layer_map, n_student_layers, n_teacher_layers)


def _resolve_layers(name: str, configured, default, n_layers: int) -> list[int]:
    if configured is None:
        return list(default)
    check_layers_exist(name, configured, n_layers)
    return list(configured)


# ----------------------------------------------------------------------- layer map


def default_layer_map(n_student_layers: int, n_teacher_layers: int) -> LayerMap:
    """Pair the first K student layers with K teacher layers, monotonically and evenly.

    K = min(n_teacher, n_student // 2), at least 1: the lower half of the LLM learns to
    hear, the upper half keeps reasoning. Student layer k (1..K) is paired with teacher
    layer t_k = round(k * n_teacher / K), rounded half up, so the last pair ends at the
    teacher's top layer. Because n_teacher / K >= 1, the t_k are strictly increasing
    and lie in 1..n_teacher.

    Examples: (8, 4) -> [(1,1),(2,2),(3,3),(4,4)]; (4, 6) -> [(1,3),(2,6)].
    """
    for name, n in (("n_student_layers", n_student_layers), ("n_teacher_layers", n_teacher_layers)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise AuraError(f"{name} must be an integer >= 1, got {n!r}")
    k_pairs = max(1, min(n_teacher_layers, n_student_layers // 2))
    # Integer form of floor(k * n / K + 1/2): exact, no float or banker's rounding.
    return [(k, (2 * k * n_teacher_layers + k_pairs) // (2 * k_pairs)) for k in range(1, k_pairs + 1)]


def validate_layer_map(layer_map: Any, n_student_layers: int, n_teacher_layers: int) -> LayerMap:
    """Check a configured map against the two models; return it as a list of int pairs.

    Student indices must lie in 1..n_student_layers, teacher indices in 1..n_teacher_layers
    (1-based hidden_states indices), and no pair may repeat. The order is kept verbatim.
    """
    pairs = _normalise_layer_map(layer_map)
    seen: set[tuple[int, int]] = set()
    for s, t in pairs:
        if s > n_student_layers:
            raise AuraError(
                f"layer_map pair ({s}, {t}): student layer {s} is out of range, "
                f"the student LLM has {n_student_layers} layers (valid: 1..{n_student_layers})"
            )
        if t > n_teacher_layers:
            raise AuraError(
                f"layer_map pair ({s}, {t}): teacher layer {t} is out of range, "
                f"the teacher encoder has {n_teacher_layers} layers (valid: 1..{n_teacher_layers})"
            )
        if (s, t) in seen:
            raise AuraError(f"layer_map pair ({s}, {t}) appears more than once")
        seen.add((s, t))
    return list(pairs)


# --------------------------------------------------------------------- time pooling


def pool_time(x: Tensor, mask: Tensor, stack: int) -> tuple[Tensor, Tensor]:
    """Average groups of ``stack`` consecutive frames, counting only valid frames.

    Brings the teacher (50 Hz for a Whisper encoder) to the student's audio-token rate
    (50 / stack Hz). T is padded up to a multiple of ``stack``, so the output has
    ceil(T / stack) positions; a group with no valid frame is all zeros and masked out.

    x: (B, T, D), mask: (B, T) bool  ->  pooled: (B, ceil(T/stack), D), pooled_mask: (B, ceil(T/stack)) bool
    """
    if stack < 1:
        raise ValueError(f"stack must be >= 1, got {stack}")
    _check_mask(mask, x.shape[:2], "mask")
    b, t, d = x.shape
    n_groups = -(-t // stack)
    pad = n_groups * stack - t
    x = torch.where(mask.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))  # NaN-safe
    if pad:
        x = F.pad(x, (0, 0, 0, pad))
        mask = F.pad(mask, (0, pad), value=False)
    x = x.reshape(b, n_groups, stack, d)  # (B, T', stack, D)
    counts = mask.reshape(b, n_groups, stack).sum(-1)  # (B, T') valid frames per group
    pooled = x.sum(2) / counts.clamp(min=1).unsqueeze(-1).to(x.dtype)  # (B, T', D)
    return pooled, counts > 0


# ------------------------------------------------------------------ layer alignment


def layer_alignment_loss(student: Tensor, teacher: Tensor, mask: Tensor, beta: float) -> Tensor:
    """(1 - cosine) + beta * MSE between layer-normalised features, mean over valid positions.

    ``student`` is already projected to the teacher width. Both sides are normalised over D
    (F.layer_norm, no affine) so the loss compares shape, not scale: LLM hidden states carry
    a few huge outlier dimensions that would otherwise dominate the MSE.
    With no valid position at all the loss is 0 (still attached to the graph).

    student: (B, T, D), teacher: (B, T, D), mask: (B, T) bool  ->  scalar
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ")
    _check_mask(mask, student.shape[:2], "mask")
    valid = mask.unsqueeze(-1)  # (B, T, 1)
    zero = torch.zeros((), dtype=torch.float32, device=student.device)
    s = torch.where(valid, student.float(), zero)  # (B, T, D); padding -> 0 before any arithmetic
    t = torch.where(valid, teacher.detach().float(), zero)
    d = s.shape[-1]
    s = F.layer_norm(s, (d,))
    t = F.layer_norm(t, (d,))
    cos = F.cosine_similarity(s, t, dim=-1, eps=1e-8)  # (B, T)
    mse = (s - t).pow(2).mean(-1)  # (B, T)
    per_pos = torch.where(mask, (1.0 - cos) + beta * mse, zero)  # (B, T)
    return per_pos.sum() / mask.sum().clamp(min=1)


class ProjectionHeads(nn.Module):
    """Training-only linear heads, one per layer pair: student width -> teacher width.

    Discarded after training (never saved in the adapter bundle). Xavier-uniform weights
    keep the output scale close to the input's whatever the two widths; zero biases.
    Inputs are cast to the heads' dtype, so a bf16/fp16 student works with fp32 heads.
    """

    def __init__(self, layer_map: Sequence[tuple[int, int]], student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        if student_dim < 1 or teacher_dim < 1:
            raise ValueError(f"widths must be >= 1, got student_dim={student_dim}, teacher_dim={teacher_dim}")
        self.layer_map: LayerMap = list(_normalise_layer_map(layer_map))
        self.student_dim = student_dim
        self.teacher_dim = teacher_dim
        self.heads = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in self.layer_map)
        for head in self.heads:
            nn.init.xavier_uniform_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, student_states: Sequence[Tensor]) -> list[Tensor]:
        """student_states: one (B, T, Ds) per pair, in layer_map order -> one (B, T, Dt) per pair."""
        if len(student_states) != len(self.heads):
            raise ValueError(
                f"expected {len(self.heads)} student states (one per layer pair), got {len(student_states)}"
            )
        return [head(x.to(head.weight.dtype)) for head, x in zip(self.heads, student_states)]


def layerwise_loss(
    student_states: Sequence[Tensor],
    teacher_states: Sequence[Tensor],
    heads: ProjectionHeads,
    mask: Tensor,
    beta: float,
) -> tuple[Tensor, list[Tensor]]:
    """Mean over layer pairs of layer_alignment_loss(head_k(student_k), teacher_k).

    The caller selects and aligns the states, in ``heads.layer_map`` order:
      student_states[k] = student hidden_states[s_k] restricted to the audio span: (B, T, Ds)
      teacher_states[k] = pool_time(teacher hidden_states[t_k], ...)[0], cut to the same T: (B, T, Dt)
      mask = student span mask AND pooled teacher mask: (B, T) bool
    Returns (total, per_pair): total is the 0-dim mean; per_pair the K unweighted
    0-dim losses (still attached; call .item() to log them).
    """
    return projected_layerwise_loss(heads(student_states), teacher_states, mask, beta)


def projected_layerwise_loss(projected: Sequence[Tensor], teacher_states: Sequence[Tensor], mask: Tensor,
                             beta: float) -> tuple[Tensor, list[Tensor]]:
    """layerwise_loss for student states already through the heads (``heads(student_states)``), for a caller
    that reads the projections again (the teacher-decoder term, the validation cosines)."""
    if len(teacher_states) != len(projected):
        raise ValueError(f"{len(projected)} student states but {len(teacher_states)} teacher states")
    per_pair = [layer_alignment_loss(s, t, mask, beta) for s, t in zip(projected, teacher_states)]
    return torch.stack(per_pair).mean(), per_pair


# ------------------------------------------------------------ response distillation


def response_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float) -> Tensor:
    """KL(teacher || student) of temperature-softened next-token distributions, times T^2.

    The T^2 factor (Hinton et al.) keeps the gradient scale independent of the temperature.
    Both logit tensors are aligned position by position on the response tokens: the caller
    gathers them from the student's sequence (audio prompt) and the base LLM's sequence
    (transcript prompt), whose prefixes differ in length. Mean over valid tokens; the
    teacher logits are detached.

    student_logits: (B, L, V), teacher_logits: (B, L, V), mask: (B, L) bool  ->  scalar
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ"
        )
    _check_mask(mask, student_logits.shape[:2], "mask")
    valid = mask.unsqueeze(-1)  # (B, L, 1)
    zero = torch.zeros((), dtype=torch.float32, device=student_logits.device)
    s = torch.where(valid, student_logits.float(), zero) / temperature  # (B, L, V)
    t = torch.where(valid, teacher_logits.detach().float(), zero) / temperature
    log_p_s = F.log_softmax(s, dim=-1)
    log_p_t = F.log_softmax(t, dim=-1)
    p_t = log_p_t.exp()
    # Where the teacher gives a token zero mass (e.g. -inf logits) its term is 0, not 0 * inf = NaN.
    kl = torch.where(p_t > 0, p_t * (log_p_t - log_p_s), zero).sum(-1)  # (B, L)
    kl = torch.where(mask, kl, zero)
    return kl.sum() / mask.sum().clamp(min=1) * temperature**2


def response_ce(logits: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
    """Cross-entropy of the response tokens, mean over valid positions.

    Already aligned: ``logits[:, i]`` predicts ``labels[:, i]``; the caller does the usual
    next-token shift (logits[:, :-1] vs input_ids[:, 1:]). Labels outside the mask may hold
    anything (e.g. -100).

    logits: (B, L, V), labels: (B, L) long, mask: (B, L) bool  ->  scalar
    """
    if logits.shape[:2] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} are not aligned")
    _check_mask(mask, labels.shape, "mask")
    zero = torch.zeros((), dtype=torch.float32, device=logits.device)
    x = torch.where(mask.unsqueeze(-1), logits.float(), zero)  # (B, L, V)
    y = torch.where(mask, labels, torch.zeros_like(labels))  # (B, L)
    ce = F.cross_entropy(x.flatten(0, 1), y.flatten(), reduction="none").view_as(y)  # (B, L)
    return torch.where(mask, ce, zero).sum() / mask.sum().clamp(min=1)


# ----------------------------------------------------------------- text states


def text_state_loss(student_states: Sequence[Tensor], base_states: Sequence[Tensor], mask: Tensor,
                    beta: float) -> Tensor:
    """Mean over layers of layer_alignment_loss(student_l, base_l): the student reading audio against
    the base LLM reading the transcript, on the positions both sequences share after the audio.

    The caller cuts both sides to the same right-aligned suffix (the prompts are left-padded and
    end alike), so position i of one row is the same token in both:
      student_states[l], base_states[l]: (B, S, D) per compared layer; mask: (B, S) bool
    """
    if len(student_states) != len(base_states) or not student_states:
        raise ValueError(f"{len(student_states)} student layers but {len(base_states)} base layers")
    return torch.stack([layer_alignment_loss(s, b, mask, beta) for s, b in zip(student_states, base_states)]).mean()


def monotonic_match_loss(student: Tensor, text: Tensor, student_mask: Tensor, text_mask: Tensor,
                         gamma: float = 0.1) -> Tensor:
    """Soft-DTW cost of matching each text token, in order, to one audio position: mean over rows of
    (sum of matched costs) / (text tokens).

    The student's audio span holds several positions per spoken word; the base LLM reading the transcript
    holds one per token. Every text token j must be matched by some audio position t_j with
    t_1 < t_2 < ... (monotonic, one position per token); the other audio positions are free (they do the
    hearing). Cost of a match: 1 - cosine of the layer-normalised states. The hard minimum over
    alignments is smoothed with temperature ``gamma`` (soft-min), so every plausible alignment gets
    gradient. The soft-min counts every alignment, so the value lies below the best alignment's cost,
    by up to ``gamma * log(number of alignments) / tokens``, and can be negative (the demo logs about
    -0.05 at 2000 steps); compare runs by its trend, not by its sign. A row with no text token or
    fewer audio positions than tokens counts 0.

    student: (B, T, D), text: (B, N, D), student_mask: (B, T) bool, text_mask: (B, N) bool (real positions
    first, as the caller gathers them)  ->  scalar
    """
    if student.shape[0] != text.shape[0] or student.shape[2] != text.shape[2]:
        raise ValueError(f"student {tuple(student.shape)} and text {tuple(text.shape)} do not fit")
    _check_mask(student_mask, student.shape[:2], "student_mask")
    _check_mask(text_mask, text.shape[:2], "text_mask")
    zero = torch.zeros((), dtype=torch.float32, device=student.device)
    d = student.shape[-1]
    s = F.normalize(F.layer_norm(torch.where(student_mask.unsqueeze(-1), student.float(), zero), (d,)), dim=-1)
    x = F.normalize(F.layer_norm(torch.where(text_mask.unsqueeze(-1), text.detach().float(), zero), (d,)), dim=-1)
    cost = 1.0 - s @ x.transpose(1, 2)  # (B, T, N)
    b, t_len, n = cost.shape
    big = torch.full((), 1e4, dtype=torch.float32, device=student.device)
    # r[:, j] = best cost of matching the first j tokens using the positions seen so far
    r = torch.cat([torch.zeros(b, 1, device=student.device), big.expand(b, n)], dim=1)  # (B, N + 1)
    for t in range(t_len):
        match = r[:, :-1] + cost[:, t]  # token j matched at position t, after the first j - 1 tokens
        stay = r[:, 1:]  # position t left free
        best = -gamma * torch.logsumexp(torch.stack([-stay / gamma, -match / gamma]), dim=0)
        best = torch.minimum(best, big)
        r = torch.cat([r[:, :1], torch.where(student_mask[:, t:t + 1], best, stay)], dim=1)
    n_tok = text_mask.sum(1)  # (B,)
    n_pos = student_mask.sum(1)
    final = r.gather(1, n_tok.unsqueeze(1)).squeeze(1)  # (B,)
    ok = (n_tok > 0) & (n_pos >= n_tok)
    per_row = torch.where(ok, final / n_tok.clamp(min=1), zero)
    return per_row.sum() / ok.sum().clamp(min=1)


class TokenCTCHead(nn.Module):
    """Training-only CTC classifier over the LLM's vocabulary: cosine of a state with each (frozen) token
    embedding, times a learned scale. Blank is an existing token (the placeholder/pad id)."""

    def __init__(self, embeddings: Tensor, blank_id: int, scale: float = 10.0) -> None:
        super().__init__()
        self.register_buffer("table", F.normalize(embeddings.detach().float(), dim=-1), persistent=False)  # (V, D)
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))
        self.blank_id = int(blank_id)

    def forward(self, states: Tensor, mask: Tensor, targets: list[list[int]]) -> Tensor:
        """CTC of ``states`` (B, T, D) on the real positions ``mask`` (B, T) against token-id ``targets``;
        rows without targets do not count."""
        logits = F.normalize(states.float(), dim=-1) @ self.table.T * self.log_scale.exp()  # (B, T, V)
        keep = [i for i, t in enumerate(targets) if t]
        if not keep:
            return logits.sum() * 0.0
        log_probs = logits[keep].log_softmax(-1).transpose(0, 1)  # (T, B', V)
        in_lens = mask[keep].sum(1)
        tgt = torch.tensor([x for i in keep for x in targets[i]], dtype=torch.long, device=states.device)
        tgt_lens = torch.tensor([len(targets[i]) for i in keep], dtype=torch.long, device=states.device)
        return F.ctc_loss(log_probs, tgt, in_lens, tgt_lens, blank=self.blank_id, reduction="mean",
                          zero_infinity=True)


class TeacherDecoderLoss(nn.Module):
    """Training-only: the teacher's frozen (Whisper) decoder and output projection reading student states.

    ``decoder`` is called as a Hugging Face Whisper decoder, ``decoder(input_ids=..., encoder_hidden_states=...)``
    returning ``last_hidden_state``; ``proj_out`` maps it to the teacher's vocabulary. Neither is trained (their
    parameters are frozen and they stay in eval mode); the gradient flows into the states they read.

    No clip's padding is ever attended. The stock decoder passes no encoder mask to its layers, so when its
    layers take one (``encoder_attention_mask``, as Whisper's do) a forward pre-hook hands them the batch's
    padding mask and the whole batch is read in one call (``batched``); otherwise each group of clips with the
    same number of positions is read in its own call, on exactly its own positions.
    """

    def __init__(self, decoder: nn.Module, proj_out: nn.Module, pad_id: int) -> None:
        super().__init__()
        self.decoder = decoder
        self.proj_out = proj_out
        self.pad_id = int(pad_id)
        layers = list(getattr(decoder, "layers", []))
        self.batched = bool(layers) and all(
            "encoder_attention_mask" in inspect.signature(layer.forward).parameters for layer in layers)
        for p in self.parameters():
            p.requires_grad_(False)
        self.train(False)

    def train(self, mode: bool = True) -> "TeacherDecoderLoss":
        return super().train(False)  # frozen: never dropout, whatever the student does

    def _read(self, states: Tensor, mask: Tensor | None, targets: list[list[int]]) -> tuple[Tensor, int]:
        """(summed cross-entropy, target tokens) of ``targets`` (each >= 2 ids) read from ``states`` (G, S, D)."""
        width = max(len(t) for t in targets) - 1
        inp = torch.full((len(targets), width), self.pad_id, dtype=torch.long, device=states.device)
        lab = torch.full((len(targets), width), -100, dtype=torch.long, device=states.device)
        for i, ids in enumerate(targets):
            row = torch.tensor(ids, dtype=torch.long, device=states.device)
            inp[i, :len(ids) - 1] = row[:-1]  # right padding: the causal decoder never reads it for real tokens
            lab[i, :len(ids) - 1] = row[1:]
        handles = []
        if mask is not None:  # additive mask on the keys: (G, 1, 1, S), 0 = read, very negative = padding
            bias = torch.zeros(mask.shape, dtype=states.dtype, device=states.device)
            bias = bias.masked_fill(~mask, torch.finfo(states.dtype).min)[:, None, None, :]

            def hook(module, args, kwargs):
                return args, {**kwargs, "encoder_attention_mask": bias}

            handles = [layer.register_forward_pre_hook(hook, with_kwargs=True) for layer in self.decoder.layers]
        try:
            hidden = self.decoder(input_ids=inp, encoder_hidden_states=states, use_cache=False).last_hidden_state
        finally:
            for h in handles:
                h.remove()
        logits = self.proj_out(hidden).float()
        ce = F.cross_entropy(logits.flatten(0, 1), lab.flatten(), ignore_index=-100, reduction="sum")
        return ce, int((lab != -100).sum())

    def forward(self, states: Tensor, mask: Tensor, targets: list[list[int]]) -> Tensor:
        """Mean cross-entropy per target token of the transcript, teacher-forced.

        states: (B, T, D) at the teacher's width; mask: (B, T) bool, real positions first; targets: per row the
        decoder ids from its start token(s) to its end token (at least 2 ids to count; shorter rows are skipped).
        """
        _check_mask(mask, states.shape[:2], "mask")
        if len(targets) != states.shape[0]:
            raise ValueError(f"{len(targets)} target rows for {states.shape[0]} state rows")
        lengths = [int(n) for n in mask.sum(1).tolist()]
        rows = [b for b, (n, ids) in enumerate(zip(lengths, targets)) if n > 0 and len(ids) >= 2]
        if not rows:
            return states.sum() * 0.0
        x = states.to(next(self.proj_out.parameters()).dtype)
        if self.batched:
            n = max(lengths[b] for b in rows)
            total, count = self._read(x[rows, :n], mask[rows, :n], [targets[b] for b in rows])
            return total / max(count, 1)
        groups: dict[int, list[int]] = {}
        for b in rows:
            groups.setdefault(lengths[b], []).append(b)
        total = torch.zeros((), dtype=torch.float32, device=states.device)
        count = 0
        for n, group in groups.items():
            ce, c = self._read(x[group, :n], None, [targets[b] for b in group])
            total, count = total + ce, count + c
        return total / max(count, 1)


# -------------------------------------------------------------------------- total


def total_loss(terms: dict[str, Tensor], cfg: DistillConfig) -> Tensor:
    """The sum of w_<term> * terms[<term>] over LOSS_TERMS.

    Terms whose weight is 0 are skipped, not multiplied by 0, so an uncomputed or NaN
    term cannot poison the sum; a term with a non-zero weight must be present.
    """
    unknown = sorted(set(terms) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"unknown loss term(s) {unknown}; known: {LOSS_TERMS}")
    total: Tensor | None = None
    for name in LOSS_TERMS:
        w = cfg.weight(name)
        if w == 0:
            continue
        if name not in terms:
            raise ValueError(f"loss term {name!r} has weight w_{name}={w} but was not computed")
        part = w * terms[name]
        total = part if total is None else total + part
    assert total is not None  # DistillConfig guarantees at least one non-zero weight
    return total


def _check_mask(mask: Tensor, shape: Sequence[int], name: str) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor (True = valid), got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")
