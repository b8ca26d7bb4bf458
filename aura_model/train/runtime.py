"""What a run sets up around the math: threads and determinism, the accelerator, signals, the schedule, clocks.

Interrupts: SIGINT/SIGTERM set a ``StopFlag``; the loop asks ``agreed_stop`` at every optimizer
step boundary (all processes stop at the same step), writes a checkpoint and returns; ``aura
train`` then exits with ``checkpoint_layout.SIGNAL_EXIT`` (130 / 143). A second SIGINT stops at once
(KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..errors import AuraError
from .batching import batches_per_epoch


# ------------------------------------------------------------------ process-wide settings
@contextlib.contextmanager
def torch_settings(cfg):
    """Threads and deterministic mode for the run, restored afterwards (tests run several trainings in one process)."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("aura")) / "train"


# ------------------------------------------------------------------ signals
class StopFlag:
    """Set by SIGINT/SIGTERM; the loop checks it at step boundaries."""

    def __init__(self) -> None:
        self.signal: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def stop_signals():
    """A StopFlag that SIGINT/SIGTERM set while the block runs; the previous handlers come back afterwards."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals can only be caught on the main thread; the caller stops us another way
        return

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if flag.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        flag.signal = name

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def agreed_stop(stop: StopFlag, acc) -> str | None:
    """The signal to stop for, agreed across processes (any one stopping stops all; SIGTERM wins)."""
    if acc.num_processes == 1:
        return stop.signal
    flag = torch.tensor([2.0 if stop.signal == "SIGTERM" else 1.0 if stop.signal else 0.0], device=acc.device)
    got = float(acc.reduce(flag, "sum").item())
    if got <= 0:
        return None
    return stop.signal or ("SIGTERM" if got >= 2 else "SIGINT")


# ------------------------------------------------------------------ the accelerator
def make_accelerator(cfg, find_unused: bool):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise AuraError("train.device is cuda but CUDA is not available on this machine")
    mp = cfg.mixed_precision
    if mp == "auto":
        mp = "no" if cpu else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    try:
        return Accelerator(cpu=cpu, mixed_precision=mp,
                           kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)])
    except ValueError as exc:
        raise AuraError(f"cannot set up Accelerate (mixed_precision={mp}): {exc}") from exc


def reset_accelerate(accelerator) -> None:
    """Let a later train() in the same (single) process choose other settings."""
    if accelerator is None or accelerator.num_processes > 1:
        return
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state()
    GradientState._reset_state()


def reduce_named(values: dict[str, float], acc, op: str) -> dict[str, float]:
    """``values`` reduced across processes (``op`` "sum" or "mean"), keys sorted.

    Every process must hold the same keys: the tensor that travels is built from the sorted keys."""
    keys = sorted(values)
    if acc.num_processes == 1:
        return {k: values[k] for k in keys}
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=acc.device)
    return dict(zip(keys, acc.reduce(tensor, op).cpu().tolist()))


# ------------------------------------------------------------------ the schedule
@dataclass(frozen=True)
class StepPlan:
    """How many optimizer steps a run takes."""

    batches_per_epoch: int  # per process
    steps_per_epoch: int  # optimizer steps: batches / grad_accum, rounded up
    total_steps: int

    @classmethod
    def of(cls, n_items: int, batch_size: int, grad_accum: int, world: int, epochs: int, max_steps: int):
        per_epoch = batches_per_epoch(n_items, batch_size, world)
        steps = math.ceil(per_epoch / grad_accum)
        return cls(per_epoch, steps, max_steps or epochs * steps)

    def epochs_done(self, epoch: int, batch: int) -> float:
        return epoch + batch / max(1, self.batches_per_epoch)


def make_optimizer(params: list[torch.nn.Parameter], cfg) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases and norms)."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [g for g in ({"params": decay, "weight_decay": cfg.weight_decay},
                          {"params": no_decay, "weight_decay": 0.0}) if g["params"]]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg.scheduler, cfg.warmup_steps, total_steps))


def lr_lambda(name: str, warmup: int, total: int) -> Callable[[int], float]:
    """The LR factor at a step: linear warm-up, then constant, linear or cosine decay to 0 at ``total``."""
    def f(step: int) -> float:
        if step < warmup:
            return float(step) / float(max(1, warmup))
        if name == "constant":
            return 1.0
        progress = min(1.0, float(step - warmup) / float(max(1, total - warmup)))
        if name == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


# ------------------------------------------------------------------ clocks
class Stopwatch:
    """Seconds per stage (validate, transcripts, teacher, student, responses, train, eval, save)."""

    def __init__(self) -> None:
        self.timing: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timing[name] = self.timing.get(name, 0.0) + time.perf_counter() - t0


@dataclass
class LoopClock:
    """Training-loop time without the eval and checkpoint pauses, so samples/s and the ETA measure training."""

    before_s: float  # seconds trained before a resume
    start: float = field(default_factory=time.perf_counter)
    paused_s: float = 0.0
    samples: int = 0  # trained on by this invocation, all processes
    steps: int = 0  # optimizer steps by this invocation

    def trained_s(self) -> float:
        """Seconds of training by this invocation."""
        return time.perf_counter() - self.start - self.paused_s

    @contextlib.contextmanager
    def pause(self):
        """Yields the seconds trained so far; the block's time is left out."""
        t0 = time.perf_counter()
        try:
            yield t0 - self.start - self.paused_s
        finally:
            self.paused_s += time.perf_counter() - t0
