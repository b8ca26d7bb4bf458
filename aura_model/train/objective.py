"""What the student is trained to match: the loss terms of one batch, and the base LLM's targets.

``DistillModule`` wraps the AuraModel and the training-only heads; its ``forward`` (what DDP
wraps) returns the active loss terms by name, ``compute`` returns them together with the
projected states and logits that validation measures. ``base_targets`` is the base LLM (adapter
off) reading the transcript: its answer logits, text states and transcript states are what the
response, text-state and alignment terms compare the student with.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..distill import (ProjectionHeads, TeacherDecoderLoss, TokenCTCHead, monotonic_match_loss,
                       projected_layerwise_loss, response_ce, response_kl, text_state_loss)
from ..model import AuraModel
from . import token_rate
from .batching import Batch
from .data import Item


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


@dataclass
class Outputs:
    """One batch through the DistillModule."""

    terms: dict[str, torch.Tensor]  # active loss terms by name, in the order total_loss adds them up
    projected: list[torch.Tensor] | None = None  # per layer pair, the student's audio span through its head
    teacher: list[torch.Tensor] | None = None  # per layer pair, the teacher's states it is compared with
    logits: torch.Tensor | None = None  # (B, R, V) the student's logits on the response slots
    pooled_counts: torch.Tensor | None = None  # token-rate: (B,) tokens the pooler would make on its own


class DistillModule(nn.Module):
    """AuraModel + projection heads; forward computes the loss terms (the module DDP wraps)."""

    def __init__(self, aura: AuraModel, heads: ProjectionHeads | None, layer_map: list[tuple[int, int]], distill,
                 state_layers: list[int] | None = None, align_layers: list[int] | None = None,
                 ctc_head: TokenCTCHead | None = None, ctc_layer: int | None = None,
                 decoder_loss: TeacherDecoderLoss | None = None, decode_pair: int | None = None,
                 read_layers: list[int] | None = None):
        super().__init__()
        self.read_layers = list(read_layers or [])  # token-rate: layers of the read term
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

    def forward(self, batch: Batch, base: BaseTargets | None = None) -> dict[str, torch.Tensor]:
        with_responses = batch.responses is not None and self.distill.needs_response
        return self.compute(batch, base, with_responses).terms

    def compute(self, batch: Batch, base, with_responses: bool) -> Outputs:
        """Every loss term this batch and these targets allow (validation also reads the logits and heads)."""
        if self.aura.token_rate:
            return token_rate.compute(self, batch, base, with_responses)
        want_layer = self.heads is not None
        want_state = bool(self.state_layers) and base is not None and bool(base.states)
        want_align = bool(self.align_layers) and base is not None and bool(base.transcript)
        want_ctc = self.ctc_head is not None and bool(batch.ctc_targets)
        want_decode = self.decoder_loss is not None and bool(batch.decode_targets) and want_layer
        s = batch.student
        out = self.aura(s.input_ids, s.attention_mask, s.position_ids, s.audio_spans, batch.features,
                        batch.frame_lengths, output_hidden_states=want_layer or want_state or want_align or want_ctc,
                        use_cache=False, logits_to_keep=(batch.responses.shape[1] if with_responses else 0) + 1)
        result = Outputs(terms={})
        if want_layer:
            result.terms["layer"], result.projected, result.teacher = self._layer_term(out, batch)
        if want_decode:
            result.terms["decode"] = self._decode_term(result.projected[self.decode_pair], batch)
        if want_state:
            result.terms["state"] = self._state_term(out, batch, base)
        if want_align:
            result.terms["align"] = self._align_term(out, batch, base)
        if want_ctc:
            result.terms["ctc"] = self._ctc_term(out, batch)
        if with_responses:
            result.logits = out.logits[:, :-1]  # (B, R, V): slot i predicts response slot i
            self._response_terms(result.logits, batch, base, result.terms)
        return result

    def _layer_term(self, out, batch: Batch):
        """(the layer term, the projected student states, the teacher states), per layer pair."""
        t_max = batch.layer_mask.shape[1]
        spans = [gather_spans(out.hidden_states[sl], batch.student.audio_spans, t_max) for sl, _ in self.layer_map]
        projected = self.heads(spans)
        teacher = [batch.teacher[tl] for _, tl in self.layer_map]
        term, _ = projected_layerwise_loss(projected, teacher, batch.layer_mask, self.distill.beta)
        return term, projected, teacher

    def _decode_term(self, states: torch.Tensor, batch: Batch) -> torch.Tensor:
        mask = span_mask(batch.student.audio_spans, states.shape[1]).to(states.device)
        return self.decoder_loss(states, mask, batch.decode_targets)

    def _state_term(self, out, batch: Batch, base: BaseTargets) -> torch.Tensor:
        width = batch.shared_suffix.shape[1]
        if not width:  # no shared suffix in this batch: a zero that still belongs to the graph
            return out.logits.sum() * 0.0
        mine = [out.hidden_states[layer][:, -width:] for layer in self.state_layers]
        return text_state_loss(mine, base.states, batch.shared_suffix, self.distill.beta)

    def _align_term(self, out, batch: Batch, base: BaseTargets) -> torch.Tensor:
        spans = batch.student.audio_spans
        t_max = max(batch.audio_tokens)
        audio_mask = span_mask(spans, t_max).to(out.logits.device)
        return torch.stack([
            monotonic_match_loss(gather_spans(out.hidden_states[layer], spans, t_max), text, audio_mask,
                                 base.transcript_mask, self.distill.align_gamma)
            for layer, text in zip(self.align_layers, base.transcript)]).mean()

    def _ctc_term(self, out, batch: Batch) -> torch.Tensor:
        spans = batch.student.audio_spans
        t_max = max(batch.audio_tokens)
        return self.ctc_head(gather_spans(out.hidden_states[self.ctc_layer], spans, t_max),
                             span_mask(spans, t_max).to(out.logits.device), batch.ctc_targets)

    def _response_terms(self, logits: torch.Tensor, batch: Batch, base: BaseTargets | None,
                        terms: dict[str, torch.Tensor]) -> None:
        # validation reports both response terms even when training weighs one of them 0
        d = self.distill
        if base is not None and base.logits is not None and (d.w_kl > 0 or not self.training):
            terms["kl"] = response_kl(logits, base.logits, batch.response_mask, d.kl_temperature)
        if d.w_ce > 0 or not self.training:
            terms["ce"] = response_ce(logits, batch.responses, batch.response_mask)


@torch.no_grad()
def base_targets(module: DistillModule, batch: Batch,
                 autocast: Callable[[], contextlib.AbstractContextManager]):
    """The base LLM (adapter off, eval mode) reading the transcript: logits on the response slots and
    hidden states of the text-state layers on the shared suffix (and of the alignment layers on the transcript);
    for token-rate AuRA, what ``token_rate.text_targets`` gives."""
    if module.aura.token_rate:
        return token_rate.text_targets(module, batch, autocast)
    aura = module.aura
    b = batch.base
    want_states = bool(module.state_layers) and batch.shared_suffix is not None
    want_align = bool(module.align_layers)
    was_training = aura.llm.training
    aura.llm.eval()
    try:
        with aura.adapter_disabled(), autocast():
            out = aura(b.input_ids, b.attention_mask, b.position_ids, use_cache=False,
                       logits_to_keep=batch.responses.shape[1] + 1, output_hidden_states=want_states or want_align)
    finally:
        aura.llm.train(was_training)
    targets = BaseTargets(out.logits[:, :-1].float(), [])
    if want_states and batch.shared_suffix.shape[1]:
        width = batch.shared_suffix.shape[1]
        targets.states = [out.hidden_states[layer][:, -width:].float() for layer in module.state_layers]
    if want_align:
        n_max = max([row[0][1] for row in b.audio_spans if row] or [1])
        targets.transcript = [gather_spans(out.hidden_states[layer], b.audio_spans, n_max).float()
                              for layer in module.align_layers]
        targets.transcript_mask = span_mask(b.audio_spans, n_max).to(out.logits.device)
    return targets
