"""Pieces the demo's from-scratch training loops share (the LLM in :mod:`.lm`, the teacher in :mod:`.asr`).

A warm-up + cosine learning-rate schedule, AdamW with decay on matrices only, the step loop
itself (:func:`run_steps`: schedule, backward, clipping, progress and periodic evaluation) and
how a finished run is saved (:func:`save_trained`): the model and tokenizer with
``save_pretrained`` (safetensors) plus a JSON report holding the config, the loss curve and the
scores, announced by a ``done`` event.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import torch

ReportFn = Callable[[dict], None]
PROGRESS_EVERY = 50  # steps between two "step" events (and between two questions to threads_now)


class LoopConfig(Protocol):
    """The schedule fields :func:`run_steps` reads; both ``LLMTrainConfig`` and ``WhisperTrainConfig`` have them."""

    steps: int
    lr: float
    warmup_steps: int
    min_lr_ratio: float
    grad_clip: float
    eval_every: int


@dataclass
class LoopResult:
    """What :func:`run_steps` hands back for the report."""

    started: float  # time.time() when the run (data building included) started
    losses: list[float] = field(default_factory=list)  # the recorded loss of every step
    evals: list[dict] = field(default_factory=list)  # {"step": ..., **evaluate()} of each periodic evaluation
    train_seconds: float = 0.0  # from ``started`` to the end of the last step


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


def start_run(out_dir: str | os.PathLike, threads: int | None, report: ReportFn | None) -> tuple[Path, ReportFn]:
    """Set the PyTorch threads, create ``out_dir``; returns it and ``report`` (a no-op when None)."""
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir, report or (lambda _: None)


def run_steps(cfg: LoopConfig, model: torch.nn.Module, opt: torch.optim.Optimizer, params: list[torch.nn.Parameter],
              make_batch: Callable[[int], Any], loss_fn: Callable[[Any], tuple[torch.Tensor, torch.Tensor]],
              report: ReportFn, started: float, evaluate: Callable[[], dict] | None = None,
              threads_now: Callable[[], int] | None = None) -> LoopResult:
    """``cfg.steps`` optimizer steps on ``params``, clipped to ``cfg.grad_clip``; returns the losses and evaluations.

    ``make_batch(step)`` draws a batch; ``loss_fn(batch)`` returns (the loss to minimise, the loss
    to record), which differ when a training-only term is added. Every ``PROGRESS_EVERY`` steps
    and at the last, ``threads_now`` (when given) says how many PyTorch threads to use from then
    on and a ``step`` event is reported. Every ``cfg.eval_every`` steps (not at the last, which
    the caller scores in full) ``evaluate()`` runs and its dict is reported as an ``eval`` event.
    """
    result = LoopResult(started)
    model.train()
    for step in range(cfg.steps):
        lr = warmup_cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
        loss = _optimizer_step(opt, params, lr, cfg.grad_clip, loss_fn(make_batch(step)))
        result.losses.append(loss)
        if step % PROGRESS_EVERY == 0 or step == cfg.steps - 1:
            _follow_threads(threads_now)
            report({"event": "step", "step": step, "loss": loss, "lr": lr,
                    "elapsed_s": round(time.time() - started, 1), "threads": torch.get_num_threads()})
        if evaluate is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps:
            result.evals.append({"step": step + 1, **evaluate()})
            report({"event": "eval", **result.evals[-1]})
            model.train()
    result.train_seconds = time.time() - started
    return result


def _optimizer_step(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], lr: float, grad_clip: float,
                    losses: tuple[torch.Tensor, torch.Tensor]) -> float:
    """One AdamW step at ``lr`` on the first loss; returns the second (the recorded one) as a float."""
    loss, recorded = losses
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    return float(recorded.detach())


def _follow_threads(threads_now: Callable[[], int] | None) -> None:
    wanted = threads_now() if threads_now is not None else None
    if wanted and wanted != torch.get_num_threads():
        torch.set_num_threads(wanted)


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


def save_trained(out_dir: Path, model, tokenizer, report_name: str, cfg, run: LoopResult, facts: dict,
                 loss_tail: int, scores: dict, report: ReportFn, headline: dict) -> dict:
    """:func:`save_run` with the report both trainers write, then the ``done`` event; returns the report.

    The report holds ``facts`` (seed, parameter count, data sizes, ...), the times, the loss summary
    (``loss_last`` over the last ``loss_tail`` steps), the periodic evaluations and ``scores``;
    the ``done`` event holds the parameter count, the times and ``headline`` (e.g. the accuracy).
    """
    summary = save_run(out_dir, model, tokenizer, report_name, cfg, {
        **facts, "train_seconds": round(run.train_seconds, 1), "total_seconds": round(time.time() - run.started, 1),
        **loss_summary(run.losses, loss_tail), "evals": run.evals, "scores": scores,
    })
    report({"event": "done", **{k: summary[k] for k in ("params", "train_seconds", "total_seconds")}, **headline})
    return summary


def load_report(model_dir, report_name: str) -> dict:
    return json.loads((Path(model_dir) / report_name).read_text(encoding="utf-8"))
