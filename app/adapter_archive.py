"""Reading an adapter archive someone else made, safely: the checks ``app.library.import_archive`` relies on. Qt-free.

An archive (tar, tar.gz/bz2/xz, zip) is refused before anything is written when a member has an absolute path, a
``..`` component, a backslash or drive letter, is a link or a device, is a pickle-capable file (``.bin``, ``.pt``,
...) or any file other than safetensors weights and text (json, txt, md, jinja, ...), when it has more than
``MAX_MEMBERS`` members, or when the members add up to more than ``max_bytes``; ``extract`` then writes them one by
one, counting bytes (a member that holds more than it declares is refused), and never outside its folder.
"""

from __future__ import annotations

import re
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Iterator

from aura_model.errors import AuraError

CONFIG_NAME = "aura_config.json"  # = aura_model.bundle.CONFIG_NAME (not imported: that module imports torch)
MAX_MEMBERS = 20_000
# Files an adapter bundle may hold: weights only as safetensors; everything else is text, images or audio.
SAFE_SUFFIXES = frozenset({".safetensors", ".json", ".jsonl", ".txt", ".md", ".jinja", ".model", ".tiktoken",
                           ".png", ".wav", ".yaml", ".yml", ".csv"})
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5",
                             ".msgpack", ".onnx"})
_CHUNK = 1 << 20


# ---------------------------------------------------------------------- the members
@dataclass(frozen=True)
class Member:
    """One archive member that passed the checks."""

    parts: tuple[str, ...]  # its path inside the archive, split at "/"
    is_dir: bool
    size: int  # bytes as the archive declares them (counted again while extracting)
    handle: Any  # tarfile.TarInfo or zipfile.ZipInfo


def member_parts(raw: str, archive: Path) -> tuple[str, ...]:
    """A member name split into safe parts; refuses absolute paths, '..', drive letters and backslashes."""
    if not raw or "\x00" in raw:
        raise AuraError(f"{archive.name}: a member has an empty or invalid name")
    if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw):
        raise AuraError(f"{archive.name}: member {raw!r} has an absolute path; refused")
    if "\\" in raw:
        raise AuraError(f"{archive.name}: member {raw!r} has a backslash in its path; refused")
    parts = tuple(p for p in PurePosixPath(raw).parts if p not in ("", "."))
    if ".." in parts:
        raise AuraError(f"{archive.name}: member {raw!r} leads outside the archive ('..'); refused")
    if not parts:
        raise AuraError(f"{archive.name}: a member has an empty name")
    return parts


def check_file_kind(parts: tuple[str, ...], archive: Path) -> None:
    suffix = PurePosixPath(parts[-1]).suffix.lower()
    name = "/".join(parts)
    if suffix in PICKLE_SUFFIXES:
        raise AuraError(f"{archive.name}: {name} is a {suffix} file, which can hold pickled code; an adapter "
                        "carries its weights as safetensors only; refused")
    if suffix not in SAFE_SUFFIXES:
        raise AuraError(f"{archive.name}: {name} is not a file an adapter bundle holds (safetensors weights, "
                        f"json and text files only); refused")


def tar_members(tf: tarfile.TarFile, archive: Path) -> Iterator[Member]:
    for info in tf.getmembers():
        parts = member_parts(info.name, archive)
        if info.issym() or info.islnk():
            raise AuraError(f"{archive.name}: member {info.name!r} is a link ({'symbolic' if info.issym() else 'hard'}"
                            f" link to {info.linkname!r}); refused")
        if info.isdir():
            yield Member(parts, True, 0, info)
        elif info.isfile():
            check_file_kind(parts, archive)
            yield Member(parts, False, int(info.size), info)
        else:
            raise AuraError(f"{archive.name}: member {info.name!r} is not a regular file or folder (device, pipe, "
                            "...); refused")


def zip_members(zf: zipfile.ZipFile, archive: Path) -> Iterator[Member]:
    for info in zf.infolist():
        parts = member_parts(info.filename, archive)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise AuraError(f"{archive.name}: member {info.filename!r} is a symbolic link; refused")
        if info.is_dir():
            yield Member(parts, True, 0, info)
            continue
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # no type bits: a plain file (writestr)
            raise AuraError(f"{archive.name}: member {info.filename!r} is not a regular file; refused")
        check_file_kind(parts, archive)
        yield Member(parts, False, int(info.file_size), info)


def check_members(members: list[Member], archive: Path, max_bytes: int) -> tuple[list[Member], str]:
    """The members with the bundle's top folder stripped, and the adapter's name; refuses what is not one bundle."""
    if len(members) > MAX_MEMBERS:
        raise AuraError(f"{archive.name}: {len(members)} members; an adapter bundle has far fewer (limit {MAX_MEMBERS})")
    total = sum(m.size for m in members)
    if total > max_bytes:
        raise AuraError(f"{archive.name}: unpacks to {total / 2**20:.1f} MiB, more than the limit of "
                        f"{max_bytes / 2**20:.1f} MiB; refused")
    files = [m for m in members if not m.is_dir]
    if any(m.parts == (CONFIG_NAME,) for m in files):
        return members, archive_stem(archive)
    tops = {m.parts[0] for m in members}
    if len(tops) == 1 and any(m.parts[1:] == (CONFIG_NAME,) for m in files):
        top = tops.pop()
        stripped = [Member(m.parts[1:], m.is_dir, m.size, m.handle) for m in members if len(m.parts) > 1]
        return stripped, top
    raise AuraError(f"{archive.name} holds no adapter bundle: {CONFIG_NAME} must be at its top or in its one "
                    "top folder")


def archive_stem(archive: Path) -> str:
    name = archive.name
    for suffix in (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar", ".zip"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return archive.stem


class Archive:
    """A tar or zip archive, opened for checking and reading its members."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.tar: tarfile.TarFile | None = None

    def __enter__(self) -> "Archive":
        if not self.path.is_file():
            raise AuraError(f"{str(self.path)!r} is not a file")
        try:
            if zipfile.is_zipfile(self.path):
                self.zip = zipfile.ZipFile(self.path)
            else:
                self.tar = tarfile.open(self.path, "r:*")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            raise AuraError(f"{self.path.name} is not a readable tar or zip archive, or it is damaged or truncated "
                            f"({_first_line(exc)}); nothing was imported") from exc
        return self

    def __exit__(self, *exc) -> None:
        (self.zip or self.tar).close()  # type: ignore[union-attr]

    def members(self) -> list[Member]:
        try:
            if self.zip is not None:
                return list(zip_members(self.zip, self.path))
            return list(tar_members(self.tar, self.path))  # type: ignore[arg-type]
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            raise _damaged(self.path, exc) from exc

    def open(self, member: Member) -> BinaryIO:
        if self.zip is not None:
            return self.zip.open(member.handle)
        stream = self.tar.extractfile(member.handle)  # type: ignore[union-attr]
        if stream is None:
            raise AuraError(f"{self.path.name}: cannot read member {'/'.join(member.parts)}")
        return stream


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _damaged(archive: Path, exc: BaseException) -> AuraError:
    return AuraError(f"{archive.name} is damaged or truncated ({_first_line(exc)}); nothing was imported")


# ---------------------------------------------------------------------- extracting
def extract(arc: Archive, members: list[Member], dest: Path, max_bytes: int) -> None:
    """Write the checked members under ``dest``, counting bytes (a member larger than declared is refused)."""
    written = 0
    for m in members:
        target = dest.joinpath(*m.parts)
        if dest.resolve() not in target.resolve().parents:
            raise AuraError(f"{arc.path.name}: member {'/'.join(m.parts)} leads outside the archive; refused")
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with arc.open(m) as src, open(target, "xb") as out:
                written = copy_counted(src, out, m, written, max_bytes, arc.path)
        except FileExistsError as exc:
            raise AuraError(f"{arc.path.name}: member {'/'.join(m.parts)} appears twice; refused") from exc
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise _damaged(arc.path, exc) from exc


def copy_counted(src: BinaryIO, out: BinaryIO, m: Member, written: int, max_bytes: int, archive: Path) -> int:
    size = 0
    while True:
        block = src.read(_CHUNK)
        if not block:
            break
        size += len(block)
        written += len(block)
        if size > m.size or written > max_bytes:
            raise AuraError(f"{archive.name}: member {'/'.join(m.parts)} holds more than it declares; refused")
        out.write(block)
    if size != m.size:
        raise _damaged(archive, EOFError(f"{'/'.join(m.parts)}: {size} of {m.size} bytes"))
    return written
