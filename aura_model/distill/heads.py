"""The training-only modules of distillation: projection heads, the token CTC head, the teacher-decoder loss.

They hold parameters or frozen teacher parts, so they are modules rather than pure losses; none of them is
saved in the adapter bundle.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LayerMap, normalise_layer_map
from .losses import check_mask


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
        self.layer_map: LayerMap = list(normalise_layer_map(layer_map))
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
        check_mask(mask, states.shape[:2], "mask")
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
