"""The distillation losses, as pure functions (no model loading, no I/O).

What each term teaches is told once, in the package docstring (``aura_model/distill/__init__.py``).
Conventions used throughout:

* Masks are ``torch.bool`` tensors, ``True`` = a real position that counts.
  Padding positions never contribute, even when they hold garbage or NaN: every loss
  selects with ``torch.where`` before doing any arithmetic.
* Losses are computed in float32 whatever the input dtype (bf16/fp16 on GPU) and
  return a 0-dim tensor.
* Teacher tensors are targets: they are detached, no gradient flows into them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import LOSS_TERMS, DistillConfig

if TYPE_CHECKING:  # heads.py imports check_mask from here
    from .heads import ProjectionHeads


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
    check_mask(mask, x.shape[:2], "mask")
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
    check_mask(mask, student.shape[:2], "mask")
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
    check_mask(mask, student_logits.shape[:2], "mask")
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
    check_mask(mask, labels.shape, "mask")
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
    check_mask(student_mask, student.shape[:2], "student_mask")
    check_mask(text_mask, text.shape[:2], "text_mask")
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


# -------------------------------------------------------------------------- total


def count_loss(weight_sums: Tensor, counts: Tensor) -> Tensor:
    """Mean |sum of a clip's fire weights - its transcript's token count| (B,) -> (): integrate-and-fire
    learns to count, so at inference the sum decides how many tokens a clip becomes."""
    return (weight_sums.float() - counts.to(weight_sums.device).float()).abs().mean()


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


def check_mask(mask: Tensor, shape: Sequence[int], name: str) -> None:
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor (True = valid), got {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(mask.shape)}, expected {tuple(shape)}")
