"""The training objective of token-rate AuRA (``model.pooling.layers`` > 0).

Pass 1 hears each clip alone (``AuraModel.hear_states``); the pooler makes as many tokens as the
clip's transcript has (the count comes from the batch's base row, so the targets line up one to
one). Pass 2 is the base LLM (adapter off) reading the base row itself, the transcript prompt plus
the answer, with the pooled tokens written over the transcript's tokens: every position of the
student's sequence then has its target at the same position of the base LLM's own reading.

Terms (distill.TOKEN_RATE_TERMS, plus ``layer``, ``kl`` and ``ce``): see ``aura_model.distill``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..distill import count_loss, layer_alignment_loss, projected_layerwise_loss, response_ce, response_kl
from ..pooling import fire_counts
from ..processor import left_pad
from .batching import Batch, Tokens


@dataclass
class TextTargets:
    """The base LLM (adapter off) reading its transcript prompt: what pass 2 is compared with."""

    logits: torch.Tensor | None  # (B, R, V) on the answer's slots (None without answers in the batch)
    states: dict[int, torch.Tensor] = field(default_factory=dict)  # read layer -> (B, L, d) every position
    slot_logits: torch.Tensor | None = None  # (B, N, V) after each transcript token (slot KL on)


def transcript_counts(base: Tokens) -> torch.Tensor:
    """(B,) the transcript's token count of each base row (its span; 1 for a row without one)."""
    return torch.tensor([row[0][1] if row else 1 for row in base.audio_spans], dtype=torch.long)


def from_request_mask(base: Tokens) -> torch.Tensor:
    """(B, L) bool: the positions from each row's transcript on (the request, the rest of the turn, the answer)."""
    width = base.input_ids.shape[1]
    starts = torch.tensor([row[0][0] if row else width for row in base.audio_spans])
    return (torch.arange(width)[None, :] >= starts[:, None]).to(base.attention_mask.device) & base.attention_mask.bool()


def gather_slots(x: torch.Tensor, spans: list[list[tuple[int, int]]], n_max: int) -> torch.Tensor:
    """(B, L, ...) -> (B, n_max, ...): each row's transcript positions, zero-padded."""
    out = x.new_zeros((x.shape[0], n_max, *x.shape[2:]))
    for b, row in enumerate(spans):
        if row:
            start, n = row[0]
            out[b, :n] = x[b, start:start + n]
    return out


def slot_mask(counts: torch.Tensor, n_max: int) -> torch.Tensor:
    return torch.arange(n_max, device=counts.device)[None, :] < counts[:, None]


def last_logits(module, hidden_last: torch.Tensor) -> torch.Tensor:
    """The LM head on final (normed) hidden states, for the positions gathered (no full-sequence logits)."""
    return module.aura.llm.get_output_embeddings()(hidden_last)


@torch.no_grad()
def text_targets(module, batch: Batch, autocast: Callable[[], contextlib.AbstractContextManager]) -> TextTargets:
    """The base LLM reading the batch's base rows (the transcript prompts + answers), adapter off, eval mode."""
    aura, b = module.aura, batch.base
    want_states = bool(module.read_layers) or module.distill.w_slot_kl > 0
    r = batch.responses.shape[1] if batch.responses is not None else 0
    was_training = aura.llm.training
    aura.llm.eval()
    try:
        with aura.adapter_disabled(), autocast():
            out = aura.llm(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                           use_cache=False, logits_to_keep=r + 1, output_hidden_states=want_states)
    finally:
        aura.llm.train(was_training)
    targets = TextTargets(out.logits[:, :-1].float() if r else None)
    if module.read_layers:
        targets.states = {layer: out.hidden_states[layer].float() for layer in module.read_layers}
    if module.distill.w_slot_kl > 0:
        counts = transcript_counts(b)
        targets.slot_logits = last_logits(module, gather_slots(out.hidden_states[-1], b.audio_spans,
                                                               int(counts.max()))).float()
    return targets


def compute(module, batch: Batch, targets: TextTargets | None, with_responses: bool):
    """The loss terms of one batch (and what validation reads), as ``DistillModule.compute`` returns them."""
    from .objective import Outputs

    d, aura, b = module.distill, module.aura, batch.base
    states, lengths = aura.hear_states(batch.features, batch.frame_lengths)
    counts = transcript_counts(b).to(lengths.device)
    pooled = aura.pool(states[-1], lengths, counts)
    result = Outputs(terms={})
    if module.heads is not None:
        result.terms["layer"], result.projected, result.teacher = _layer_term(module, states, batch)
    result.terms["count"] = count_loss(pooled.weight_sums, counts)
    n_max = pooled.tokens.shape[1]
    mask = slot_mask(counts, n_max)
    if d.w_tokens > 0 or not module.training:
        embeddings = aura.llm.get_input_embeddings()(b.input_ids)
        result.terms["tokens"] = layer_alignment_loss(pooled.tokens, gather_slots(embeddings, b.audio_spans, n_max),
                                                      mask, d.beta)
    want_states = targets is not None and (bool(targets.states) or targets.slot_logits is not None)
    r = batch.responses.shape[1] if with_responses else 0
    out = aura(b.input_ids, b.attention_mask, b.position_ids, b.audio_spans, audio_embeds=pooled.tokens,
               use_cache=False, logits_to_keep=r + 1, output_hidden_states=want_states)
    if targets is not None and targets.states:
        result.terms["read"] = _read_term(out, targets, from_request_mask(b), d.beta)
    if targets is not None and targets.slot_logits is not None:
        mine = last_logits(module, gather_slots(out.hidden_states[-1], b.audio_spans, n_max))
        result.terms["slot_kl"] = response_kl(mine, targets.slot_logits, mask, d.kl_temperature)
    if with_responses:
        result.logits = out.logits[:, :-1]
        if targets is not None and targets.logits is not None and (d.w_kl > 0 or not module.training):
            result.terms["kl"] = response_kl(result.logits, targets.logits, batch.response_mask, d.kl_temperature)
        if d.w_ce > 0 or not module.training:
            result.terms["ce"] = response_ce(result.logits, batch.responses, batch.response_mask)
    result.pooled_counts = fire_counts(pooled.weight_sums.detach(), aura.pooler.cfg.threshold)
    return result


def _layer_term(module, states: list[torch.Tensor], batch: Batch):
    """Teacher layer-wise loss on the hearing pass: the clip alone, each student state at its audio token."""
    t_max = batch.layer_mask.shape[1]
    mine = [_fit(states[sl], t_max) for sl, _ in module.layer_map]
    projected = module.heads(mine)
    teacher = [batch.teacher[tl] for _, tl in module.layer_map]
    term, _ = projected_layerwise_loss(projected, teacher, batch.layer_mask, module.distill.beta)
    return term, projected, teacher


def _fit(x: torch.Tensor, width: int) -> torch.Tensor:
    """(B, T, d) -> (B, width, d): cut or zero-pad along time."""
    if x.shape[1] >= width:
        return x[:, :width]
    return torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1]))


def _read_term(out, targets: TextTargets, mask: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.stack([layer_alignment_loss(out.hidden_states[layer], text, mask, beta)
                        for layer, text in targets.states.items()]).mean()


# ---------------------------------------------------------------------- answers from audio (validation)
def respan(tokens: Tokens, counts: list[int], placeholder_id: int, pad_id: int) -> Tokens:
    """The same prompts with each row's audio span resized to ``counts[b]`` placeholder ids (left-padded anew)."""
    rows, spans = [], []
    for b, row_spans in enumerate(tokens.audio_spans):
        ids = tokens.input_ids[b][tokens.attention_mask[b].bool()].tolist()
        offset = tokens.input_ids.shape[1] - len(ids)
        if row_spans:
            start, n = row_spans[0]
            start -= offset
            ids = ids[:start] + [placeholder_id] * counts[b] + ids[start + n:]
            spans.append([(start, counts[b])])
        else:
            spans.append([])
        rows.append(ids)
    e = left_pad(rows, spans, pad_id)
    return Tokens(e.input_ids.to(tokens.input_ids.device), e.attention_mask.to(tokens.input_ids.device),
                  e.position_ids.to(tokens.input_ids.device), e.audio_spans)


@torch.no_grad()
def generate_from_audio(module, batch: Batch, gen, eos_ids: list[int], pad_id: int, placeholder_id: int) -> torch.Tensor:
    """Greedy answers as inference makes them: the pooler's own counts decide each clip's slots."""
    aura = module.aura
    pooled = aura.hear(batch.features, batch.frame_lengths)
    p = respan(batch.prompt_only, pooled.counts.tolist(), placeholder_id, pad_id)
    return aura.generate_ids(p.input_ids, p.attention_mask, p.audio_spans, gen=gen, eos_ids=eos_ids, pad_id=pad_id,
                             position_ids=p.position_ids, audio_embeds=pooled.tokens)
