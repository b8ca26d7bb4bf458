"""What the PyInstaller build leaves out, each with its reason; used by packaging/aura.spec.

Plain functions over PyInstaller's (dest_name, src_name, typecode) entries, so they are tested
without building (tests/test_packaging.py). packaging/ is a folder of files, not a package: the
spec puts it on sys.path and imports this module by name.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

# Python modules left out (with what only they import).
EXCLUDES = {
    "tkinter": "the GUI is Qt",
    "_tkinter": "the GUI is Qt",
    "matplotlib": "only `aura demo build` draws its report plot, from a checkout",
    "pandas": "optional in transformers, accelerate and datasets; AuRA never uses it",
    "pyarrow": "datasets' storage; training from a Hub dataset runs from a checkout",
    "datasets": "`aura train` from a Hub dataset runs from a checkout; folders of clips train frozen",
    "PIL": "transformers' image processors only; AuRA has no vision model (Qt draws the icons)",
    "IPython": "interactive shells",
    "jupyter_client": "notebooks",
    "ipykernel": "notebooks",
    "pytest": "tests",
    "_pytest": "tests",
    "pytestqt": "tests",
    "transformers.testing_utils": "transformers' own tests",
    "tensorboard": "training progress goes to JSON lines",
    "torch.utils.tensorboard": "training progress goes to JSON lines",
    "triton": "torch.compile's GPU code generator (about 500 MB with CUDA); AuRA does not compile",
    "kernels": "kernels fetched from the Hugging Face Hub: the app makes no network call unless asked for a model",
    "torchvision": "images",
    "torchaudio": "AuRA reads audio with soundfile + soxr",
    "PySide6.QtNetwork": "the app makes no network call through Qt",
    "setuptools": "builds C extensions at run time (torch.utils.cpp_extension); the app compiles nothing",
    "pip": "installers",
}

# Collected files dropped (destination path prefixes), each with its reason.
DROP_PREFIXES = {
    "torch/test/": "torch's C++ test data",
    "torch/bin/": "C++ test programs and protoc",
    "torch/include/": "C++ headers for building extensions",
    "torch/share/": "CMake files for building against libtorch",
    "PySide6/Qt/translations/": "Qt's own dialog translations; the app is English",
}

# System libraries that stay on the system: the .deb depends on their packages instead (packaging/build_deb.py).
SYSTEM_ONLY = {
    "libasound.so": "ALSA must match the system's sound server and its plugins (/usr/lib/*/alsa-lib)",
    "libjack.so": "JACK must match the system's JACK server",
    "libpulse": "PulseAudio/PipeWire client libraries must match the system's server",
    "libstdc++.so": "must be at least as new as the one the system's OpenGL drivers load into the app",
    "libgcc_s.so": "goes with libstdc++",
}

# System libraries no binary links but the app opens at run time (dlopen): kept although nothing links them.
OPENED_AT_RUN_TIME = {
    "libportaudio.so": "sounddevice opens PortAudio with cffi; it comes inside so the microphone works anywhere",
}


# Exceptions to DROP_PREFIXES.
KEEP = {
    "torch/bin/torch_shm_manager": "torch refuses to import without it (it shares tensors between processes)",
}


def drop_reason(dest: str) -> str | None:
    """Why the collected file ``dest`` (its path inside the app) stays out; None to keep it."""
    dest = dest.replace("\\", "/")
    if dest in KEEP:
        return None
    for prefix, reason in DROP_PREFIXES.items():
        if dest.startswith(prefix):
            return reason
    name = Path(dest).name
    for prefix, reason in SYSTEM_ONLY.items():
        if name.startswith(prefix):
            return reason
    return None


def keep(toc: Iterable[tuple]) -> list[tuple]:
    """The entries of a PyInstaller TOC that drop_reason() keeps."""
    return [entry for entry in toc if drop_reason(entry[0]) is None]


def from_python(src: str, roots: Iterable[str] | None = None) -> bool:
    """True for a file of the Python installation or of a wheel (not a library of the operating system)."""
    roots = roots if roots is not None else (sys.prefix, sys.base_prefix, *site.getsitepackages())
    path = Path(src).resolve()
    return any(Path(r).resolve() in (path, *path.parents) for r in roots)


def prune_orphans(binaries: list[tuple], imports: Callable[[str], Iterable[tuple]],
                  is_python: Callable[[str], bool] = from_python) -> list[tuple]:
    """Drop the system libraries that no kept binary links any more (those only dropped files needed, and those
    PyInstaller found by scanning for ctypes calls, such as the demo's libespeak-ng).

    ``imports(path)`` gives a binary's link-time dependencies as (name, path) pairs: PyInstaller's
    ``bindepend.get_imports``. Python's and the wheels' own files, and OPENED_AT_RUN_TIME, are the roots.
    """
    files = [e for e in binaries if e[2] != "SYMLINK"]
    system = {e[0]: e[1] for e in files
              if not is_python(e[1]) and not Path(e[0]).name.startswith(tuple(OPENED_AT_RUN_TIME))}
    by_name = {Path(dest).name: dest for dest in system}
    needed: set[str] = set()
    todo = [e[1] for e in files if e[0] not in system]
    while todo:
        for name, _path in imports(todo.pop()):
            dest = by_name.get(Path(name).name)
            if dest is not None and dest not in needed:
                needed.add(dest)
                todo.append(system[dest])
    kept = [e for e in files if e[0] not in system or e[0] in needed]
    present = {e[0] for e in kept}
    links = [e for e in binaries if e[2] == "SYMLINK" and os.path.normpath(os.path.join(os.path.dirname(e[0]), e[1]))
             in present]
    return kept + links


def strippable(path: Path) -> bool:
    """An ELF library or extension whose symbol table can go (.dynsym, what loading needs, stays).

    Not the copies auditwheel vendored into a ``<package>.libs`` folder (numpy.libs/...): patchelf
    rewrote their layout, and strip then breaks them ("ELF load command address/offset not page-aligned").
    """
    if any(part.endswith(".libs") for part in path.parts) or path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(4) == b"\x7fELF"


def strip_symbols(folder: Path, strip: str = "strip") -> int:
    """Strip every strippable file under ``folder`` (the app's _internal/, never the executables: their
    archive is appended to the ELF, and strip would cut it off); returns the bytes saved."""
    saved = 0
    for path in sorted(folder.rglob("*")):
        if strippable(path):
            before = path.stat().st_size
            subprocess.run([strip, "--strip-unneeded", str(path)], capture_output=True)
            saved += before - path.stat().st_size
    return saved
