"""Checkpoints: the full training state, written atomically, no pickle.

One checkpoint is a folder ``<checkpoint_dir>/step-00000120/``::

    trainable.safetensors      every trainable tensor (AudioEmbedding, LoRA, projection heads), by parameter name
    optimizer.safetensors      the optimizer's tensor state ("state.<param index>.<name>")
    optimizer.json             its non-tensor state and param_groups
    scheduler.json             the LR scheduler's state_dict
    scaler.json                fp16 GradScaler state (only with fp16 mixed precision)
    rng-<rank>.safetensors     torch CPU (+ CUDA) generator states of each process
    rng-<rank>.json            python `random` and numpy global states of each process
    state.json                 step, epoch, batch position, samples seen, history, the spec (written last)

It is assembled in ``.tmp-step-00000120`` and renamed into place, so a kill at any moment leaves
either the whole checkpoint or none; leftover temp folders are removed when the next run starts.
Only the newest ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint_layout import STATE, TMP_PREFIX, list_checkpoints, step_name
from ..errors import AuraError

TRAINABLE = "trainable.safetensors"
FORMAT = 1


def remove_temp(root: str | Path) -> None:
    """Remove half-written checkpoints of a killed run."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(TMP_PREFIX) or p.name.startswith(".old-step-"):
                shutil.rmtree(p, ignore_errors=True)


def remove_all(root: str | Path) -> int:
    """Delete every checkpoint (a fresh run must not resume into an old one later). Returns how many."""
    found = list_checkpoints(root)
    for _, p in found:
        shutil.rmtree(p, ignore_errors=True)
    remove_temp(root)
    return len(found)


def temp_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"{TMP_PREFIX}{step:08d}"


def prune(root: str | Path, keep: int) -> None:
    for _, p in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(p, ignore_errors=True)


def commit(tmp: Path, root: str | Path, step: int, keep: int) -> Path:
    """Rename the assembled temp folder into place (replacing a same-step checkpoint) and prune old ones."""
    final = Path(root) / step_name(step)
    old = None
    if final.exists():
        old = Path(root) / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    _fsync_dir(tmp)
    os.replace(tmp, final)
    _fsync_dir(Path(root))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    prune(root, keep)
    return final


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AuraError(f"checkpoint file {path} is unreadable: {exc}") from exc


def _save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(path))


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise AuraError(f"checkpoint file {path} is unreadable: {exc}") from exc


# ------------------------------------------------------------------ optimizer state
def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    return value


def save_optimizer(folder: Path, state_dict: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, entry in state_dict["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value
            else:
                plain.setdefault(str(idx), {})[name] = _jsonable(value)
    groups = [{k: _jsonable(v) for k, v in g.items()} for g in state_dict["param_groups"]]
    _save_tensors(folder / "optimizer.safetensors", tensors)
    _write_json(folder / "optimizer.json", {"param_groups": groups, "plain": plain})


def load_optimizer(folder: Path) -> dict[str, Any]:
    tensors = _load_tensors(folder / "optimizer.safetensors")
    meta = _read_json(folder / "optimizer.json")
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    for idx, entry in meta.get("plain", {}).items():
        state.setdefault(int(idx), {}).update(entry)
    groups = meta["param_groups"]
    for g in groups:
        if "betas" in g and isinstance(g["betas"], list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


# ------------------------------------------------------------------ RNG state
def save_rng(folder: Path, rank: int) -> None:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    _save_tensors(folder / f"rng-{rank}.safetensors", tensors)
    _write_json(folder / f"rng-{rank}.json", {
        "numpy": {"kind": kind, "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
    })


def restore_rng(folder: Path, rank: int) -> None:
    path = folder / f"rng-{rank}.safetensors"
    if not path.is_file():
        raise AuraError(f"checkpoint {folder} has no RNG state for process {rank} (was it written by fewer processes?)")
    tensors = _load_tensors(path)
    meta = _read_json(folder / f"rng-{rank}.json")
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    n = meta["numpy"]
    np.random.set_state((n["kind"], tensors["numpy_keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    p = meta["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


# ------------------------------------------------------------------ the rest
def save_common(folder: Path, trainable: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                scheduler_state: dict[str, Any], scaler_state: dict[str, Any] | None, state: dict[str, Any]) -> None:
    """Everything but the per-process RNG; state.json is written last."""
    _save_tensors(folder / TRAINABLE, trainable)
    save_optimizer(folder, optimizer_state)
    _write_json(folder / "scheduler.json", {k: _jsonable(v) for k, v in scheduler_state.items()})
    if scaler_state is not None:
        _write_json(folder / "scaler.json", scaler_state)
    _write_json(folder / STATE, {"format": FORMAT, **state})


def read_state(folder: Path) -> dict[str, Any]:
    state = _read_json(folder / STATE)
    if state.get("format") != FORMAT:
        raise AuraError(f"checkpoint {folder} has format {state.get('format')!r}; this trainer reads format {FORMAT}")
    return state


def load_trainable(folder: Path) -> dict[str, torch.Tensor]:
    return _load_tensors(folder / TRAINABLE)


def load_scheduler(folder: Path) -> dict[str, Any]:
    return _read_json(folder / "scheduler.json")


def load_scaler(folder: Path) -> dict[str, Any] | None:
    path = folder / "scaler.json"
    return _read_json(path) if path.is_file() else None
