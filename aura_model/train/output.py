"""Where a run writes, checked before any work: the trainer replaces only what it wrote itself.

``--output`` may be a new path, an empty folder, or a bundle an earlier run wrote (it has an
``aura_config.json``); anything else (a folder of the user's files, a regular file, the training
data or a folder around it) is refused before a clip is read. The folder the bundle is written
beside must be writable: found now, not after hours of training. When saving fails anyway (a
full disk), the message names the path and the free space, and the trained weights survive in a
checkpoint the same command continues from with ``--resume``.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

from ..bundle import CONFIG_NAME
from ..errors import AuraError

SHOWN = 3  # names listed when refusing a folder that is not a bundle


def check_output(output: str | os.PathLike, data: str, checkpoint_dir: Path) -> None:
    """Refuse an --output the run must not replace, or cannot write; before any work starts."""
    out = Path(output).expanduser()
    _check_apart_from_data(out, data)
    _check_not_user_files(out)
    for place in (out.parent, checkpoint_dir.parent):
        check_writable(place)


def _check_not_user_files(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        kind = "a link" if out.is_symlink() else "a file"
        raise AuraError(f"--output {str(out)!r} is {kind}, not a folder: choose a new folder name for the adapter")
    if not out.is_dir() or (out / CONFIG_NAME).is_file():
        return  # new, or a bundle an earlier run wrote: the run replaces it when it is done
    entries = sorted(p.name for p in out.iterdir())
    if entries:
        shown = ", ".join(entries[:SHOWN]) + (f" and {len(entries) - SHOWN} more" if len(entries) > SHOWN else "")
        raise AuraError(f"--output {str(out)!r} already holds {len(entries)} item(s) that are not an AuRA bundle "
                        f"({shown}); the trainer replaces only a bundle it wrote or an empty folder: "
                        "choose another --output")


def _check_apart_from_data(out: Path, data: str) -> None:
    source = Path(data).expanduser()
    if not source.exists():
        return  # a Hugging Face dataset name, not a folder
    o, d = out.resolve(), source.resolve()
    if o == d:
        raise AuraError(f"--output {str(out)!r} is the training data itself: choose another folder for the adapter")
    if d in o.parents:
        raise AuraError(f"--output {str(out)!r} is inside the training data {data!r}: it would be read as data "
                        "next time; choose a folder outside it")
    if o in d.parents:
        raise AuraError(f"--output {str(out)!r} contains the training data {data!r}: replacing it would delete the "
                        "data; choose another folder")


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists."""
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path) -> None:
    """The run can create files in ``folder`` (or create it): tried for real, as root may be refused too."""
    base = existing_ancestor(folder)
    if not base.is_dir():
        raise AuraError(f"cannot write to {str(folder)!r}: {str(base)!r} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".aura-write-test-", dir=base)
    except OSError as exc:
        raise AuraError(f"cannot write to {str(folder)!r}: {describe(exc, base)}; choose a writable --output") from exc
    os.rmdir(probe)


def describe(exc: OSError, path: Path) -> str:
    """One line for a failed write: a full disk names its free space."""
    if exc.errno == errno.ENOSPC:
        try:
            free = shutil.disk_usage(existing_ancestor(path)).free
        except OSError:
            return "no space left on the device"
        return f"no space left on the device ({free / 1e6:.1f} MB free)"
    return exc.strerror or str(exc)
