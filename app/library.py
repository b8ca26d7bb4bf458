"""The adapter library: the bundles in the user's data folder, plus the bundled default. Qt-free.

Layout of the library folder (``app.settings.library_folder``, by default
``<platformdirs user data>/AuRA/adapters``)::

    <name>/               one adapter bundle per folder (aura_config.json + safetensors), written by the
                          Train tab (the trainer's --output) or by an import
    .runs/<name>/         the Train tab's run record (run.json) and checkpoints of that adapter
    .import-*/            an archive being imported; renamed into place once it passed every check

Names starting with "." are never adapters. Every write stays inside the library folder: names are
checked (no separators, no "..", no leading "."), and every path is resolved and compared with the
library before anything is renamed, deleted or written.

**Import** is the one place where outside data enters. The archive is checked first
(``app.adapter_archive``: paths, links, pickle-capable or unexpected files, member count and unpacked
size; nothing is written when it is refused); only then are the members extracted, one by one and
with their sizes counted, into ``.import-*`` inside the library; the bundle's ``aura_config.json``
must read, its base model must be available here (the message names it otherwise), and
``bundle.validate_bundle`` (what loading checks) must pass; then the folder is renamed into
place. On any refusal the temporary folder is removed: the library is as it was.

``aura_model.bundle`` (torch) is imported inside the functions that need it: callers run them in
a background thread (``app.workers.jobs``), never on the Qt main thread.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.adapter_archive import CONFIG_NAME, Archive, check_members, extract
from aura_model.errors import AuraError

RUNS = ".runs"  # the Train tab's run records and checkpoints, one folder per adapter name
IMPORT_PREFIX = ".import-"
MAX_IMPORT_BYTES = 32 << 30  # 32 GiB unpacked: a bundle carrying a 7B base in bf16 fits, a zip bomb does not
KEY_METRICS = ("val_cosine", "val_token_accuracy", "val_agreement", "val_kl", "val_loss")  # shown in the library
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._+-]{0,79}$")


# ---------------------------------------------------------------------- names and folders
def check_name(name: str) -> str:
    """An adapter name, stripped; AuraError naming the problem when it cannot be a folder in the library."""
    name = (name or "").strip()
    if not name:
        raise AuraError("the adapter needs a name")
    if not _NAME_RE.match(name) or ".." in name or name.endswith((".", " ")):
        raise AuraError(f"{name!r} cannot be an adapter name: use letters, digits, spaces and . _ + - "
                        "(up to 80 characters, starting with a letter or digit)")
    return name


def _inside(library: Path, path: Path) -> Path:
    """``path`` resolved, refused unless it lies directly or deeper inside ``library``."""
    root = Path(library).resolve()
    resolved = path.resolve()
    if resolved == root or root not in resolved.parents:
        raise AuraError(f"{str(path)!r} is outside the adapter library {str(root)!r}; refusing to touch it")
    return resolved


def adapter_path(library: Path, name: str) -> Path:
    return Path(library) / check_name(name)


def run_folder(library: Path, name: str) -> Path:
    """Where the Train tab keeps a run's record and checkpoints (inside the library, hidden from the list)."""
    return Path(library) / RUNS / check_name(name)


def is_bundle(path: Path) -> bool:
    return (Path(path) / CONFIG_NAME).is_file()


def output_folder(library: Path, name: str) -> tuple[Path, bool]:
    """(the folder a run named ``name`` writes, whether it replaces an existing adapter).

    Refuses a name whose folder exists and is not an adapter bundle: a run never writes over it."""
    out = adapter_path(library, name)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise AuraError(f"{str(out)!r} exists and is not an adapter folder; choose another name")
    if out.is_dir() and not is_bundle(out):
        raise AuraError(f"{str(out)!r} exists and is not an adapter bundle; choose another name")
    return out, out.is_dir()


# ---------------------------------------------------------------------- listing
@dataclass(frozen=True)
class AdapterEntry:
    """One adapter of the library, as the Adapters tab lists it."""

    name: str  # folder name (the bundled default: "default")
    path: Path  # the bundle folder
    builtin: bool  # the bundled default: it cannot be renamed or deleted
    base: str  # the base LLM it was trained on (aura_config.json base.id)
    teacher: str  # the teacher it was distilled from
    created: float  # when it was written (seconds since the epoch; aura_config.json's mtime)
    size_bytes: int  # all its files
    steps: int | None  # optimizer steps it was trained for
    metrics: dict[str, float] = field(default_factory=dict)  # the last validation's key metrics (KEY_METRICS)
    problem: str = ""  # why it cannot be used ("" when its config reads)


def folder_size(path: Path) -> int:
    """Bytes of the regular files under ``path`` (links are not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def describe(path: Path, builtin: bool = False, name: str | None = None) -> AdapterEntry:
    """The library entry of one bundle folder; an unreadable config becomes ``problem``, not an error."""
    from aura_model.bundle import read_bundle_config

    path = Path(path)
    name = name or path.name
    size = folder_size(path)
    try:
        meta = read_bundle_config(path)
    except AuraError as exc:
        return AdapterEntry(name, path, builtin, "", "", _mtime(path), size, None, {}, str(exc))
    training = meta.get("training") if isinstance(meta.get("training"), dict) else {}
    metrics = meta.get("metrics") if isinstance(meta.get("metrics"), dict) else {}
    key = {k: float(metrics[k]) for k in KEY_METRICS if isinstance(metrics.get(k), (int, float))}
    return AdapterEntry(name, path, builtin, str(meta["base"]["id"]), str(meta.get("teacher") or ""),
                        _mtime(path / CONFIG_NAME), size, training.get("steps"), key)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def list_adapters(library: Path, default_bundle: Path | None = None) -> list[AdapterEntry]:
    """The bundled default (first, when there is one), then the library's bundles by name."""
    out = [describe(default_bundle, builtin=True, name="default")] if default_bundle is not None else []
    library = Path(library)
    if library.is_dir():
        for p in sorted(library.iterdir(), key=lambda p: p.name.lower()):
            if not p.name.startswith(".") and p.is_dir() and not p.is_symlink() and is_bundle(p):
                out.append(describe(p))
    return out


# ---------------------------------------------------------------------- rename, delete
def rename_adapter(library: Path, name: str, new_name: str) -> Path:
    """Rename ``name`` to ``new_name`` (and its run folder); returns the new bundle folder."""
    src, dst = adapter_path(library, name), adapter_path(library, new_name)
    _inside(library, src)
    if not is_bundle(src):
        raise AuraError(f"there is no adapter {name!r} in the library")
    if dst.exists() or dst.is_symlink():
        raise AuraError(f"an adapter named {new_name.strip()!r} exists already")
    os.rename(src, dst)
    runs_src, runs_dst = run_folder(library, name), run_folder(library, new_name)
    if runs_src.is_dir() and not runs_dst.exists():
        os.rename(runs_src, runs_dst)
    return dst


def delete_adapter(library: Path, name: str) -> None:
    """Delete the adapter ``name`` and its run folder (checkpoints) from the library."""
    path = adapter_path(library, name)
    if path.is_symlink() or not is_bundle(path):
        raise AuraError(f"there is no adapter {name!r} in the library")
    _inside(library, path)
    shutil.rmtree(path)
    runs = run_folder(library, name)
    if runs.is_dir() and not runs.is_symlink():
        shutil.rmtree(runs)


# ---------------------------------------------------------------------- export
def export_adapter(bundle: Path, archive: Path) -> Path:
    """Write ``bundle`` as one archive (zip when ``archive`` ends in .zip, else tar.gz), with the bundle's
    folder name at the top; written beside the target and renamed into place. Refuses links."""
    bundle, archive = Path(bundle), Path(archive)
    if not is_bundle(bundle):
        raise AuraError(f"{str(bundle)!r} is not an adapter bundle")
    files = _bundle_files(bundle)
    archive.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{archive.name}.", suffix=".part", dir=archive.parent)
    os.close(fd)
    try:
        writer = _write_zip if archive.suffix.lower() == ".zip" else _write_tar
        writer(Path(tmp), bundle, files)
        os.replace(tmp, archive)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return archive


def _bundle_files(bundle: Path) -> list[Path]:
    files = []
    for p in sorted(bundle.rglob("*")):
        if p.is_symlink():
            raise AuraError(f"{p} is a link; an adapter with links cannot be exported")
        if p.is_file():
            files.append(p)
    return files


def _write_tar(tmp: Path, bundle: Path, files: list[Path]) -> None:
    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(tmp, "w:gz") as tf:
        for p in files:
            tf.add(p, arcname=f"{bundle.name}/{p.relative_to(bundle).as_posix()}", recursive=False, filter=clean)


def _write_zip(tmp: Path, bundle: Path, files: list[Path]) -> None:
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in files:
            zf.write(p, arcname=f"{bundle.name}/{p.relative_to(bundle).as_posix()}")


# ---------------------------------------------------------------------- import: validate, place
def check_bundle_usable(bundle: Path) -> dict[str, Any]:
    """What loading would check, with a clear message when the base model is not on this machine."""
    from aura_model.bundle import bundle_base_ref, load_llm_config, read_bundle_config, validate_bundle

    meta = read_bundle_config(bundle)
    base_ref = bundle_base_ref(bundle, meta)
    try:
        load_llm_config(base_ref)
    except AuraError as exc:
        raise AuraError(f"this adapter needs base model {meta['base']['id']!r}, which is not available here "
                        f"({exc}); install or download it first") from exc
    return validate_bundle(bundle)


def free_name(library: Path, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``, ... : the first that is not taken in the library."""
    candidate, n = name, 1
    while (Path(library) / candidate).exists() or (Path(library) / candidate).is_symlink():
        n += 1
        candidate = f"{name}-{n}"
    return check_name(candidate)


def import_archive(archive: Path, library: Path, max_bytes: int = MAX_IMPORT_BYTES) -> AdapterEntry:
    """Check ``archive``, unpack it into the library and return its entry; AuraError (and nothing written) if refused."""
    archive, library = Path(archive), Path(library)
    with Archive(archive) as arc:
        members, top = check_members(arc.members(), archive, max_bytes)
        try:
            name = check_name(top)
        except AuraError:
            name = "imported-adapter"
        library.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=IMPORT_PREFIX, dir=library))
        try:
            bundle = staging / "bundle"
            bundle.mkdir()
            extract(arc, members, bundle, max_bytes)
            check_bundle_usable(bundle)
            final = library / free_name(library, name)
            os.rename(bundle, final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return describe(final)


def remove_stale_imports(library: Path, older_than_s: float = 3600.0) -> int:
    """Remove ``.import-*`` folders left by a crash during an import; returns how many."""
    removed = 0
    if Path(library).is_dir():
        for p in Path(library).glob(IMPORT_PREFIX + "*"):
            if p.is_dir() and not p.is_symlink() and time.time() - _mtime(p) > older_than_s:
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
    return removed
