"""Pieces the demo's from-scratch training loops share (the LLM in :mod:`.lm`, the teacher in :mod:`.asr`).

A warm-up + cosine learning-rate schedule, AdamW with decay on matrices only, and how a
finished run is saved: the model and tokenizer with ``save_pretrained`` (safetensors) plus a
JSON report holding the config, the loss curve and the scores.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Iterable

import torch


def warmup_cosine_lr(step: int, lr: float, warmup_steps: int, steps: int, min_lr_ratio: float) -> float:
    """Linear warm-up to ``lr`` over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at ``steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW (betas 0.9, 0.98) with decoupled weight decay on matrices only, not on norms and biases."""
    params = [p for p in params if p.requires_grad]
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98))


def loss_summary(losses: list[float], tail: int) -> dict:
    """First loss, mean of the last ``tail`` losses, and a curve of at most ~200 points."""
    return {"loss_first": losses[0], "loss_last": sum(losses[-tail:]) / len(losses[-tail:]),
            "loss_curve": [round(x, 4) for x in losses[:: max(1, len(losses) // 200)]]}


def save_run(out_dir: Path, model, tokenizer, report_name: str, cfg, summary: dict) -> dict:
    """Save model + tokenizer to ``out_dir`` and ``{"config": cfg, **summary}`` as ``report_name``; returns the report."""
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    full = {"config": dataclasses.asdict(cfg), **summary}
    (out_dir / report_name).write_text(json.dumps(full, indent=1) + "\n", encoding="utf-8")
    return full


def load_report(model_dir, report_name: str) -> dict:
    return json.loads((Path(model_dir) / report_name).read_text(encoding="utf-8"))
