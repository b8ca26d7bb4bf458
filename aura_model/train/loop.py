"""The distillation loop, under Hugging Face Accelerate: ``train(spec)``, top to bottom.

1. cheap checks that need no weights: the student's tokenizer has a chat template, the teacher
   is an audio encoder, the layer map fits both, a ``--resume`` checkpoint matches the settings
   (``models.check_models``, ``resume.resume_point``);
2. the data: list the clips, decode each once (bad ones skipped and reported), then fill the
   caches (teacher transcripts, teacher states), releasing the teacher (``prepare.py``);
3. the student: base LLM, a fresh LoRA and AudioEmbedding and the training-only heads
   (``models.build_student``); the base LLM's answers to the transcripts are generated once (cached);
4. the loop: AdamW + warm-up/decay schedule, gradient accumulation, clipping, mixed precision,
   DDP across processes (``accelerate launch``), checkpoints every N steps and on SIGINT/SIGTERM
   (``resume.py``), validation every M steps (``validation.py``); the loss terms are ``objective.py``;
5. the bundle (``bundle.save_bundle``), written by the main process only, with the training
   summary and the last validation metrics in ``aura_config.json`` (``reporting.py``).

Exact resume: see ``resume.py``; on the CPU with ``train.deterministic`` a resumed run ends with
the same weights as an uninterrupted one. Interrupts: see ``runtime.py``; at the step boundary after
a signal the loop writes a checkpoint, emits a ``checkpoint`` event and returns with ``interrupted`` set.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..bundle import save_bundle
from ..checkpoint_layout import SIGNAL_EXIT
from ..config import GenerationSettings
from ..errors import AuraError
from ..distill import total_loss
from . import checkpoint as ckpt
from .augment import MaskSettings, mask_generator, spec_augment
from .batching import Batch, Collator, epoch_batches, loader
from .cache import Cache
from .config import TrainSpec
from .data import Item
from .models import ModelPlan, Student, build_student, check_models
from .objective import DistillModule, base_targets, with_echo_items
from .output import check_output, describe
from .prepare import Data, Ranks, StopRequested, base_fingerprint, fill_responses, open_data, prepare_items
from .progress import Reporter, TqdmReporter
from .reporting import model_card, report_progress, step_record, throughput, training_summary
from .resume import TrainState, load_checkpoint, resume_point, save_checkpoint
from .runtime import (LoopClock, StepPlan, StopFlag, Stopwatch, agreed_stop, default_cache_dir,
                      make_accelerator, make_optimizer, make_scheduler, reduce_named, reset_accelerate,
                      stop_signals, torch_settings)
from .teacher import Teacher, model_fingerprint
from .validation import evaluate, metrics_from_sums


@dataclass
class TrainResult:
    """What a run did. ``exit_code`` is what `aura train` returns."""

    output: Path | None  # the bundle, None when interrupted before the end
    steps: int  # optimizer steps done in total (including those before a resume)
    total_steps: int
    epoch: float  # epochs done
    losses: list[dict[str, float]]  # one entry per step: {"step", "loss", "loss_<term>"}
    metrics: dict[str, Any]  # last validation metrics
    data: dict[str, Any]  # the DataReport
    samples: int  # clips trained on by this invocation (all processes)
    timing: dict[str, float]  # seconds per stage: validate, transcripts, teacher, student, responses, train, eval, save
    samples_per_s: float  # training loop only
    end_to_end_samples_per_s: float  # samples / (cache filling + training loop): what the teacher cache speeds up
    interrupted: str | None = None  # "SIGINT" | "SIGTERM" when stopped by a signal (a checkpoint was written)
    checkpoint: Path | None = None  # the last checkpoint written
    teacher_loaded: bool = False  # False when every teacher output came from the cache
    cache: dict[str, int] = field(default_factory=dict)
    num_processes: int = 1

    @property
    def exit_code(self) -> int:
        return SIGNAL_EXIT.get(self.interrupted or "", 1) if self.interrupted else 0

    @property
    def first_loss(self) -> float | None:
        return self.losses[0]["loss"] if self.losses else None

    @property
    def final_loss(self) -> float | None:
        return self.losses[-1]["loss"] if self.losses else None


def train(spec: TrainSpec, reporter: Reporter | None = None, *, on_step: Callable[[int], None] | None = None,
          teacher_loader: Callable[..., Teacher] | None = None) -> TrainResult:
    """Run (or resume) one distillation; returns what it did. Raises AuraError for bad input.

    ``reporter`` receives the progress events (default: a tqdm bar on stderr). ``on_step(step)`` is
    called after every optimizer step (tests use it to deliver a signal at a known step).
    ``teacher_loader(info, device, dtype, trust_remote_code)`` replaces ``Teacher.load``.
    """
    reporter = reporter or TqdmReporter()
    spec.check_paths()
    check_output(spec.output, spec.data, spec.checkpoint_dir)  # before any work: never replace the user's files
    with torch_settings(spec.train):
        acc = None
        try:
            acc = make_accelerator(spec.train, find_unused=not spec.distill.needs_response)
            with stop_signals() as stop:
                rep = reporter if acc.is_main_process else Reporter()
                return _train(spec, acc, rep, stop, on_step, teacher_loader)
        finally:
            reset_accelerate(acc)


@dataclass
class Setup:
    """What setting up produced: the loop, validation, checkpoints and the bundle read it; none of it changes."""

    spec: TrainSpec
    acc: Any  # the Accelerator
    rep: Reporter  # the caller's on the main process, a silent one on the others
    ranks: Ranks
    clock: Stopwatch
    plan: ModelPlan
    data: Data
    student: Student
    train_items: list[Item]  # with the echo copies
    val_items: list[Item]
    steps: StepPlan
    model: torch.nn.Module  # the DistillModule as Accelerate prepared it (DDP-wrapped across processes)
    module: DistillModule  # the same, unwrapped: validation, base targets, checkpoints and the bundle read it
    optimizer: Any  # AdamW as Accelerate prepared it
    scheduler: Any
    trainable: dict[str, torch.nn.Parameter]  # by name: what the optimizer and checkpoints hold
    collate: Collator
    val_collate: Collator  # also the prompts without answers (agreement) and the base LLM's inputs
    masks: MaskSettings  # what the student hears masked during training

    def epochs(self, state: TrainState) -> float:
        return self.steps.epochs_done(state.epoch, state.batch)


def _train(spec: TrainSpec, acc, rep: Reporter, stop: StopFlag, on_step: Callable[[int], None] | None,
           teacher_loader: Callable[..., Teacher] | None) -> TrainResult:
    t, d = spec.train, spec.distill
    clock = Stopwatch()
    ranks = Ranks(acc.process_index, acc.num_processes, acc.wait_for_everyone, lambda: stop.signal)
    # 1. checks that need no weights
    plan = check_models(spec)
    resume_from = resume_point(spec, acc, rep)
    # 2-3. the data and caches, the student, the base LLM's answers
    data, items = open_data(spec, plan.info, acc.device, t.cache_dir or default_cache_dir(), teacher_loader)
    try:
        train_items, val_items = prepare_items(spec, data, items, plan.teacher_layers, rep, ranks, clock)
        train_items = with_echo_items(train_items, d.echo_prompt)
        with clock("student"):
            student = build_student(spec, plan, acc.device, rep)
        if d.needs_response:
            with clock("responses"):
                _fill_answers(spec, plan, student, data.cache, train_items + val_items, rep, ranks)
    except StopRequested as exc:
        rep.message(f"stopped by {exc.signal} while filling the caches; what is cached so far is kept")
        return _stopped_early(exc.signal, data, clock, acc)
    # 4. the loop
    setup = _ready_to_train(spec, acc, rep, ranks, clock, plan, data, student, train_items, val_items)
    state = TrainState()
    if resume_from is not None:
        state = load_checkpoint(resume_from, setup.module, list(setup.trainable), setup.optimizer, setup.scheduler,
                                acc)
        ckpt.restore_rng(resume_from, acc.process_index)  # last: nothing draws from it before the first step
    rep.message(f"training: {len(train_items)} clips, {setup.steps.total_steps} steps "
                f"({setup.steps.steps_per_epoch} per epoch), {acc.num_processes} process(es), device {acc.device}, "
                f"mixed precision {acc.mixed_precision}, quantization {student.quantization}")
    loop = LoopClock(before_s=state.elapsed_s)
    interrupted, checkpoint, metrics = _loop(setup, state, loop, stop, on_step)
    clock.timing["train"] = trained_s = loop.trained_s()
    state.elapsed_s = loop.before_s + trained_s
    # 5. the last validation and the bundle
    if interrupted is None and t.eval_at_end and val_items and metrics.get("step", -1) != state.step:
        metrics = _validate(setup, state)
    output = _save_bundle(setup, state, metrics) if interrupted is None else None
    return _finish(setup, state, output, metrics, interrupted, checkpoint, loop.samples, trained_s)


def _fill_answers(spec: TrainSpec, plan: ModelPlan, student: Student, cache: Cache, items: list[Item], rep: Reporter,
                  ranks: Ranks) -> None:
    """The base LLM's answer to each transcript: the target of the response terms (generated once, cached)."""
    base_fp = base_fingerprint(model_fingerprint(spec.student, plan.llm_config), plan.tokenizer,
                               student.quantization, student.resolved.dtype)
    fill_responses(items, student.aura, plan.processor, student.eos_ids, base_fp, cache, spec.train, rep, ranks)


def _ready_to_train(spec: TrainSpec, acc, rep: Reporter, ranks: Ranks, clock: Stopwatch, plan: ModelPlan, data: Data,
                    student: Student, train_items: list[Item], val_items: list[Item]) -> Setup:
    """The optimizer, the schedule and the collators; the model and optimizer prepared by Accelerate."""
    t, d = spec.train, spec.distill
    trainable = {n: p for n, p in student.module.named_parameters() if p.requires_grad}
    optimizer = make_optimizer(list(trainable.values()), t)
    steps = StepPlan.of(len(train_items), t.batch_size, t.grad_accum, acc.num_processes, t.epochs, t.max_steps)
    scheduler = make_scheduler(optimizer, t, steps.total_steps)
    model, optimizer = acc.prepare(student.module, optimizer)
    collate = Collator(data.source, plan.processor, spec.model, data.cache, plan.teacher_layers,
                       want_response=d.needs_response, want_base=d.needs_base, want_ctc=d.w_ctc > 0,
                       decode_ids=student.decode_ids)
    val_collate = Collator(data.source, plan.processor, spec.model, data.cache, plan.teacher_layers,
                           want_response=d.needs_response, want_base=d.needs_response, want_prompt_only=True,
                           want_ctc=d.w_ctc > 0, decode_ids=student.decode_ids)
    masks = MaskSettings(d.student_freq_masks, d.student_freq_width, d.student_time_masks,
                         float(d.student_time_width))
    return Setup(spec, acc, rep, ranks, clock, plan, data, student, train_items, val_items, steps, model,
                 acc.unwrap_model(model), optimizer, scheduler, trainable, collate, val_collate, masks)


# ------------------------------------------------------------------ the loop
def _loop(setup: Setup, state: TrainState, loop: LoopClock, stop: StopFlag,
          on_step: Callable[[int], None] | None) -> tuple[str | None, Path | None, dict[str, Any]]:
    """Optimizer steps until the last one or a signal: (the signal or None, the last checkpoint, the last metrics)."""
    t, acc = setup.spec.train, setup.acc
    world, rank = acc.num_processes, acc.process_index
    metrics: dict[str, Any] = state.evals[-1] if state.evals else {}
    checkpoint = None
    while state.step < setup.steps.total_steps:
        batches = epoch_batches(len(setup.train_items), state.epoch, t.seed, t.batch_size, world, rank)
        data = loader(setup.train_items, batches[state.batch:], setup.collate, t.num_workers)
        i = state.batch
        while i < len(batches) and state.step < setup.steps.total_steps:
            window = min(t.grad_accum, len(batches) - i)
            losses, clips = _optimizer_step(setup, data, window, state.step)
            i += window
            state.epoch, state.batch = (state.epoch + 1, 0) if i >= len(batches) else (state.epoch, i)
            _count_step(setup, state, loop, losses, clips * world)
            if on_step is not None:
                on_step(state.step)
            interrupted = agreed_stop(stop, acc)
            with loop.pause() as trained_s:
                if not interrupted and t.eval_every and state.step % t.eval_every == 0 and setup.val_items:
                    metrics = _validate(setup, state)  # before the checkpoint, so that it holds this eval too
                if interrupted or (t.checkpoint_every and state.step % t.checkpoint_every == 0):
                    state.elapsed_s = loop.before_s + trained_s
                    checkpoint = _save_checkpoint(setup, state, interrupted or "interval")
            if interrupted:
                return interrupted, checkpoint, metrics
    return None, checkpoint, metrics


def _optimizer_step(setup: Setup, batches: Iterator[Batch], window: int, step: int) -> tuple[dict[str, float], int]:
    """One optimizer step over ``window`` micro-batches: (each loss term and "total", averaged; clips here)."""
    acc, t, d = setup.acc, setup.spec.train, setup.spec.distill
    losses: dict[str, float] = {}
    clips = 0
    for j in range(window):
        batch = _as_heard(setup, next(batches), step, j)
        base = base_targets(setup.module, batch, acc.autocast) if d.needs_base else None
        # gradients travel between processes once per optimizer step, after its last micro-batch
        sync = contextlib.nullcontext() if j == window - 1 else acc.no_sync(setup.model)
        with sync:
            terms = setup.model(batch, base)
            loss = total_loss(terms, d)
            acc.backward(loss / window)
        for k, v in terms.items():
            losses[k] = losses.get(k, 0.0) + float(v.detach()) / window
        losses["total"] = losses.get("total", 0.0) + float(loss.detach()) / window
        clips += batch.size
    if t.max_grad_norm > 0:
        acc.clip_grad_norm_(list(setup.trainable.values()), t.max_grad_norm)
    setup.optimizer.step()
    setup.scheduler.step()
    setup.optimizer.zero_grad(set_to_none=True)
    return losses, clips


def _as_heard(setup: Setup, batch: Batch, step: int, j: int) -> Batch:
    """The batch on the device; with masks on, the student hears a masked clip (its targets stay the clean clip's)."""
    if setup.masks.active:
        acc, seed = setup.acc, setup.spec.train.seed
        batch.features = spec_augment(batch.features, batch.frame_lengths, setup.masks,
                                      mask_generator(seed, step, j, acc.process_index))
    return batch.to(setup.acc.device)


def _count_step(setup: Setup, state: TrainState, loop: LoopClock, losses: dict[str, float], samples: int) -> None:
    """Count the step just taken, record its losses (averaged over the processes), report progress."""
    state.step += 1
    state.samples += samples
    loop.samples += samples
    loop.steps += 1
    record = step_record(state.step, reduce_named(losses, setup.acc, "mean"))
    state.history.append(record)
    log_every, total = setup.spec.train.log_every, setup.steps.total_steps
    if state.step % log_every == 0 or state.step == total:
        report_progress(setup.rep, record, total, setup.epochs(state), setup.scheduler.get_last_lr()[0], loop)


def _validate(setup: Setup, state: TrainState) -> dict[str, Any]:
    """Validate now: the metrics, also appended to the state's evals and sent as an ``eval`` event."""
    t = setup.spec.train
    with setup.clock("eval"):
        sums = evaluate(setup.module, setup.ranks.share(setup.val_items), setup.val_collate, setup.acc, t.batch_size,
                        GenerationSettings(max_new_tokens=t.response_max_tokens), setup.student.eos_ids,
                        setup.plan.processor.pad_id)
        metrics = metrics_from_sums(sums, setup.plan.layer_map, setup.spec.distill)
    metrics = {"step": state.step, "epoch": setup.epochs(state), **metrics}
    state.evals.append(metrics)
    setup.rep.event("eval", **metrics)
    return metrics


def _save_checkpoint(setup: Setup, state: TrainState, reason: str) -> Path:
    path = save_checkpoint(setup.spec, state, setup.plan.layer_map, setup.module, list(setup.trainable),
                           setup.optimizer, setup.scheduler, setup.acc)
    setup.rep.event("checkpoint", step=state.step, epoch=setup.epochs(state), path=str(path), reason=reason)
    return path


# ------------------------------------------------------------------ the end
def _save_bundle(setup: Setup, state: TrainState, metrics: dict[str, Any]) -> Path:
    spec, plan, acc = setup.spec, setup.plan, setup.acc
    out = Path(spec.output)
    if acc.is_main_process:
        with setup.clock("save"):
            summary = training_summary(spec, state, setup.steps, plan, setup.data, setup.student.quantization, acc)
            try:
                save_bundle(out, setup.module.aura, plan.tokenizer, spec.model, base_id=spec.student,
                            base_config=plan.llm_config, teacher=spec.teacher, training=summary,
                            metrics=dict(metrics), include_base=spec.student if spec.train.bundle_base else None,
                            include_teacher=spec.teacher if spec.train.bundle_teacher else None,
                            card=model_card(spec, setup.data.report.n_train, state.step, metrics))
            except OSError as exc:  # a full disk, a folder that went read-only: keep the weights, say where
                raise _unsaved(setup, state, out, exc) from exc
    acc.wait_for_everyone()
    return out


def _unsaved(setup: Setup, state: TrainState, out: Path, exc: OSError) -> AuraError:
    """The error for a bundle that could not be written, after keeping the trained weights in a checkpoint."""
    problem = f"could not write the bundle {str(out)!r}: {describe(exc, out)}"
    if setup.acc.num_processes > 1:
        return AuraError(f"{problem}; with several processes the weights are kept only by the interval "
                         "checkpoints (train.checkpoint_every)")
    spec = setup.spec
    for folder in (spec.checkpoint_dir, default_cache_dir() / "rescued" / out.name):
        where = dataclasses.replace(spec, train=dataclasses.replace(spec.train, checkpoint_dir=str(folder)))
        try:
            saved = _save_checkpoint(dataclasses.replace(setup, spec=where), state, "unsaved")
        except AuraError:
            continue
        flag = "" if folder == spec.checkpoint_dir else f" --train.checkpoint_dir {folder}"
        return AuraError(f"{problem}; the trained weights are kept in {saved}: fix that and run the same command "
                         f"with --resume{flag} to write the bundle")
    return AuraError(f"{problem}; the trained weights could not be kept either")


def _finish(setup: Setup, state: TrainState, output: Path | None, metrics: dict[str, Any], interrupted: str | None,
            checkpoint: Path | None, samples: int, loop_s: float) -> TrainResult:
    data, timing = setup.data, setup.clock.timing
    samples_per_s, end_to_end = throughput(samples, loop_s, timing)
    result = TrainResult(
        output=output, steps=state.step, total_steps=setup.steps.total_steps, epoch=setup.epochs(state),
        losses=list(state.history), metrics=metrics, data=data.report.to_dict(), samples=samples,
        timing=dict(timing), samples_per_s=samples_per_s, end_to_end_samples_per_s=end_to_end,
        interrupted=interrupted, checkpoint=checkpoint, teacher_loaded=data.teacher.loaded,
        cache=dict(data.cache.stats), num_processes=setup.acc.num_processes,
    )
    if interrupted is None:
        setup.rep.event("finished", step=state.step, epoch=setup.epochs(state), loss=result.final_loss,
                        output=str(output), metrics=metrics, data=result.data, samples_per_s=samples_per_s,
                        elapsed_s=state.elapsed_s, interrupted=None)
    return result


def _stopped_early(signal_name: str, data: Data, clock: Stopwatch, acc) -> TrainResult:
    """A stop before the first step: no checkpoint (there is no training state yet), exit 130/143."""
    return TrainResult(output=None, steps=0, total_steps=0, epoch=0.0, losses=[], metrics={},
                       data=data.report.to_dict(), samples=0, timing=dict(clock.timing), samples_per_s=0.0,
                       end_to_end_samples_per_s=0.0, interrupted=signal_name, teacher_loaded=data.teacher.loaded,
                       cache=dict(data.cache.stats), num_processes=acc.num_processes)
