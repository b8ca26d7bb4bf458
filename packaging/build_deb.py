"""Linux installers from the one-folder build: a .deb (dpkg-deb) and a plain .tar.gz.

    python packaging/build_deb.py dist/aura [--out dist]

The .deb installs the folder as /opt/aura, the launchers /usr/bin/aura and /usr/bin/aura-gui
(relative symbolic links, so the package also runs unpacked into a scratch root with dpkg -x),
a desktop entry and the icon (hicolor theme). Its Depends are what the folder's binaries link but
do not carry, found with ldd and dpkg -S on the build machine: the libraries that must come from
the system (glibc, libstdc++, X11/xcb, EGL/GL, the sound stack). PortAudio comes inside.
Run by scripts/package.sh.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "aura-assistant"
INSTALL_DIR = "opt/aura"
LAUNCHERS = ("aura", "aura-gui")
ICON_NAME = "aura-assistant"
# At least the build machine's versions: the binaries use their newest symbols.
VERSIONED = ("libc6", "libstdc++6", "libgcc-s1")
RECOMMENDS = "espeak-ng"  # spoken replies run its command line; the app works without it
LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|\S+)")


# ---------------------------------------------------------------------- what the folder needs from the system
def elf_files(folder: Path) -> list[Path]:
    """Executables and shared libraries in ``folder`` (not links)."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def parse_ldd(text: str) -> dict[str, str | None]:
    """ldd's output as {library name: resolved path, or None when not found}."""
    libs: dict[str, str | None] = {}
    for line in text.splitlines():
        m = LDD_LINE.match(line)
        if m:
            libs[m.group(1)] = None if m.group(2) == "not found" else m.group(2)
    return libs


def outside_libraries(folder: Path) -> tuple[dict[str, str], set[str]]:
    """({name: system path} the binaries load from outside the folder, {names found nowhere})."""
    inside = {p.name for p in folder.rglob("*")}
    outside: dict[str, str] = {}
    missing: set[str] = set()
    with ThreadPoolExecutor(max(1, os.cpu_count() or 1)) as pool:
        reports = pool.map(lambda p: subprocess.run(["ldd", str(p)], capture_output=True, text=True).stdout,
                           elf_files(folder))
    for report in reports:
        for name, resolved in parse_ldd(report).items():
            if name in inside:
                continue
            if resolved is None:
                missing.add(name)
            elif not Path(resolved).resolve().is_relative_to(folder.resolve()):
                outside[name] = resolved
    return outside, missing


def path_variants(path: str) -> list[str]:
    """The names dpkg may have recorded a file under (merged /usr: /lib/x and /usr/lib/x are one file)."""
    real = os.path.realpath(path)
    out = []
    for p in (path, real):
        out += [p, p[4:] if p.startswith("/usr/") else "/usr" + p]
    return list(dict.fromkeys(out))


def parse_dpkg_search(text: str) -> dict[str, str]:
    """`dpkg -S` output as {path: package} (the first package when several share a path; no :arch)."""
    owners = {}
    for line in text.splitlines():
        if ": " not in line or line.startswith("diversion "):
            continue
        packages, path = line.split(": ", 1)
        owners[path.strip()] = packages.split(",")[0].strip().split(":")[0]
    return owners


def owning_packages(paths: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """({library name: package}, [names no package owns]) for {name: path}."""
    queries = sorted({v for p in paths.values() for v in path_variants(p)})
    done = subprocess.run(["dpkg", "-S", *queries], capture_output=True, text=True) if queries else None
    owners = parse_dpkg_search(done.stdout) if done else {}
    found, orphans = {}, []
    for name, path in sorted(paths.items()):
        pkg = next((owners[v] for v in path_variants(path) if v in owners), None)
        if pkg:
            found[name] = pkg
        else:
            orphans.append(f"{name} ({path})")
    return found, orphans


def upstream_version(package: str) -> str | None:
    done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    if done.returncode != 0 or not done.stdout:
        return None
    return re.sub(r"^\d+:", "", done.stdout).split("-")[0].split("+")[0]


def depends_field(packages: set[str]) -> str:
    """The Depends line: sorted, with a minimum version for the toolchain's libraries."""
    parts = []
    for pkg in sorted(packages):
        version = upstream_version(pkg) if pkg in VERSIONED else None
        parts.append(f"{pkg} (>= {version})" if version else pkg)
    return ", ".join(parts)


# ---------------------------------------------------------------------- the package
def control_text(version: str, arch: str, depends: str, installed_kb: int) -> str:
    return (f"Package: {PACKAGE}\nVersion: {version}\nArchitecture: {arch}\n"
            f"Maintainer: AuRA developers <aura@users.noreply.github.com>\nInstalled-Size: {installed_kb}\n"
            f"Depends: {depends}\nRecommends: {RECOMMENDS}\nSection: sound\nPriority: optional\n"
            "Description: local voice assistant whose LLM hears speech directly\n"
            " AuRA answers spoken and typed requests with a local LLM that carries a LoRA adapter\n"
            " distilled from a speech recognizer: no transcript, no network. The desktop app is\n"
            " aura-gui, the command line aura; both run aura --self-test to check the install.\n")


def desktop_entry() -> str:
    return (HERE / "linux" / "aura.desktop").read_text(encoding="utf-8")


def copy_tree(src: Path, dst: Path) -> None:
    """The app folder into the package root: hard links where the file system allows (1 GB, no copy)."""
    def link_or_copy(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)
    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)


def stage(app: Path, root: Path, version: str, arch: str, depends: str) -> None:
    """The package's file tree under ``root``, DEBIAN/control included."""
    copy_tree(app, root / INSTALL_DIR)
    (root / "usr" / "bin").mkdir(parents=True)
    for name in LAUNCHERS:
        os.symlink(f"../../{INSTALL_DIR}/{name}", root / "usr" / "bin" / name)
    apps = root / "usr" / "share" / "applications"
    apps.mkdir(parents=True)
    (apps / f"{ICON_NAME}.desktop").write_text(desktop_entry(), encoding="utf-8")
    icons = root / "usr" / "share" / "icons" / "hicolor"
    sys.path.insert(0, str(HERE))
    from app_icon import render_icon

    render_icon(icons / "256x256" / "apps" / f"{ICON_NAME}.png")
    (icons / "scalable" / "apps").mkdir(parents=True)
    shutil.copy2(HERE / "aura.svg", icons / "scalable" / "apps" / f"{ICON_NAME}.svg")
    size_kb = sum(p.lstat().st_size for p in root.rglob("*") if not p.is_dir()) // 1024
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN" / "control").write_text(control_text(version, arch, depends, size_kb), encoding="utf-8")


def system_depends(app: Path) -> str:
    """The Depends line for what ``app``'s binaries load from the system."""
    libs, missing = outside_libraries(app)
    owners, orphans = owning_packages(libs)
    for note in [*sorted(missing), *orphans]:
        print(f"build_deb: note: no package provides {note} (an optional plugin's library, not a dependency)",
              file=sys.stderr)
    return depends_field(set(owners.values()))


def build_installers(app: Path, out: Path, version: str) -> tuple[Path, Path]:
    """The .deb and, on the other core meanwhile, the .tar.gz."""
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    depends = system_depends(app)
    deb = out / f"{PACKAGE}_{version}_{arch}.deb"
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        root = Path(tmp) / "root"
        stage(app, root, version, arch, depends)  # before tar starts: hard-linking changes the files' ctime
        tar = start_tarball(app, out, version)
        # zstd: 10x faster than xz here, smaller than gzip; dpkg >= 1.21.18 (Debian 12, Ubuntu 21.10) reads it,
        # and the binaries need Debian 12's glibc anyway.
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zzstd", "-z6", "--build", str(root), str(deb)],
                       check=True, stdout=subprocess.DEVNULL)
        print(f"build_deb: {deb} ({deb.stat().st_size / 1e6:.0f} MB); Depends: {depends}")
        return deb, finish_tarball(*tar)  # before the staged links go: removing them changes the files' ctime too


def start_tarball(app: Path, out: Path, version: str) -> tuple[subprocess.Popen, Path]:
    """tar + gzip in the background (half a minute of one core) while the .deb is built."""
    tarball = out / f"aura-{version}-linux-{os.uname().machine}.tar.gz"
    return subprocess.Popen(["tar", "-C", str(app.parent), "-czf", str(tarball), app.name]), tarball


def finish_tarball(proc: subprocess.Popen, tarball: Path) -> Path:
    if proc.wait() != 0:
        raise SystemExit(f"build_deb: tar failed with exit code {proc.returncode}")
    print(f"build_deb: {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
    return tarball


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("app", type=Path, help="the one-folder build (dist/aura)")
    p.add_argument("--out", type=Path, default=Path("dist"), help="where the .deb and .tar.gz go")
    p.add_argument("--version", default=importlib.metadata.version("aura-assistant"))
    args = p.parse_args(argv)
    if not (args.app / "aura").is_file():
        p.error(f"{args.app} is not a PyInstaller build of AuRA (no {args.app / 'aura'})")
    args.out.mkdir(parents=True, exist_ok=True)
    build_installers(args.app, args.out, args.version)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
