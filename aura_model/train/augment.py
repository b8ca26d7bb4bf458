"""SpecAugment on the student's input only ("noisy student" distillation).

The teacher's states and the base LLM's answers are computed once from the clean clip and
cached; during training the student reads a masked copy of the same log-mel features, so it
must recover what the teacher heard from less evidence. Time and mel-band masks keep the
frame timing, so the layer-wise targets stay aligned (unlike speed or pitch perturbation).

Masks are drawn from a generator seeded by (seed, step, micro-batch, process), so a resumed
run masks exactly as the uninterrupted one would have.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MaskSettings:
    freq_masks: int = 0  # mel-band masks per clip
    freq_width: int = 8  # each band mask covers 0..freq_width bands (uniform)
    time_masks: int = 0  # time masks per clip
    time_width: float = 0.05  # each time mask covers 0..time_width of the clip's frames (uniform)

    @property
    def active(self) -> bool:
        return (self.freq_masks > 0 and self.freq_width > 0) or (self.time_masks > 0 and self.time_width > 0)


def mask_generator(seed: int, step: int, micro: int = 0, rank: int = 0) -> torch.Generator:
    """The CPU generator for one micro-batch's masks."""
    g = torch.Generator()
    g.manual_seed(((seed * 1_000_003 + step) * 1009 + micro) * 131 + rank)
    return g


def spec_augment(features: torch.Tensor, frame_lengths: torch.Tensor, settings: MaskSettings,
                 generator: torch.Generator) -> torch.Tensor:
    """A masked copy of ``features`` (B, n_mels, F); masked cells take the clip's mean value.

    Only the first ``frame_lengths[b]`` frames of clip ``b`` are real; masks stay inside them
    and the padding is left as it is.
    """
    out = features.clone()
    if not settings.active:
        return out
    n_mels = features.shape[1]
    for b in range(features.shape[0]):
        length = int(frame_lengths[b])
        if length <= 0:
            continue
        fill = out[b, :, :length].mean()
        for _ in range(settings.freq_masks):
            width = int(torch.randint(0, min(settings.freq_width, n_mels) + 1, (1,), generator=generator))
            if width:
                start = int(torch.randint(0, n_mels - width + 1, (1,), generator=generator))
                out[b, start:start + width, :length] = fill
        max_t = int(settings.time_width * length)
        for _ in range(settings.time_masks):
            width = int(torch.randint(0, max_t + 1, (1,), generator=generator))
            if width:
                start = int(torch.randint(0, length - width + 1, (1,), generator=generator))
                out[b, :, start:start + width] = fill
    return out
