"""How a training run stops and where it resumes: the checkpoint folder layout and the exit status of a run stopped
by a signal, standard library only, so the app and the demo build can read them without loading the trainer (the
checkpoints' contents: aura_model/train/checkpoint.py).

One checkpoint is ``<checkpoint_dir>/step-00000120/``; it is complete once its ``state.json`` is written (last).
"""

from __future__ import annotations

import re
from pathlib import Path

PREFIX = "step-"
TMP_PREFIX = ".tmp-step-"
STATE = "state.json"
_STEP_RE = re.compile(r"^step-(\d+)$")
SIGNAL_EXIT = {"SIGINT": 130, "SIGTERM": 143}  # `aura train` stopped by a signal wrote a checkpoint, then exits so
#                                                (128 + signal number, the shell's convention)


def step_name(step: int) -> str:
    return f"{PREFIX}{step:08d}"


def list_checkpoints(root: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (those with a state.json), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _STEP_RE.match(p.name)
        if m and p.is_dir() and (p / STATE).is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(root: str | Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def default_checkpoint_dir(output: str | Path) -> Path:
    """Where a run's checkpoints go unless ``train.checkpoint_dir`` says otherwise: ``<output>.checkpoints``."""
    out = Path(output)
    return out.with_name(out.name + ".checkpoints")
