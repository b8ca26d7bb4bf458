"""Replay one experiment of research/NOTES.md with the real trainer, and compare it with the figure the notes report.

    python research/replay.py research/experiments/shipped.yaml [--work DIR] [--steps N] [--dry-run]

1. the demo build's spoken data (``aura_model.demo.synth.synthesize_all``), unless DATA already holds all
   three splits                                                                              -> --data (.cache/demo-build/data)
2. fp32 copies of the shipped teacher and LLM (``assets/default_bundle/{teacher,base}``, stored as fp16):
   the models every experiment distils from and into                                         -> WORK/models
3. when the experiment asks for them, the left-out train-side requests (research/extra_requests.py)
                                                                                             -> WORK/extra-N
4. the trainer, ``python -m aura_model.train --config WORK/runs/NAME/trainer.yaml ...`` (its ``trainer:``
   section, with the paths and a cache folder shared by every replay)                        -> WORK/runs/NAME/bundle
5. ``aura eval --mode aura`` on the split the figure was measured on, as the demo build scores (CPU, no
   quantization, 24 new tokens); one comparison line                                        -> research/results/NAME.json

Every stage that is already done is skipped (a finished bundle is scored again, not retrained: delete
WORK/runs/NAME to train it again; a run stopped part-way resumes from its last checkpoint); ``--dry-run``
prints the commands without running anything. ``--steps N`` shortens a run (warm-up N // 20, as the demo build
does); its result is then not comparable with the reported one and is written as NAME-stepsN.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SYNTH = "import sys; from aura_model.demo.synth import synthesize_all; synthesize_all(sys.argv[1], jobs=int(sys.argv[2]))"
STANDARD_ERROR = 2.2  # points, on the 495 test clips (README); about 2.6 on the 320 valid clips


def load_experiment(path: str | Path) -> dict:
    exp = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    for key in ("name", "trainer", "reported"):
        if key not in exp:
            raise SystemExit(f"replay: {path}: no {key!r} in the experiment file")
    return exp


def trainer_settings(exp: dict, steps: int | None = None) -> dict:
    """The experiment's trainer config; ``steps`` overrides its length (and the warm-up, by the demo build's rule)."""
    settings = json.loads(json.dumps(exp["trainer"]))  # a deep copy
    if steps:
        settings["train"].update(max_steps=steps, warmup_steps=max(1, steps // 20))
    return settings


def plan(exp: dict, work: Path, data: Path, steps: int | None = None, jobs: int = 2) -> dict:
    """Paths and commands of one replay."""
    from aura_model.checkpoint_layout import default_checkpoint_dir, latest_checkpoint

    py = sys.executable
    name = exp["name"] + (f"-steps{steps}" if steps else "")
    run = work / "runs" / name
    extra = (exp.get("data") or {}).get("extra_arithmetic")
    train_data = data / "train" if extra is None else work / f"extra-{extra}"
    split = exp["reported"].get("split", "test")
    models = work / "models"
    p = {
        "name": name, "run": run, "data": data, "train_data": train_data, "extra": extra, "split": split,
        "teacher": models / "teacher", "student": models / "student", "bundle": run / "bundle",
        "trainer_yaml": run / "trainer.yaml", "eval_out": run / f"eval-{split}.jsonl",
        "result": ROOT / "research" / "results" / f"{name}.json",
    }
    p["synth"] = [py, "-c", SYNTH, str(data), str(jobs)]
    p["extra_cmd"] = None if extra is None else [
        py, str(ROOT / "research" / "extra_requests.py"), str(train_data), "--train", str(data / "train"),
        "--arithmetic", str(extra), "--jobs", str(jobs)]
    p["train_cmd"] = [py, "-m", "aura_model.train", "--config", str(p["trainer_yaml"]), "--teacher", str(p["teacher"]),
                      "--student", str(p["student"]), "--data", str(train_data), "--output", str(p["bundle"]),
                      "--train.cache_dir", str(work / "cache")]
    if extra is not None:  # the extra folder links the listed train split in as orig/, a link leading outside it
        p["train_cmd"] += ["--dataset.follow_links_outside", "true"]
    if latest_checkpoint(default_checkpoint_dir(p["bundle"])) is not None:  # an interrupted replay goes on
        p["train_cmd"] += ["--resume"]
    p["eval_cmd"] = [py, "-m", "app.cli", "eval", "--bundle", str(p["bundle"]),
                     "--manifest", str(data / split / "manifest.jsonl"), "--mode", "aura",
                     "--max-new-tokens", "24", "--device", "cpu", "--quantization", "none"]
    return p


def fp32_copy(src: Path, dst: Path) -> None:
    """Copy a model folder, its safetensors weights as float32 (the shipped bundle stores them as float16)."""
    import torch
    from safetensors.torch import load_file, save_file

    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    state = load_file(str(src / "model.safetensors"))
    state = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


def step(title: str, done: bool, cmd: list[str] | None, dry: bool) -> None:
    print(f"# {title}" + (" (done: skipped)" if done else ""), flush=True)
    if cmd is not None:
        print(shlex.join(cmd), flush=True)
    if cmd is not None and not done and not dry:
        subprocess.run(cmd, check=True, cwd=ROOT)


def compare(exp: dict, p: dict, summary: dict) -> dict:
    """The replay's figures next to the reported ones; prints one line."""
    reported = exp["reported"]
    got = 100 * summary["accuracy"]
    fams = {f: round(100 * v) for f, v in (summary.get("accuracy_by_family") or {}).items()}
    line = f"{p['name']}: {p['split']} {got:.1f} %"
    if reported.get("accuracy") is not None:
        line += (f" (reported {reported['accuracy']} % on {reported['measured']}: {got - reported['accuracy']:+.1f} "
                 f"points; one standard error is about {STANDARD_ERROR})")
    line += " | " + " ".join(f"{f} {v}" + (f" ({reported['by_family'][f]})" if f in reported.get("by_family", {}) else "")
                             for f, v in fams.items())
    val = validation(p["bundle"], (reported.get("val") or {}).get("step"))
    for key, want in (reported.get("val") or {}).items():
        if key != "step" and key in val:
            line += f" | {key} {val[key]:.3f} ({want} at step {reported['val']['step']})"
    if reported.get("llm") != "shipped":
        line += f" | measured on the {reported.get('llm')} LLM: not like for like"
    print(line, flush=True)
    return {"experiment": exp["name"], "run": p["name"], "split": p["split"], "accuracy": got,
            "by_family": fams, "median_first_token_s": summary.get("median_first_token_s"), "validation": val,
            "reported": reported, "bundle": str(p["bundle"]), "line": line}


def validation(bundle: Path, at_step: int | None) -> dict:
    """The trainer's validation metrics stored in the bundle: the pass at ``at_step`` if there was one, else the last."""
    meta = json.loads((bundle / "aura_config.json").read_text())
    for ev in meta.get("training", {}).get("evals", []):
        if ev.get("step") == at_step:
            return ev
    return meta.get("metrics", {})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiment", help="research/experiments/<name>.yaml")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "research", help="models, extra data, runs, cache")
    ap.add_argument("--data", type=Path, default=ROOT / ".cache" / "demo-build" / "data",
                    help="the demo build's data folder (train/valid/test)")
    ap.add_argument("--steps", type=int, help="a shorter (or longer) run than the experiment's; not comparable")
    ap.add_argument("--jobs", type=int, default=2, help="espeak-ng processes at once")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    args = ap.parse_args(argv)
    exp = load_experiment(args.experiment)
    work, data = args.work.resolve(), args.data.resolve()
    p = plan(exp, work, data, args.steps, args.jobs)
    dry = args.dry_run

    have_data = all((data / s / "manifest.jsonl").is_file() for s in ("train", "valid", "test"))
    step("the demo build's spoken data", have_data, p["synth"], dry)
    bundle = ROOT / "assets" / "default_bundle"
    for role, src in (("teacher", bundle / "teacher"), ("student", bundle / "base")):
        done = (p[role] / "model.safetensors").is_file()
        step(f"fp32 copy of {src.relative_to(ROOT)} -> {p[role]}", done, None, dry)
        if not done and not dry:
            fp32_copy(src, p[role])
    if p["extra_cmd"]:
        step(f"{p['extra'] or 'all'} left-out sums and the other left-out requests",
             (p["train_data"] / "extra" / "metadata.jsonl").is_file(), p["extra_cmd"], dry)
    settings = trainer_settings(exp, args.steps)
    print(f"# trainer settings -> {p['trainer_yaml']}\n" + yaml.safe_dump(settings, sort_keys=False).rstrip(), flush=True)
    trained = (p["bundle"] / "aura_config.json").is_file()
    if not trained and not dry:
        p["run"].mkdir(parents=True, exist_ok=True)
        p["trainer_yaml"].write_text(yaml.safe_dump(settings, sort_keys=False))
    step(f"distil {p['name']} ({settings['train']['max_steps']} steps)", trained, p["train_cmd"], dry)
    print(f"# score it on the {p['split']} split\n" + shlex.join(p["eval_cmd"]) + f" > {shlex.quote(str(p['eval_out']))}",
          flush=True)
    if dry:
        return 0
    with open(p["eval_out"], "w", encoding="utf-8") as out:
        subprocess.run(p["eval_cmd"], check=True, cwd=ROOT, stdout=out)
    summary = json.loads(p["eval_out"].read_text().splitlines()[-1])
    result = compare(exp, p, summary)
    p["result"].parent.mkdir(parents=True, exist_ok=True)
    p["result"].write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {p['result']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
