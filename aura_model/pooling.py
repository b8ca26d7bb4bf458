"""TokenPooler: a clip's hearing states (audio token rate) -> about one input vector per text token.

Math only; loading and saving live in ``bundle.py``. Continuous integrate-and-fire (CIF, as in
Dong & Xu 2020, Ultravox's CFormer and BLSP-KD): each of the T hearing states gets a weight in
(0, 1); walking the clip, the weights are summed and a vector is emitted each time the sum
crosses a whole multiple of ``threshold``, as the weighted mean of the states that filled it (a
state straddling a crossing is split between the two). So a clip yields N ~ sum(weights)
vectors, one per text token when the weights are trained to count the transcript's tokens.

Shapes::

    states (B, T, d) --mix: conv over time, residual--> (B, T, d) --weight--> alphas (B, T)
    alphas --scaled to N per clip--> mass matrix (B, N, T) --@ states--> pooled (B, N, d)
    pooled --context conv + MLP readout + RMS norm--> tokens (B, N, d) in the LLM's input space

Training scales each clip's weights to its transcript's token count N (so the per-token targets
line up one to one) and a count loss teaches the raw sum to be N; at inference the sum decides
N = round(sum / threshold) (at least 1) and the weights are scaled to it the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F

from .config import PoolingConfig


@dataclass
class Pooled:
    """What the pooler made of a batch of clips."""

    tokens: torch.Tensor  # (B, N_max, d) input vectors; rows past counts[b] are zero
    counts: torch.Tensor  # (B,) long, vectors per clip
    weight_sums: torch.Tensor  # (B,) float, the raw integrate-and-fire sum (what the count loss trains)


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B,) lengths -> (B, size) bool, True on the first ``lengths[b]`` positions."""
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


def fire_counts(weight_sums: torch.Tensor, threshold: float) -> torch.Tensor:
    """Vectors emitted for these weight sums: one per whole threshold, plus one for a remainder >= half of it."""
    return torch.clamp(torch.floor(weight_sums / threshold + 0.5), min=1).long()


def mass_matrix(alphas: torch.Tensor, counts: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B, T) weights scaled to sum to counts * threshold -> (B, N_max, T): the share of state t in vector j.

    Vector j integrates the weight mass in [j, j + 1) * threshold along the clip; each row sums to 1
    (a weighted mean). Differentiable in the weights.
    """
    n_max = int(counts.max()) if counts.numel() else 0
    end = torch.cumsum(alphas, dim=1) / threshold  # (B, T): mass up to and including state t
    start = end - alphas / threshold
    j = torch.arange(n_max, device=alphas.device, dtype=alphas.dtype)[None, :, None]  # (1, N, 1)
    overlap = torch.minimum(end[:, None, :], j + 1) - torch.maximum(start[:, None, :], j)
    return overlap.clamp(min=0) * length_mask(counts, n_max)[:, :, None]


class TokenPooler(nn.Module):
    """Hearing states (B, T, d) -> about one input vector per text token (B, N, d)."""

    def __init__(self, d_model: int, cfg: PoolingConfig | None = None):
        super().__init__()
        self.cfg = cfg or PoolingConfig()
        k = self.cfg.kernel
        self.mix = nn.Conv1d(d_model, d_model, kernel_size=k, padding=k // 2)  # each state sees its neighbours, in order
        self.weight = nn.Linear(d_model, 1)  # integrate-and-fire weight of each state
        self.context = nn.Conv1d(d_model, d_model, kernel_size=3, padding=1)  # a vector sees the ones beside it
        hidden = self.cfg.hidden or 4 * d_model
        self.readout = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, hidden), nn.GELU(),
                                     nn.Linear(hidden, d_model))
        self.out_norm = nn.RMSNorm(d_model, eps=1e-6)
        nn.init.zeros_(self.mix.weight)  # starts as the identity on the states (residual)
        nn.init.zeros_(self.mix.bias)
        nn.init.zeros_(self.context.weight)
        nn.init.zeros_(self.context.bias)
        nn.init.constant_(self.weight.bias, -1.5)  # sigmoid ~0.18: about one vector per 4.6 audio tokens at start

    @torch.no_grad()
    def match_scale(self, token_embeddings: torch.Tensor) -> None:
        """Start the output gain at the per-dimension RMS of the LLM's token embeddings (V, d)."""
        rms = token_embeddings.detach().float().pow(2).mean(dim=0).sqrt()
        self.out_norm.weight.copy_(rms.to(self.out_norm.weight))

    def forward(self, states: torch.Tensor, lengths: torch.Tensor, counts: torch.Tensor | None = None) -> Pooled:
        """states (B, T, d), lengths (B,) valid states per clip; ``counts`` (B,) forces the number of vectors
        (training: the transcript's token count), else the weights decide it."""
        valid = length_mask(lengths, states.shape[1])  # (B, T)
        x = states * valid[..., None]
        x = x + F.gelu(self.mix(x.transpose(1, 2)).transpose(1, 2))  # (B, T, d)
        x = x * valid[..., None]
        alphas = torch.sigmoid(self.weight(x).squeeze(-1).float()) * valid  # (B, T)
        sums = alphas.sum(dim=1)
        if counts is None:
            counts = fire_counts(sums.detach(), self.cfg.threshold)
        counts = counts.to(alphas.device).long()
        scaled = alphas * (counts * self.cfg.threshold / sums.clamp(min=1e-6))[:, None]
        mass = mass_matrix(scaled, counts, self.cfg.threshold)  # (B, N, T)
        pooled = torch.bmm(mass.to(x.dtype), x)  # (B, N, d)
        keep = length_mask(counts, pooled.shape[1])[..., None]
        pooled = pooled + F.gelu(self.context((pooled * keep).transpose(1, 2)).transpose(1, 2))
        tokens = self.out_norm(pooled + self.readout(pooled)) * keep
        return Pooled(tokens, counts, sums)
