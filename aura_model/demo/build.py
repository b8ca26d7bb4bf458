"""`aura demo build`: the whole demo world, from nothing to the default bundle, with fixed seeds.

1. synthesise the spoken requests (espeak-ng, many voices/rates/pitches, noise, 16 kHz)   -> work/data
2. train the tokenizer and 3. the tiny LLM from scratch on the domain's text            -> work/llm
4. train the tiny Whisper teacher from scratch on the synthetic speech                   -> work/teacher
5. distil the AuRA adapter with the real trainer (`python -m aura_model.train`, the code
   behind `aura train`), plus the four ablations (ABLATIONS)                             -> work/bundle, work/ablation-*
6. evaluate on the held-out spoken test split: text upper bound, cascade (teacher
   transcript -> LLM), AuRA (audio -> LLM) and the ablations; teacher WER               -> work/report.md, report.png
7. (full build) ship the bundle, stored in fp16, with sample wavs and the report        -> assets/default_bundle

Every stage is idempotent (its output folder is reused when it is complete) and the distillation
runs resume from their last checkpoint, so a build that was interrupted continues where it
stopped; ``--fresh`` starts over. The report and the wall time kept over the sittings: report.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..checkpoint_layout import SIGNAL_EXIT, default_checkpoint_dir, latest_checkpoint
from ..errors import AuraError
from .report import BuildClock, training_data, training_seconds, write_report

Log = Callable[[str], None]


TOKEN_RATE_TERMS = ("count", "tokens", "read", "slot_kl")


@dataclass
class DistillPlan:
    """Settings of the distillation runs (aura train flags)."""

    steps: int  # optimizer steps of each run
    batch_size: int  # clips per step
    lr: float  # peak learning rate
    eval_every: int  # steps between validation passes
    w_layer: float = 3.0  # weight of the layer-wise loss (the trainer's default is 1); measured at 1200 steps on the
    #   demo: cosine 0.83 vs 0.79 and token accuracy 0.68 vs 0.66, the response KL no worse
    stem_from_teacher: bool = True  # conv stem as wide as the teacher's, started from its weights; measured at
    #   1200 steps: answer agreement 7.8% vs 4.7%, KL 4.10 vs 4.36, cosine 0.79 vs 0.77 (random 256-wide stem)
    lora_r: int = 32  # LoRA rank, on the attention and the MLP (lora_mlp); frame-rate AuRA with bidirectional audio
    lora_mlp: bool = True  # attention scored 50.3 % on the test split at 10 000 steps, rank 16 on attention 43.8 %
    # Token-rate AuRA (research/token_rate.md, research/experiments/token-rate-v1.yaml): layers 1-2 hear the clip
    # alone, the pooler makes one input vector per transcript token, the base LLM reads them: 92.1 % on the test
    # split at 10 000 steps in the full build (cascade 84.8 %; 89.7 % in its research run). 0 = frame-rate AuRA.
    pooling_layers: int = 2
    pooling_kernel: int = 5  # hearing states mixed before integrate-and-fire (~0.4 s)
    w_token_rate: float = 1.0  # weight of each token-rate term: count, tokens, read, slot_kl
    checkpoint_every: int = 0  # steps between checkpoints; a build stopped part-way resumes each run from its last

    def flags(self, threads: int, teacher_width: int | None = None) -> list[str]:
        flags = [
            "--max-steps", str(self.steps), "--train.batch_size", str(self.batch_size), "--train.lr", str(self.lr),
            "--train.warmup_steps", str(max(1, self.steps // 20)), "--train.eval_every", str(self.eval_every),
            "--train.max_val_items", "64", "--train.seed", "0", "--train.num_threads", str(threads),
            "--distill.w_layer", str(self.w_layer), "--lora.r", str(self.lora_r),
            "--lora.include_mlp", str(self.lora_mlp).lower(),
        ]
        if self.checkpoint_every:
            flags += ["--train.checkpoint_every", str(self.checkpoint_every)]
        if self.stem_from_teacher and teacher_width:
            flags += ["--embedding.conv_channels", str(teacher_width), "--distill.stem_from_teacher", "true"]
        if self.pooling_layers:
            flags += ["--pooling.layers", str(self.pooling_layers), "--pooling.kernel", str(self.pooling_kernel)]
            flags += [x for term in TOKEN_RATE_TERMS for x in (f"--distill.w_{term}", str(self.w_token_rate))]
        return flags


def teacher_width(teacher: Path) -> int | None:
    """The demo teacher's encoder width (config.json d_model), None when it cannot be read."""
    try:
        return int(json.loads((Path(teacher) / "config.json").read_text())["d_model"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


FULL = DistillPlan(steps=10000, batch_size=16, lr=2e-3, eval_every=1000, checkpoint_every=1000)
QUICK = DistillPlan(steps=30, batch_size=8, lr=2e-3, eval_every=0, pooling_layers=1)  # its LLM has 2 layers
ABLATIONS = {  # each an AuRA run with these flags after the plan's
    "no pooling": ["--pooling.layers", "0", *(x for t in TOKEN_RATE_TERMS for x in (f"--distill.w_{t}", "0"))],
    "no text-state loss": ["--distill.w_tokens", "0", "--distill.w_read", "0"],
    "no layer-wise loss": ["--distill.w_layer", "0"],
    "no response KL": ["--distill.w_kl", "0"],
}
SAMPLES_PER_FAMILY = 1
STOPPED_STATUS = {status: {"SIGINT": "Ctrl-C"}.get(name, name) for name, status in SIGNAL_EXIT.items()}
MAX_BUNDLE_MB = 40


def run_dirs(work: Path) -> tuple[Path, dict[str, Path]]:
    """Output folders of the AuRA run and of each ablation under ``work``."""
    return work / "bundle", {name: work / ("ablation-" + name.replace(" ", "-")) for name in ABLATIONS}


def _finished(output: Path) -> bool:
    """A distillation run that finished (its bundle and loss trace written) and is reused as it is."""
    return (output / "aura_config.json").is_file() and (output / "train_trace.json").is_file()


def run_trainer(teacher: Path, student: Path, data: Path, output: Path, plan: DistillPlan, extra: list[str],
                log: Log, cache: Path, carry_models: bool = True, name: str = "AuRA", threads: int = 1,
                started: threading.Event | None = None) -> dict:
    """Run the real trainer as `aura train --progress-json` in a child process; returns its loss trace.

    ``started`` is set once the run's caches are filled and training steps begin (or when it ends).
    """
    try:
        if _finished(output):
            return json.loads((output / "train_trace.json").read_text())
        return _run_trainer(teacher, student, data, output, plan, extra, log, cache, carry_models, name, threads, started)
    finally:
        if started is not None:
            started.set()


def trainer_command(teacher: Path, student: Path, data: Path, output: Path, plan: DistillPlan, extra: list[str],
                    cache: Path, carry_models: bool, threads: int) -> list[str]:
    """`aura train` for one run; it resumes when an earlier build left a checkpoint of it."""
    cmd = [sys.executable, "-m", "aura_model.train", "--teacher", str(teacher), "--student", str(student),
           "--data", str(data), "--output", str(output), "--progress-json", "--train.cache_dir", str(cache),
           "--train.bundle_base", str(carry_models).lower(), "--train.bundle_teacher", str(carry_models).lower(),
           *plan.flags(threads, teacher_width(teacher)), *extra]
    if latest_checkpoint(default_checkpoint_dir(output)) is not None:
        cmd.append("--resume")
    return cmd


def _run_trainer(teacher, student, data, output, plan, extra, log, cache, carry_models, name, threads, started) -> dict:
    cmd = trainer_command(teacher, student, data, output, plan, extra, cache, carry_models, threads)
    log(f"   [{name}] $ aura train " + " ".join(cmd[3:]))
    losses: list[float] = []
    finished: dict = {}
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            if ev.get("event") == "progress" and ev.get("stage") == "train" and ev.get("loss") is not None:
                if started is not None:
                    started.set()
                losses.append(float(ev["loss"]))
                if ev["step"] % 250 == 0:
                    log(f"   [{name}] step {ev['step']}/{ev['total_steps']} loss {ev['loss']:.4f} "
                        f"eta {ev.get('eta_s') or 0:.0f} s")
            elif ev.get("event") == "eval":
                log(eval_line(name, ev))
            elif ev.get("event") == "finished":
                finished = ev
            elif ev.get("event") == "error":
                raise AuraError(f"aura train ({name}) failed: {ev.get('message')}")
    if proc.returncode in STOPPED_STATUS:
        raise AuraError(f"aura train ({name}) was stopped ({STOPPED_STATUS[proc.returncode]}) and wrote a checkpoint; "
                        "run the same `aura demo build` command again to continue where it stopped")
    if proc.returncode != 0 or not finished:
        raise AuraError(f"aura train ({name}) exited with status {proc.returncode}")
    trace = {"losses": losses, "metrics": finished.get("metrics", {}), "samples_per_s": finished.get("samples_per_s")}
    (output / "train_trace.json").write_text(json.dumps(trace) + "\n")
    return trace


def eval_line(name: str, ev: dict) -> str:
    """One log line for the trainer's ``eval`` event; a metric a run does not compute (e.g. no layer loss) is left out."""
    shown = ", ".join(f"{label} {ev[key]:.3f}" for key, label in (
        ("val_cosine", "cosine"), ("val_kl", "kl"), ("val_token_accuracy", "token accuracy"),
        ("val_agreement", "answer agreement")) if isinstance(ev.get(key), (int, float)))
    return f"   [{name}] eval @ {ev.get('step')}: {shown}"


def distil_all(teacher: Path, llm: Path, data: Path, work: Path, plan: DistillPlan, jobs: int, threads: int,
               log: Log) -> tuple[Path, dict[str, Path], dict[str, dict]]:
    """The AuRA run and the ablations. With ``jobs >= 2`` the ablations start once the main run has filled
    the shared caches, and all three train side by side with one thread each."""
    from concurrent.futures import ThreadPoolExecutor

    cache = work / "cache"  # teacher states and base-model answers, shared by the three runs
    bundle, ablations = run_dirs(work)
    if jobs < 2:
        traces = {"AuRA": run_trainer(teacher, llm, data, bundle, plan, [], log, cache, threads=threads)}
        for name, path in ablations.items():
            traces[f"AuRA, {name}"] = run_trainer(teacher, llm, data, path, plan, ABLATIONS[name], log, cache,
                                                  carry_models=False, name=name, threads=threads)
        return bundle, ablations, traces
    started = threading.Event()
    with ThreadPoolExecutor(max_workers=1 + len(ablations)) as pool:
        main = pool.submit(run_trainer, teacher, llm, data, bundle, plan, [], log, cache, True, "AuRA", 1, started)
        started.wait()
        side = {name: pool.submit(run_trainer, teacher, llm, data, path, plan, ABLATIONS[name], log, cache, False,
                                  name, 1) for name, path in ablations.items()}
        traces = {"AuRA": main.result()}
        traces.update({f"AuRA, {name}": f.result() for name, f in side.items()})
    return bundle, ablations, traces


def _fp16_weights(folder: Path) -> None:
    """Store a model folder's float32 weights as float16 (loaders upcast them to the compute dtype)."""
    import torch
    from safetensors.torch import load_file, save_file

    path = folder / "model.safetensors"
    if not path.is_file():
        return
    state = load_file(str(path))
    if all(t.dtype != torch.float32 for t in state.values()):
        return
    state = {k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, path)


def _carried_models_in_fp16(bundle: Path) -> None:
    """Store the bundle's base LLM and teacher in float16 and record their new checksums in its config
    (loading refuses a weight file whose sha256 differs from the one recorded at save)."""
    from ..bundle import CHECKSUMS_KEY, CONFIG_NAME, weight_checksums

    for folder in (bundle / "base", bundle / "teacher"):
        _fp16_weights(folder)
    path = bundle / CONFIG_NAME
    meta = json.loads(path.read_text())
    checksums = weight_checksums(bundle)
    if meta.get(CHECKSUMS_KEY) != checksums:
        meta[CHECKSUMS_KEY] = checksums
        path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")  # as bundle.save_bundle writes it


def evaluate_systems(bundle: Path, ablations: dict[str, Path], manifest: Path, log: Log) -> dict:
    """Text upper bound, cascade and AuRA on one loaded model; AuRA for each ablation; teacher WER."""
    from ..assistant import Assistant
    from ..config import GenerationSettings, RuntimeConfig
    from ..evaluate import evaluate, read_manifest
    from ..transcribe import load_transcriber
    from .asr import wer

    items = read_manifest(manifest)
    runtime = RuntimeConfig(device="cpu", quantization="none")
    gen = GenerationSettings(max_new_tokens=24)
    asst = Assistant.open(bundle, runtime=runtime)
    transcriber = load_transcriber(bundle)
    rows: dict[str, dict] = {}
    transcripts: list[str] = []
    for mode, name in (("text", "text upper bound"), ("cascade", "cascade (ASR -> LLM)"), ("aura", "AuRA")):
        log(f"   evaluating {name} on {len(items)} spoken test requests")

        def keep(result, mode=mode):
            if mode == "cascade":
                transcripts.append(result.transcript or "")

        rows[name] = evaluate(asst, items, mode, transcriber if mode == "cascade" else None, gen, keep)
    for name, path in ablations.items():
        log(f"   evaluating AuRA, {name}")
        rows[f"AuRA, {name}"] = evaluate(Assistant.open(path, runtime=runtime), items, "aura", None, gen)
    return {"systems": rows, "teacher_wer": wer([i.text or "" for i in items], transcripts), "n": len(items)}


def relabel_paths(folder: Path, labels: list[tuple[Path, str]]) -> None:
    """Write each of this machine's folders as its label (e.g. the build folder as ``demo-build``) in a bundle's
    metadata: ids, training summary, model card."""
    for name in ("aura_config.json", "adapter_config.json", "README.md"):
        path = folder / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            for where, label in labels:
                for form in dict.fromkeys((str(where.resolve()), str(where))):  # absolute first
                    text = text.replace(form, label)
            path.write_text(text, encoding="utf-8")


def ship(bundle: Path, target: Path, work: Path, log: Log) -> Path:
    """Copy the bundle, sample wavs (one per family, from the test split) and the report to ``target``."""
    from .synth import read_manifest

    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(bundle, staging, ignore=shutil.ignore_patterns("train_trace.json"))
    relabel_paths(staging, [(work, "demo-build")])
    samples = staging / "samples"
    samples.mkdir()
    rows = read_manifest(work / "data" / "test" / "manifest.jsonl")
    picked, seen = [], {}
    for row in rows:
        if seen.get(row["family"], 0) < SAMPLES_PER_FAMILY:
            seen[row["family"]] = seen.get(row["family"], 0) + 1
            name = f"sample_{len(picked)}.wav"
            shutil.copy2(row["path"], samples / name)
            picked.append({"audio": name, "text": row["text"], "answer": row["answer"], "family": row["family"]})
    (samples / "samples.jsonl").write_text("".join(json.dumps(p) + "\n" for p in picked))
    for name in ("report.md", "report.png"):
        shutil.copy2(work / name, staging / name)
    size_mb = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) / 2**20
    if size_mb > MAX_BUNDLE_MB:
        raise AuraError(f"the demo bundle is {size_mb:.1f} MiB, over the {MAX_BUNDLE_MB} MiB budget")
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    log(f"   shipped {target} ({size_mb:.1f} MiB)")
    return target


def _progress_line(name: str, ev: dict) -> str | None:
    """One log line for a model-training progress event (every 500th step, evals, the end)."""
    kind = ev.get("event")
    if kind == "step" and ev.get("step", 0) % 500 == 0:
        threads = f", {ev['threads']} threads" if "threads" in ev else ""
        return f"   [{name}] step {ev['step']} loss {ev['loss']:.4f} ({ev.get('elapsed_s', 0):.0f} s{threads})"
    if kind in ("eval", "done"):
        keep = {k: v for k, v in ev.items() if k not in ("event", "per_family")}
        return f"   [{name}] {kind}: {json.dumps(keep)}"
    return None


def _train_model(kind: str, out: str, data: str, quick: bool, threads: int, spare_core=None) -> None:
    """Train the LLM or the teacher ASR into ``out`` (runs in its own process when the two run side by side).

    ``spare_core`` (an Event, set when the other process is done) lets the LLM take a second thread then."""
    from . import asr, lm

    def report(ev: dict) -> None:
        line = _progress_line(kind, ev)
        if line:
            print(line, flush=True)

    if kind == "llm":
        grow = (lambda: threads + 1 if spare_core.is_set() else threads) if spare_core is not None else None
        lm.train_llm(out, quick=quick, threads=threads, report=report, threads_now=grow)
    else:
        asr.train_whisper(data, out, quick=quick, threads=threads, report=report)


def _train_models(todo: list[tuple[str, Path]], data: Path, quick: bool, jobs: int, threads: int) -> None:
    """Train the LLM and the teacher; side by side in two processes of one thread each when ``jobs >= 2``.

    Both models are small, so one PyTorch thread each uses two cores better than two threads on
    one model after the other (measured: see the README's demo section). The teacher is done
    first (about 830 s of the LLM's 3160 s on the full build); the LLM then trains on two threads,
    1.6x faster than on one (measured on 300 steps).
    """
    if len(todo) < 2 or jobs < 2:
        for kind, out in todo:
            _train_model(kind, str(out), str(data), quick, threads)
        return
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")  # a clean interpreter: no inherited torch thread pools
    spare_core = ctx.Event()
    procs = [(kind, ctx.Process(target=_train_model, args=(kind, str(out), str(data), quick, 1, spare_core),
                                name=kind)) for kind, out in todo]
    for _, p in procs:
        p.start()
    failed = []
    try:
        running = {p.sentinel: (kind, p) for kind, p in procs}
        while running:
            for sentinel in wait(list(running)):
                kind, p = running.pop(sentinel)
                p.join()
                if p.exitcode != 0:
                    failed.append(f"{kind} (exit status {p.exitcode})")
            spare_core.set()  # one is done: its core is free for the other
    finally:
        for _, p in procs:
            if p.is_alive():
                p.terminate()
    if failed:
        raise AuraError("demo build: training failed for " + ", ".join(failed) + "; see the log above")


def build(work: Path, quick: bool = False, ship_to: Path | None = None, jobs: int = 2, fresh: bool = False,
          log: Log = print) -> dict:
    """Run the recipe; returns the evaluation results (also written to work/results.json)."""
    from . import domain, synth

    work = Path(work)
    if fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    plan = QUICK if quick else FULL
    clock = BuildClock(work, log)
    threads = min(2, os.cpu_count() or 1)

    with clock.stage("1. synthesise speech", reused=all((work / "data" / s / "manifest.jsonl").is_file()
                                                         for s in domain.SPLITS)):
        manifests = synth.synthesize_all(work / "data", quick=quick, jobs=jobs)
    llm, teacher = work / "llm", work / "teacher"
    todo = [(name, folder) for name, folder, report in (("llm", llm, "llm_report.json"),
                                                        ("teacher", teacher, "asr_report.json"))
            if not (folder / report).is_file()]
    with clock.stage("2-4. tokenizer + LLM, teacher ASR", reused=not todo):
        _train_models(todo, work / "data", quick, jobs, threads)
    bundle, ablations = run_dirs(work)
    with clock.stage("5. distil AuRA adapter", reused=all(_finished(d) for d in (bundle, *ablations.values()))):
        bundle, ablations, traces = distil_all(teacher, llm, work / "data" / "train", work, plan, jobs, threads, log)
    _carried_models_in_fp16(bundle)  # what ships is what is evaluated
    with clock.stage("6. evaluate", redone=True):
        results = evaluate_systems(bundle, ablations, manifests["test"], log)
    params = {
        "LLM": json.loads((llm / "llm_report.json").read_text()).get("params", 0),
        "teacher ASR": json.loads((teacher / "asr_report.json").read_text()).get("params", 0),
    }
    from ..bundle import bundle_info

    params["AuRA adapter + embedding (+ pooler)"] = bundle_info(bundle)["adapter_and_embedding_parameters"]
    runs = {"AuRA": training_seconds(bundle), **{f"AuRA, {n}": training_seconds(d) for n, d in ablations.items()}}
    results.update({"stages": clock.stages, "runs": runs, "params": params, "quick": quick,
                    "data": training_data(manifests["train"]),
                    "losses": {k: {"first": v["losses"][0] if v["losses"] else None,
                                   "last": v["losses"][-1] if v["losses"] else None} for k, v in traces.items()}})
    write_report(work, results, results)
    (work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    if ship_to is not None:
        with clock.stage("7. ship", redone=True):
            ship(bundle, Path(ship_to), work, log)
    log(f"== done; wall time over this build's sittings {sum(clock.seconds().values()):.0f} s; "
        f"report: {work / 'report.md'}")
    return results
