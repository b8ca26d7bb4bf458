"""Exact resume: where a run stands (``TrainState``), writing it as a checkpoint and putting it back.

The data order is a function of (seed, epoch) and the position is (epoch, batch); a checkpoint
holds the trainable weights, the optimizer, scheduler and grad scaler, every process's RNG states
and the ``TrainState`` (the file format is ``checkpoint.py``). The RNG states are restored right
before the first step, after everything that draws from them while setting up.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint_layout import latest_checkpoint, step_name
from ..errors import AuraError
from . import checkpoint as ckpt
from .output import describe
from .config import TrainSpec, spec_differences
from .progress import Reporter

RESUMED_KEYS = ("step", "epoch", "batch", "samples", "history", "evals", "elapsed_s")  # what a resume takes over


@dataclass
class TrainState:
    """Where the run stands; written to every checkpoint's state.json and summarised in the bundle."""

    step: int = 0  # optimizer steps done, including those before a resume
    epoch: int = 0  # the epoch being trained
    batch: int = 0  # the next batch of that epoch (per process)
    samples: int = 0  # clips trained on, all processes
    history: list[dict[str, float]] = field(default_factory=list)  # per step: {"step", "loss", "loss_<term>"}
    evals: list[dict[str, Any]] = field(default_factory=list)  # every validation's metrics
    elapsed_s: float = 0.0  # training-loop seconds, including those before a resume
    resumed_from: int | None = None  # the step of the checkpoint this run resumed from


def resume_point(spec: TrainSpec, acc, rep: Reporter) -> Path | None:
    """The checkpoint to resume from (--resume), after checking it fits; without --resume, old ones are removed."""
    root = spec.checkpoint_dir
    if not spec.resume:
        if acc.is_main_process:
            removed = ckpt.remove_all(root)
            if removed:
                rep.message(f"removed {removed} checkpoint(s) of an earlier run in {root} (not --resume)")
        acc.wait_for_everyone()
        return None
    latest = latest_checkpoint(root)
    if latest is None:
        raise AuraError(f"--resume: no checkpoint in {str(root)!r} to resume from")
    saved = ckpt.read_state(latest)
    diffs = spec_differences(saved.get("spec", {}), spec.to_dict())
    if saved.get("num_processes", 1) != acc.num_processes:
        diffs.append(f"number of processes {saved.get('num_processes', 1)} -> {acc.num_processes}")
    if diffs:
        raise AuraError(f"--resume: checkpoint {latest.name} in {str(root)!r} was made with other settings ("
                        + "; ".join(diffs) + "); resume with the same settings, or start afresh without --resume")
    if acc.is_main_process:
        ckpt.remove_temp(root)
    acc.wait_for_everyone()
    return latest


def trainable_state(module: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """The trainable tensors by name, in float32."""
    params = dict(module.named_parameters())
    return {n: params[n].detach().float() if params[n].dtype != torch.float32 else params[n].detach() for n in names}


def save_checkpoint(spec: TrainSpec, state: TrainState, layer_map: list[tuple[int, int]], module: torch.nn.Module,
                    names: list[str], optimizer, scheduler, acc) -> Path:
    """Write the checkpoint of ``state.step`` (every process writes its RNG states); returns its folder."""
    root = spec.checkpoint_dir
    tmp = ckpt.temp_dir(root, state.step)
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    ckpt.save_rng(tmp, acc.process_index)
    acc.wait_for_everyone()
    path = root / step_name(state.step)
    if acc.is_main_process:
        scaler = acc.scaler.state_dict() if acc.scaler is not None else None
        saved = dict(dataclasses.asdict(state), spec=spec.to_dict(), num_processes=acc.num_processes,
                     layer_map=[list(p) for p in layer_map])
        try:
            ckpt.save_common(tmp, trainable_state(module, names), optimizer.state_dict(), scheduler.state_dict(),
                             scaler, saved)
            path = ckpt.commit(tmp, root, state.step, spec.train.keep_checkpoints)
        except OSError as exc:  # a full disk: no half checkpoint left, the previous one stays the one to resume
            shutil.rmtree(tmp, ignore_errors=True)
            previous = latest_checkpoint(root)
            kept = f"{previous} is intact: free space and continue with --resume" if previous else "no earlier one"
            raise AuraError(f"could not write checkpoint {path}: {describe(exc, root)}; {kept}") from exc
    acc.wait_for_everyone()
    return path


def load_checkpoint(folder: Path, module: torch.nn.Module, names: list[str], optimizer, scheduler,
                    acc) -> TrainState:
    """Put the checkpoint's weights, optimizer, scheduler and scaler back; returns its TrainState.
    (Its RNG states are restored separately, right before the first step.)"""
    _load_weights(folder, module, names)
    optimizer.load_state_dict(ckpt.load_optimizer(folder))
    scheduler.load_state_dict(ckpt.load_scheduler(folder))
    scaler = ckpt.load_scaler(folder)
    if scaler is not None and acc.scaler is not None:
        acc.scaler.load_state_dict(scaler)
    saved = ckpt.read_state(folder)
    return TrainState(**{key: saved[key] for key in RESUMED_KEYS}, resumed_from=saved["step"])


def _load_weights(folder: Path, module: torch.nn.Module, names: list[str]) -> None:
    tensors = ckpt.load_trainable(folder)
    missing = sorted(set(names) - set(tensors))
    extra = sorted(set(tensors) - set(names))
    if missing or extra:
        raise AuraError(f"checkpoint {folder} does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}")
    params = dict(module.named_parameters())
    with torch.no_grad():
        for n in names:
            if params[n].shape != tensors[n].shape:
                raise AuraError(f"checkpoint {folder}: {n} has shape {tuple(tensors[n].shape)}, "
                                f"the model has {tuple(params[n].shape)}")
            params[n].copy_(tensors[n].to(params[n].device, params[n].dtype))
