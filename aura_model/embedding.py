"""AudioEmbedding: log-mel frames -> a short sequence of vectors in the LLM's input space.

Math only; loading and saving live in ``bundle.py``.

Rates (defaults): log-mel at 100 frames/s -> conv stem with stride 2 at 50 frames/s
(the rate of a Whisper encoder, so teacher states line up after pooling by ``stack``)
-> ``stack`` consecutive frames concatenated -> 12.5 audio tokens/s for stack = 4.

Number of audio tokens for F mel frames (the formula the processor relies on):

    F2 = ceil(F / 2)          # conv k=3, stride 2, padding 1: floor((F - 1) / 2) + 1
    T  = ceil(F2 / stack)     # the last group is zero-padded

Frames past a clip's length are zeroed before each convolution, so a clip gives the
same tokens alone or inside a padded batch.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from .config import EmbeddingConfig


def conv_frames(num_mel_frames: int | torch.Tensor) -> int | torch.Tensor:
    """Frames after the stride-2 conv stem: ceil(F / 2)."""
    return (num_mel_frames + 1) // 2


def num_audio_tokens(num_mel_frames: int | torch.Tensor, stack: int) -> int | torch.Tensor:
    """Audio tokens for ``num_mel_frames`` log-mel frames: ceil(ceil(F / 2) / stack)."""
    return (conv_frames(num_mel_frames) + stack - 1) // stack


STEM_PARAMS = ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")  # the conv stem, named as in a Whisper encoder


def _length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    # (B,) -> (B, size) bool, True on valid positions
    return torch.arange(size, device=lengths.device)[None, :] < lengths[:, None]


class AudioEmbedding(nn.Module):
    """Conv stem + frame stacking + norm + projection to the LLM hidden size."""

    def __init__(self, n_mels: int, d_model: int, cfg: EmbeddingConfig | None = None):
        super().__init__()
        self.cfg = cfg or EmbeddingConfig()
        c = self.cfg.conv_channels
        self.n_mels = n_mels
        self.d_model = d_model
        self.conv1 = nn.Conv1d(n_mels, c, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(c, c, kernel_size=3, stride=2, padding=1)
        stacked = c * self.cfg.stack
        self.norm = nn.LayerNorm(stacked)
        self.dropout = nn.Dropout(self.cfg.dropout)
        if self.cfg.mlp_hidden > 0:
            self.proj = nn.Sequential(
                nn.Linear(stacked, self.cfg.mlp_hidden), nn.GELU(), nn.Linear(self.cfg.mlp_hidden, d_model)
            )
        else:
            self.proj = nn.Linear(stacked, d_model)
        self.out_norm = nn.RMSNorm(d_model, eps=1e-6) if self.cfg.output_norm else None

    @torch.no_grad()
    def match_scale(self, token_embeddings: torch.Tensor) -> None:
        """Initialise the output gain to the per-dimension RMS of the LLM's token embeddings (V, d_model).

        Audio tokens then start at the scale of text tokens; the gain is trained from there.
        """
        if self.out_norm is None:
            return
        if token_embeddings.shape[-1] != self.d_model:
            raise ValueError(f"token embeddings have width {token_embeddings.shape[-1]}, expected {self.d_model}")
        rms = token_embeddings.detach().float().pow(2).mean(dim=0).sqrt()  # (d_model,)
        self.out_norm.weight.copy_(rms.to(self.out_norm.weight))

    @torch.no_grad()
    def load_stem(self, weights: dict[str, torch.Tensor]) -> None:
        """Start the conv stem from a Whisper encoder's (same layout: k=3 conv, then k=3 stride-2 conv, GELU).

        ``weights`` holds ``conv1.weight`` (C, n_mels, 3), ``conv1.bias``, ``conv2.weight`` (C, C, 3), ``conv2.bias``
        with C = conv_channels; anything else is a ValueError naming the shapes.
        """
        for name in STEM_PARAMS:  # check all before changing any
            target = self.get_parameter(name)
            if name not in weights or tuple(weights[name].shape) != tuple(target.shape):
                got = tuple(weights[name].shape) if name in weights else "nothing"
                raise ValueError(f"stem weight {name}: expected shape {tuple(target.shape)}, got {got}")
        for name in STEM_PARAMS:
            target = self.get_parameter(name)
            target.copy_(weights[name].to(target))

    @property
    def stack(self) -> int:
        return self.cfg.stack

    def forward(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch of log-mel features.

        features: (B, n_mels, F) float; frame_lengths: (B,) valid frames per clip (None = all F).
        Returns embeddings (B, T, d_model) with T = num_audio_tokens(F, stack), and the
        number of valid tokens per clip (B,). Positions past a clip's length hold values
        the caller must ignore.
        """
        b, n_mels, frames = features.shape
        if n_mels != self.n_mels:
            raise ValueError(f"AudioEmbedding expects {self.n_mels} mel bands, got {n_mels}")
        if frame_lengths is None:
            frame_lengths = torch.full((b,), frames, dtype=torch.long, device=features.device)
        x = features.to(self.conv1.weight.dtype)
        x = x * _length_mask(frame_lengths, frames)[:, None, :]  # (B, n_mels, F), padding zeroed
        x = F.gelu(self.conv1(x))  # (B, C, F)
        x = x * _length_mask(frame_lengths, frames)[:, None, :]
        x = F.gelu(self.conv2(x))  # (B, C, F2), F2 = ceil(F / 2)
        f2 = x.shape[-1]
        lengths2 = conv_frames(frame_lengths)
        x = x * _length_mask(lengths2, f2)[:, None, :]
        pad = (-f2) % self.stack
        x = F.pad(x, (0, pad))  # (B, C, T * stack)
        x = x.transpose(1, 2)  # (B, T * stack, C)
        t = x.shape[1] // self.stack
        x = x.reshape(b, t, self.stack * x.shape[-1])  # (B, T, C * stack): consecutive frames side by side
        x = self.proj(self.dropout(self.norm(x)))  # (B, T, d_model)
        if self.out_norm is not None:
            x = self.out_norm(x)  # each token at the scale of the LLM's token embeddings
        return x, num_audio_tokens(frame_lengths, self.stack)
