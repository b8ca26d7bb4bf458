"""Validation: named sums over the held-out clips, added up across processes, then the metrics.

Each batch adds to sums by name: how many positions, tokens or clips a loss is a mean over, and
the loss times that count. Dividing only after every batch of every process is in makes each
metric the exact mean over all held-out clips, however they were split into batches and processes.
It all runs inside ``torch.random.fork_rng``, so validating never shifts the training RNG (exact resume).
"""

from __future__ import annotations

from typing import Any

import torch

from ..config import GenerationSettings
from ..distill import LOSS_TERMS, layer_alignment_loss
from .batching import Batch, Collator
from . import token_rate
from .objective import BaseTargets, DistillModule, base_targets
from .prepare import cut_at_eos
from .runtime import reduce_named

SUMS = (
    "items",  # clips validated
    "layer_positions", "layer_sum",  # audio positions with teacher states; the layer term times them
    "response_tokens", "kl_sum", "ce_sum", "token_hits",  # response tokens; KL and CE times them; greedy hits
    "agreements",  # clips whose greedy answer from audio equals the base LLM's answer from the transcript
    "state_positions", "state_sum",  # shared-suffix positions; the text-state term times them
    "align_items", "align_sum", "ctc_items", "ctc_sum", "decode_items", "decode_sum",  # per-clip means times clips
    "count_items", "count_sum", "tokens_items", "tokens_sum", "read_items", "read_sum", "slot_kl_items",
    "slot_kl_sum",  # token-rate terms: per-batch means times clips
    "count_exact",  # token-rate: clips the pooler would turn into exactly as many tokens as the transcript has
)
PER_CLIP_TERMS = ("align", "ctc", "decode", "count", "tokens", "read", "slot_kl")


def cosine_name(pair: int) -> str:
    """The sum of the cosine of layer pair ``pair`` (its index in the layer map) times the positions."""
    return f"cosine_sum.{pair}"


def empty_sums(n_pairs: int) -> dict[str, float]:
    """Every sum at 0: every process holds the same names, also one that has no clips to validate."""
    return dict.fromkeys((*SUMS, *(cosine_name(j) for j in range(n_pairs))), 0.0)


def evaluate(module: DistillModule, items: list, collate: Collator, acc, batch_size: int, gen: GenerationSettings,
             eos_ids: list[int], pad_id: int) -> dict[str, float]:
    """The named sums over ``items`` (this process's share), added up over all processes."""
    devices = [acc.device.index or 0] if acc.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        sums = empty_sums(len(module.layer_map))
        was_training = module.training
        module.eval()
        try:
            for start in range(0, len(items), batch_size):
                batch = collate(items[start:start + batch_size]).to(acc.device)
                base = base_targets(module, batch, acc.autocast) if batch.base is not None else None
                with torch.no_grad(), acc.autocast():
                    for name, value in batch_sums(module, batch, base).items():
                        sums[name] += value
                if batch.responses is not None:
                    sums["agreements"] += count_agreements(module, batch, acc, gen, eos_ids, pad_id)
        finally:
            module.train(was_training)
        return reduce_named(sums, acc, "sum")


def batch_sums(module: DistillModule, batch: Batch, base: BaseTargets | None) -> dict[str, float]:
    """This batch's part of the named sums."""
    with_responses = batch.responses is not None
    out = module.compute(batch, base, with_responses)
    sums: dict[str, float] = {"items": batch.size}
    if out.projected is not None:
        n = float(batch.layer_mask.sum())
        sums["layer_positions"] = n
        sums["layer_sum"] = float(out.terms["layer"]) * n
        for j, (mine, teacher) in enumerate(zip(out.projected, out.teacher)):
            # cosine on layer-normalised features = 1 - the loss with beta 0
            sums[cosine_name(j)] = (1.0 - float(layer_alignment_loss(mine, teacher, batch.layer_mask, 0.0))) * n
    if with_responses:
        sums.update(_response_sums(out.logits, out.terms, batch))
    if "state" in out.terms and batch.shared_suffix is not None:
        n = float(batch.shared_suffix.sum())
        sums["state_positions"] = n
        sums["state_sum"] = float(out.terms["state"]) * n
    for term in PER_CLIP_TERMS:  # means over clips
        if term in out.terms:
            sums[f"{term}_items"] = float(batch.size)
            sums[f"{term}_sum"] = float(out.terms[term]) * batch.size
    if out.pooled_counts is not None:
        sums["count_exact"] = float((out.pooled_counts.cpu() == token_rate.transcript_counts(batch.base)).sum())
    return sums


def _response_sums(logits: torch.Tensor, terms: dict[str, torch.Tensor], batch: Batch) -> dict[str, float]:
    n = float(batch.response_mask.sum())
    sums = {"response_tokens": n}
    if "kl" in terms:
        sums["kl_sum"] = float(terms["kl"]) * n
    sums["ce_sum"] = float(terms["ce"]) * n
    hits = (logits.argmax(-1) == batch.responses) & batch.response_mask
    sums["token_hits"] = float(hits.sum())
    return sums


@torch.no_grad()
def count_agreements(module: DistillModule, batch: Batch, acc, gen: GenerationSettings, eos_ids: list[int],
                     pad_id: int) -> int:
    """Clips whose greedy answer from audio equals the base LLM's answer from the transcript."""
    p = batch.prompt_only
    with acc.autocast():
        if module.aura.token_rate:  # the pooler's own counts decide the slots, as at inference
            out = token_rate.generate_from_audio(module, batch, gen, eos_ids, pad_id, pad_id)
        else:
            out = module.aura.generate_ids(p.input_ids, p.attention_mask, p.audio_spans, batch.features,
                                           batch.frame_lengths, gen=gen, eos_ids=eos_ids, pad_id=pad_id,
                                           position_ids=p.position_ids)
    return sum(int(cut_at_eos(row, eos_ids) == cut_at_eos(ref, eos_ids))
               for row, ref in zip(out.tolist(), batch.response_lists))


def metrics_from_sums(sums: dict[str, float], layer_map: list[tuple[int, int]], distill) -> dict[str, Any]:
    """The validation metrics (the ``eval`` event's ``val_*`` fields) from the named sums of all processes."""
    m: dict[str, Any] = {"val_items": int(sums["items"])}
    positions = sums["layer_positions"]
    if layer_map and positions > 0:
        m["val_loss_layer"] = sums["layer_sum"] / positions
        cosines = [sums[cosine_name(j)] / positions for j in range(len(layer_map))]
        for (sl, tl), c in zip(layer_map, cosines):
            m[f"val_cosine_s{sl}_t{tl}"] = c
        m["val_cosine"] = sum(cosines) / len(cosines)
    tokens = sums["response_tokens"]
    if tokens > 0:
        m["val_kl"] = sums["kl_sum"] / tokens
        m["val_loss_ce"] = sums["ce_sum"] / tokens
        if distill.w_kl > 0:
            m["val_loss_kl"] = m["val_kl"]
        m["val_token_accuracy"] = sums["token_hits"] / tokens
        m["val_agreement"] = sums["agreements"] / max(1.0, sums["items"])
    for term, count in (("state", "state_positions"), *((t, f"{t}_items") for t in PER_CLIP_TERMS)):
        if sums[count] > 0:
            m[f"val_loss_{term}"] = sums[f"{term}_sum"] / sums[count]
    if sums["count_items"] > 0:
        m["val_count_exact"] = sums["count_exact"] / sums["count_items"]
    m["val_loss"] = weighted_loss(m, distill)
    return m


def weighted_loss(metrics: dict[str, Any], distill) -> float:
    """What total_loss weighs: w_<term> * val_loss_<term> over the weighted terms that were measured."""
    loss = 0.0
    for term in LOSS_TERMS:
        value = metrics.get(f"val_loss_{term}")
        if value is not None and distill.weight(term) > 0:
            loss += distill.weight(term) * value
    return loss
