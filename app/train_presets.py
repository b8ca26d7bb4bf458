"""The Train tab's settings without Qt: presets, the Custom fields, and the plan of a run.

A run is the trainer (``aura train``, ``python -m aura_model.train``) with flags; the tab only
chooses them:

* **Quick demo**: the demo world's own recipe (``aura_model.demo.build.DistillPlan``) for a few
  hundred steps, teacher and LLM from the bundled default bundle, a few hundred requests freshly
  spoken with espeak-ng (``aura_model.demo.synth``; the bundled sample clips where espeak-ng is
  missing). A few minutes on a CPU.
* **Standard**: the trainer's defaults.
* **Custom**: the fields of ``CUSTOM_FIELDS``, with the trainer's own defaults and help text (read
  from its config dataclasses by :func:`trainer_fields`), plus any extra ``--section.field`` flags.

Every preset gets the app's defaults (``APP_DEFAULTS``: a checkpoint every 50 steps so that a
crash can be resumed, a validation pass every 100 so that metrics arrive during the run, one CPU
core left to the window), and the run's checkpoints go to the library's ``.runs/<name>/``.
Functions that import the trainer (:func:`trainer_fields`, :func:`check_plan`) or speak
(:func:`quick_demo_data`) run in a background thread.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aura_model.checkpoint_layout import STATE, list_checkpoints
from aura_model.demo.build import DistillPlan, teacher_width
from aura_model.errors import AuraError

from app.library import output_folder, run_folder

QUICK, STANDARD, CUSTOM = "quick", "standard", "custom"
PRESETS = {QUICK: "Quick demo", STANDARD: "Standard", CUSTOM: "Custom"}
PRESET_HELP = {
    QUICK: "Trains a fresh adapter for the bundled demo world: its teacher and LLM, a few hundred requests "
           "freshly spoken with espeak-ng. A few minutes on a CPU: see training work end to end.",
    STANDARD: "The trainer's defaults (3 epochs, LoRA rank 16 on the attention, learning rate 2e-4; 4-bit base "
              "LLM on a CUDA GPU). For your own teacher, LLM and clips.",
    CUSTOM: "Choose the steps, batch size, learning rate, LoRA, layer map, loss weights, quantization and device. "
            "Hover a field for the trainer's own description.",
}
QUICK_DEMO = DistillPlan(steps=300, batch_size=8, lr=2e-3, eval_every=100)  # the demo recipe, shortened
# Where the app departs from the trainer's default, and why (shown in the fields' help).
APP_DEFAULTS = {
    "train.checkpoint_every": "50",  # a crashed or killed run can be resumed from its last checkpoint
    "train.eval_every": "100",  # validation metrics arrive during the run, not only at its end
}
# The Custom fields, in the order the form shows them: (flag without "--", label).
CUSTOM_FIELDS: tuple[tuple[str, str], ...] = (
    ("train.max_steps", "Steps"),
    ("train.epochs", "Epochs"),
    ("train.batch_size", "Batch size"),
    ("train.lr", "Learning rate"),
    ("lora.r", "LoRA rank"),
    ("lora.target_modules", "LoRA target modules"),
    ("lora.include_mlp", "LoRA on the MLP too"),
    ("distill.layer_map", "Layer map"),
    ("distill.w_layer", "Layer-wise loss weight"),
    ("distill.w_kl", "Response KL weight"),
    ("distill.w_ce", "Cross-entropy weight"),
    ("train.quantization", "Quantization"),
    ("train.device", "Device"),
    ("train.eval_every", "Validate every (steps)"),
    ("train.checkpoint_every", "Checkpoint every (steps)"),
)
_PATH_FLAGS = ("--teacher", "--student", "--data", "--output", "--config", "--resume", "--progress-json",
               "--stop-file", "--train.checkpoint_dir")


def app_threads() -> int:
    """Torch threads of a run: all cores but one, which stays with the window."""
    return max(1, (os.cpu_count() or 2) - 1)


# ---------------------------------------------------------------------- the Custom fields
@dataclass(frozen=True)
class OptionField:
    """One Custom setting, described by the trainer's own config dataclass."""

    key: str  # "section.field": the trainer flag without "--"
    label: str  # what the form calls it
    kind: str  # "int" | "float" | "bool" | "choice" | "text"
    default: str  # the trainer's default, written as the flag's text ("" = None)
    help: str  # the trainer's comment on the field (its --help text)
    choices: tuple[str, ...] = ()  # for "choice"
    initial: str = ""  # what the form starts with: the app's default (APP_DEFAULTS) or the trainer's


def _flag_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    return str(value)


def _kind(tp: Any, choices: tuple[str, ...]) -> str:
    if choices:
        return "choice"
    return {bool: "bool", int: "int", float: "float"}.get(tp, "text")


def trainer_fields() -> list[OptionField]:
    """The Custom fields with the trainer's defaults, types and help (imports the trainer: not on the UI thread)."""
    from aura_model.train import config as tc

    choices = {"train.quantization": tc.TRAIN_QUANTIZATION, "train.device": tc.TRAIN_DEVICES}
    out = []
    for key, label in CUSTOM_FIELDS:
        section, name = key.split(".")
        cls = tc.SECTIONS[section]
        f = {f.name: f for f in dataclasses.fields(cls)}[name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = tc.field_comments(cls).get(name, "")
        if key in APP_DEFAULTS:
            help_text += f" (trainer default {_flag_text(default)}; the app uses {APP_DEFAULTS[key]} so that "
            help_text += "a crash can be resumed)" if name == "checkpoint_every" else "metrics arrive during the run)"
        kind = _kind(tc.field_types(cls)[name], tuple(choices.get(key, ())))
        out.append(OptionField(key, label, kind, _flag_text(default), help_text, tuple(choices.get(key, ())),
                               APP_DEFAULTS.get(key, _flag_text(default))))
    return out


def parse_extra_flags(text: str) -> dict[str, str]:
    """``--section.field VALUE`` / ``--section.field=VALUE`` pairs typed by the user -> {"section.field": text}."""
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise AuraError(f"extra flags: {exc}") from exc
    out: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        flag, eq, value = word.partition("=")
        if not flag.startswith("--") or "." not in flag or flag in _PATH_FLAGS:
            raise AuraError(f"extra flags: {word!r} is not a --section.field setting (e.g. --train.seed 3); the "
                            "teacher, student, data and output come from the fields above")
        if not eq:
            if i + 1 >= len(words):
                raise AuraError(f"extra flags: {flag} needs a value")
            i += 1
            value = words[i]
        out[flag[2:]] = value
        i += 1
    return out


# ---------------------------------------------------------------------- the plan of a run
@dataclass(frozen=True)
class RunPlan:
    """One training run: the trainer's flags and where it writes (the bundle, its run folder)."""

    name: str  # the adapter's name in the library
    teacher: str
    student: str
    data: str
    output: str  # <library>/<name>: the bundle
    run_dir: str  # <library>/.runs/<name>: run.json and the checkpoints
    preset: str  # QUICK | STANDARD | CUSTOM
    overrides: dict[str, str] = field(default_factory=dict)  # "section.field" -> flag text

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.run_dir) / "checkpoints"

    @property
    def stop_file(self) -> Path:
        """Created to pause the trainer where there are no signals (Windows): `aura train --stop-file`."""
        return Path(self.run_dir) / "stop-requested"

    def flags(self) -> list[str]:
        """The `aura train` arguments (without --resume, --progress-json and --stop-file)."""
        out = ["--teacher", self.teacher, "--student", self.student, "--data", self.data, "--output", self.output]
        return out + [f"--{k}={v}" for k, v in self.overrides.items()]

    def overrides_and_paths(self) -> tuple[dict[str, str], dict[str, str]]:
        return dict(self.overrides), {"teacher": self.teacher, "student": self.student, "data": self.data,
                                      "output": self.output}

    def save(self) -> Path:
        """Write run.json (the plan, and the command that runs it) into the run folder."""
        path = Path(self.run_dir) / "run.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        record = dict(dataclasses.asdict(self), command=["aura", "train", *self.flags()])
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return path


def _pairs(flags: list[str]) -> dict[str, str]:
    """["--max-steps", "300", "--train.lr", "0.002", ...] (DistillPlan.flags) -> {"train.max_steps": "300", ...}."""
    out = {}
    for flag, value in zip(flags[::2], flags[1::2]):
        out["train.max_steps" if flag == "--max-steps" else flag[2:]] = value
    return out


def quick_demo_models(default_bundle: Path | None) -> tuple[str, str]:
    """(teacher, student) of the Quick demo: the bundled demo bundle's own teacher/ and base/."""
    if default_bundle is None or not (default_bundle / "teacher").is_dir() or not (default_bundle / "base").is_dir():
        raise AuraError("the Quick demo needs the bundled demo bundle with its teacher and base LLM, and this "
                        "installation has none")
    return str(default_bundle / "teacher"), str(default_bundle / "base")


def preset_overrides(preset: str, teacher: str, custom: dict[str, str]) -> dict[str, str]:
    """The flags a preset sets on top of the trainer's defaults (app defaults included)."""
    out = {"train.num_threads": str(app_threads()), **APP_DEFAULTS}
    if preset == QUICK:
        demo = _pairs(QUICK_DEMO.flags(app_threads(), teacher_width(Path(teacher))))
        out.update(demo)
        out.update({"train.checkpoint_every": "50", "train.bundle_base": "true"})  # a self-contained adapter
    elif preset == CUSTOM:
        out.update({k: v for k, v in custom.items() if v != ""})
    elif preset != STANDARD:
        raise AuraError(f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    return out


def plan_run(library: Path, name: str, teacher: str, student: str, data: str, preset: str,
             custom: dict[str, str] | None = None, extra: str = "", default_bundle: Path | None = None) -> RunPlan:
    """The plan of a run named ``name``; refuses a name whose library folder is not an adapter bundle.
    The Quick demo takes its teacher and student from ``default_bundle`` (the given ones are ignored)."""
    if preset == QUICK:
        teacher, student = quick_demo_models(default_bundle)
    output, _replaces = output_folder(library, name)
    runs = run_folder(library, name)
    overrides = preset_overrides(preset, teacher, custom or {})
    overrides.update(parse_extra_flags(extra))
    overrides["train.checkpoint_dir"] = str(runs / "checkpoints")
    for what, value in (("teacher", teacher), ("student LLM", student), ("data", data)):
        if not value.strip():
            raise AuraError(f"choose the {what} first")
    return RunPlan(output.name, teacher.strip(), student.strip(), data.strip(), str(output), str(runs), preset,
                   overrides)


def check_plan(plan: RunPlan) -> None:
    """The trainer's own settings check (``build_spec``), so a bad value is named before the process starts."""
    from aura_model.train.config import build_spec

    overrides, paths = plan.overrides_and_paths()
    build_spec(None, overrides, paths)


def prepare_run(plan: RunPlan, cache_root: Path, default_bundle: Path | None) -> tuple[RunPlan, str]:
    """Before the trainer starts: its settings check, and for the Quick demo its clips; writes run.json.
    Returns the plan (with the Quick demo's data folder) and a note on the data."""
    check_plan(plan)
    note = ""
    if plan.preset == QUICK:
        data, note = quick_demo_data(cache_root, default_bundle)
        plan = dataclasses.replace(plan, data=str(data))
    plan.save()
    return plan, note


def load_run(run_dir: Path) -> RunPlan | None:
    """The plan in a run folder's run.json, None when there is none or it does not read."""
    try:
        record = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
        known = {f.name for f in dataclasses.fields(RunPlan)}
        return RunPlan(**{k: v for k, v in record.items() if k in known})
    except (OSError, ValueError, TypeError):
        return None


def checkpoint_steps(plan: RunPlan) -> list[int]:
    """Steps of the run's complete checkpoints, oldest first."""
    return [step for step, _ in list_checkpoints(plan.checkpoint_dir)]


def unfinished_run(library: Path) -> tuple[RunPlan, int] | None:
    """The newest run in the library's .runs/ that stopped at a checkpoint after its bundle was last written
    (a run paused when the window closed): (its plan, the checkpoint's step)."""
    runs = Path(library) / ".runs"
    found = []
    for record in runs.glob("*/run.json") if runs.is_dir() else []:
        plan = load_run(record.parent)
        checkpoints = list_checkpoints(plan.checkpoint_dir) if plan is not None else []
        if not checkpoints:
            continue
        step, folder = checkpoints[-1]
        newest = (folder / STATE).stat().st_mtime
        bundle = Path(plan.output) / "aura_config.json"
        if not bundle.is_file() or bundle.stat().st_mtime < newest:
            found.append((newest, plan, step))
    if not found:
        return None
    _, plan, step = max(found, key=lambda f: f[0])
    return plan, step


# ---------------------------------------------------------------------- the Quick demo's data
def quick_demo_data(cache_root: Path, default_bundle: Path | None) -> tuple[Path, str]:
    """(the Quick demo's clip folder, how it was made): requests freshly spoken with espeak-ng (a few hundred,
    ``synth.synthesize_split(quick=True)``), or the bundled sample clips where espeak-ng is missing."""
    from aura_model.demo import synth

    try:
        synth.espeak_executable()
    except AuraError:
        return _sample_clips(cache_root / "samples", default_bundle), "the bundled sample clips (no espeak-ng)"
    manifest = synth.synthesize_split("train", cache_root / "spoken", quick=True, jobs=max(1, app_threads()))
    return manifest.parent, "requests spoken with espeak-ng"


def _sample_clips(folder: Path, default_bundle: Path | None) -> Path:
    """The bundled samples as an audiofolder (wav + metadata.jsonl with their transcripts)."""
    samples = default_bundle / "samples" if default_bundle is not None else None
    if samples is None or not (samples / "samples.jsonl").is_file():
        raise AuraError("the Quick demo needs espeak-ng (apt-get install espeak-ng) or the bundled sample clips")
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for line in (samples / "samples.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            shutil.copy2(samples / row["audio"], folder / row["audio"])
            rows.append({"file_name": row["audio"], "transcription": row["text"]})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return folder
