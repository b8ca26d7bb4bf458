"""What a run tells: the per-step loss record and its ``progress`` event, the bundle's training summary
(``aura_config.json`` → ``training``) and model card, and the throughput numbers of the result."""

from __future__ import annotations

import math
from typing import Any

from .models import ModelPlan
from .prepare import Data
from .progress import Reporter
from .resume import TrainState
from .runtime import LoopClock, StepPlan

HISTORY_IN_BUNDLE = 200  # loss points kept in aura_config.json


def step_record(step: int, losses: dict[str, float]) -> dict[str, float]:
    """One history entry: {"step", "loss" (the total), "loss_<term>" per active term} from the step's losses."""
    terms = dict(losses)
    record = {"step": step, "loss": terms.pop("total")}
    record.update({f"loss_{k}": v for k, v in terms.items()})
    return record


def record_fields(record: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in record.items() if k != "step"}


def report_progress(rep: Reporter, record: dict[str, float], total_steps: int, epochs: float, lr: float,
                    loop: LoopClock) -> None:
    """The ``progress`` event of a training step (rate and ETA over this invocation's training time)."""
    elapsed = loop.trained_s()
    rate = loop.samples / elapsed if elapsed > 0 else None
    eta = (total_steps - record["step"]) * elapsed / loop.steps if loop.steps else None
    rep.event("progress", stage="train", step=record["step"], total_steps=total_steps, epoch=epochs, lr=lr,
              samples_per_s=rate, eta_s=eta, elapsed_s=loop.before_s + elapsed, **record_fields(record))


def thinned_history(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """At most about HISTORY_IN_BUNDLE evenly spaced entries, always with the last one."""
    stride = max(1, math.ceil(len(history) / HISTORY_IN_BUNDLE))
    return history[::stride] + ([history[-1]] if history and (len(history) - 1) % stride else [])


def training_summary(spec, state: TrainState, steps: StepPlan, plan: ModelPlan, data: Data, quantization: str,
                     acc) -> dict[str, Any]:
    """The bundle's ``training`` section."""
    history, info = state.history, plan.info
    return {
        "teacher": spec.teacher, "student": spec.student, "data": spec.data,
        "steps": state.step, "total_steps": steps.total_steps,
        "epochs": round(steps.epochs_done(state.epoch, state.batch), 4),
        "samples_seen": state.samples, "num_processes": acc.num_processes,
        "device": str(acc.device), "mixed_precision": acc.mixed_precision,
        "quantization": quantization, "layer_map": [list(p) for p in plan.layer_map],
        "teacher_info": {"model_type": info.model_type, "layers": info.num_layers,
                         "width": info.width, "features": info.describe_features()},
        "first_loss": history[0]["loss"] if history else None,
        "final_loss": history[-1] if history else None,
        "loss_history": thinned_history(history),
        "evals": state.evals, "data_report": data.report.to_dict(), "cache": dict(data.cache.stats),
        "teacher_loaded": data.teacher.loaded, "resumed_from_step": state.resumed_from,
        "elapsed_s": round(state.elapsed_s, 3), "config": spec.to_dict(),
    }


def model_card(spec, n_train: int, steps: int, metrics: dict[str, Any]) -> str:
    """The bundle's README.md."""
    lines = [
        "# AuRA adapter", "",
        f"Distilled from teacher `{spec.teacher}` into base LLM `{spec.student}` "
        f"on `{spec.data}` ({n_train} training clips, {steps} steps).", "",
        "Load it with `aura chat --bundle <this folder>`. Validation metrics:", "",
    ]
    lines += [f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in metrics.items()]
    return "\n".join(lines) + "\n"


PREPARATION = ("validate", "transcripts", "teacher", "responses")  # the stages the caches speed up


def throughput(samples: int, loop_s: float, timing: dict[str, float]) -> tuple[float, float]:
    """(samples/s of the training loop, samples/s of cache filling + training loop)."""
    prep = sum(timing.get(k, 0.0) for k in PREPARATION)
    return (samples / loop_s if loop_s > 0 else 0.0,
            samples / (prep + loop_s) if prep + loop_s > 0 else 0.0)
