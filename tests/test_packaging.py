"""Packaging: `--self-test`, the build rules, and (slow) the PyInstaller build, .deb and .tar.gz proven on the result.

The slow tests build the one-folder app from this checkout with scripts/package.sh (PyInstaller),
then run the built executables' --self-test with no display and the network removed, train two
steps with the frozen trainer, and install the .deb into a scratch root (dpkg -x; with CI=1 as
root also dpkg -i into the real system) and run the installed launcher.
"""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import self_test

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
BUNDLE = ROOT / "assets" / "default_bundle"
VENV_BIN = Path(sys.executable).parent


def _load(name: str):
    """A module of packaging/ (a folder of files, not a package)."""
    spec = importlib.util.spec_from_file_location(name, PACKAGING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _user_env(**extra) -> dict:
    """The environment a user starts the app in: no display, no offline switch, no Qt platform set."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, **extra}


def _run(cmd: list, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


def _self_test_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("aura self-test: ok;"), done.stdout
    return lines[0]


# ---------------------------------------------------------------------- no build needed
def test_packaging_folder_does_not_shadow_the_packaging_library():
    assert not (PACKAGING / "__init__.py").exists()
    done = _run([sys.executable, "-c", "import packaging.version, transformers; print(packaging.__file__)"],
                cwd=ROOT, env=_user_env(HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert "site-packages" in done.stdout, done.stdout


def test_self_test_from_source_answers_and_exits_0():
    done = _run([VENV_BIN / "aura", "--self-test"], env=_user_env())
    line = _self_test_line(done)
    print(line)
    assert "sample_5.wav -> 'tehran' (expected 'tehran')" in line
    assert "network calls 0" in line and line.endswith("; source")
    assert done.stderr == "", done.stderr  # one line and nothing else


def test_self_test_reports_a_wrong_answer(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(BUNDLE, bundle)
    listing = bundle / "samples" / "samples.jsonl"
    rows = [json.loads(line) for line in listing.read_text().splitlines()]
    for row in rows:
        if row["audio"] == self_test.SELF_TEST_CLIP:
            row["answer"] = "paris"
    listing.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = self_test.run(bundle=bundle)
    assert not report.ok
    assert "expected 'paris'" in report.failure and "tehran" in report.failure
    assert report.line().startswith("aura self-test: FAILED: ")
    assert "first token" in report.timings  # it got as far as answering


def test_self_test_fails_on_a_network_call(monkeypatch):
    """The audit hook sees a name lookup made while the self-test runs (as a Hub fetch would make)."""
    import socket

    monkeypatch.setattr(self_test, "_check_child_process", lambda report: socket.getaddrinfo("localhost", 80))
    report = self_test.run()
    assert not report.ok and "network calls without being asked: socket.getaddrinfo" in report.failure
    assert "network calls 1" in report.line()


def test_self_test_without_a_bundle_says_why(tmp_path):
    report = self_test.run(bundle=tmp_path)
    assert not report.ok and "samples.jsonl" in report.failure


def test_gui_self_test_without_a_console_writes_the_log(tmp_path):
    """A windowed build starts with sys.stdout and sys.stderr None: the line goes to the log folder."""
    code = ("import sys; sys.stdout = sys.stderr = None\n"
            "from app.gui import main\nraise SystemExit(main(['--self-test']))")
    done = _run([sys.executable, "-c", code], cwd=ROOT, env=_user_env(XDG_STATE_HOME=str(tmp_path)))
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    log = (tmp_path / "AuRA" / "log" / "self-test.log").read_text()
    assert log.startswith("aura self-test: ok;") and "Qt offscreen + qxcb plugin, icons" in log, log


def test_build_rules_drop_with_reasons():
    rules = _load("build_rules")
    assert rules.drop_reason("torch/bin/test_api")
    assert rules.drop_reason("torch/bin/torch_shm_manager") is None  # torch will not import without it
    assert rules.drop_reason("torch/include/ATen/ATen.h")
    assert rules.drop_reason("libasound.so.2") and rules.drop_reason("libstdc++.so.6")
    assert rules.drop_reason("libportaudio.so.2") is None
    assert rules.drop_reason("transformers/models/llama/modeling_llama.py") is None
    assert all(reason for reason in {**rules.EXCLUDES, **rules.DROP_PREFIXES, **rules.SYSTEM_ONLY}.values())


def test_prune_orphans_keeps_what_is_linked_or_opened():
    rules = _load("build_rules")
    links = {"/py/torch/libtorch.so": [("libgomp.so.1", "/usr/lib/libgomp.so.1")],
             "/usr/lib/libgomp.so.1": [("libz.so.1", "/usr/lib/libz.so.1")]}
    binaries = [("torch/lib/libtorch.so", "/py/torch/libtorch.so", "BINARY"),
                ("libgomp.so.1", "/usr/lib/libgomp.so.1", "BINARY"),
                ("libz.so.1", "/usr/lib/libz.so.1", "BINARY"),  # linked through libgomp
                ("libdb-5.3.so", "/usr/lib/libdb-5.3.so", "BINARY"),  # only a dropped library linked it
                ("libdb.so", "libdb-5.3.so", "SYMLINK"),
                ("libportaudio.so.2", "/usr/lib/libportaudio.so.2", "BINARY")]  # opened at run time
    kept = rules.prune_orphans(binaries, lambda path: links.get(path, []), lambda src: src.startswith("/py/"))
    assert sorted(e[0] for e in kept) == ["libgomp.so.1", "libportaudio.so.2", "libz.so.1", "torch/lib/libtorch.so"]


def test_strippable_skips_auditwheel_copies_and_non_elf(tmp_path):
    rules = _load("build_rules")
    for rel in ("torch/lib/libtorch.so", "numpy.libs/libopenblas.so", "notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"\x7fELF" + bytes(60) if rel.endswith(".so") else b"text")
    assert rules.strippable(tmp_path / "torch/lib/libtorch.so")
    assert not rules.strippable(tmp_path / "numpy.libs/libopenblas.so")  # strip corrupts patchelf'd copies
    assert not rules.strippable(tmp_path / "notes.txt")


def test_deb_helpers_parse_ldd_and_dpkg():
    deb = _load("build_deb")
    ldd = ("\tlinux-vdso.so.1 (0x00007ffd)\n\tlibX11.so.6 => /lib/x86_64-linux-gnu/libX11.so.6 (0x7f)\n"
           "\tlibwayland-egl.so.1 => not found\n\t/lib64/ld-linux-x86-64.so.2 (0x7f)\n")
    assert deb.parse_ldd(ldd) == {"libX11.so.6": "/lib/x86_64-linux-gnu/libX11.so.6", "libwayland-egl.so.1": None}
    owners = deb.parse_dpkg_search("libx11-6:amd64: /lib/x86_64-linux-gnu/libX11.so.6\n"
                                   "libc6:amd64, libc6-dbg: /usr/lib/x86_64-linux-gnu/libc.so.6\n")
    assert owners == {"/lib/x86_64-linux-gnu/libX11.so.6": "libx11-6", "/usr/lib/x86_64-linux-gnu/libc.so.6": "libc6"}
    assert "/usr/lib/x86_64-linux-gnu/libc.so.6" in deb.path_variants("/lib/x86_64-linux-gnu/libc.so.6")


# ---------------------------------------------------------------------- the build (slow)
def _offline_prefix() -> list[str]:
    """A command prefix that removes the network (a new, empty network namespace), or skip saying why."""
    for prefix in (["unshare", "-n"], ["unshare", "-rn"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    pytest.skip("cannot remove the network here: `unshare -n` and `unshare -rn` are refused")


def _ensure_pyinstaller() -> None:
    if importlib.util.find_spec("PyInstaller") is not None:
        return
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["packaging"]
    done = _run([sys.executable, "-m", "pip", "install", "-q", *extra], timeout=600)
    if done.returncode != 0:
        pytest.skip(f"PyInstaller cannot be installed: {done.stderr.strip().splitlines()[-1:]}")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """scripts/package.sh from this checkout into a scratch dist folder; the build time is printed."""
    _ensure_pyinstaller()
    dist = tmp_path_factory.mktemp("dist")
    t0 = time.perf_counter()
    done = _run(["bash", ROOT / "scripts" / "package.sh", "--dist", dist, "--no-self-test"], timeout=1500, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    size = sum(p.lstat().st_size for p in (dist / "aura").rglob("*") if not p.is_dir())
    print(f"\nbuild + installers: {time.perf_counter() - t0:.0f} s; folder {size / 1e6:.0f} MB\n{done.stdout}")
    return dist


def _masked(text: str) -> str:
    return re.sub(r"\d+(\.\d+)?", "#", text)


@pytest.mark.slow
def test_frozen_self_test_offline_and_headless(built):
    offline = _offline_prefix()
    frozen_online = _run([built / "aura" / "aura", "--self-test"], env=_user_env())
    frozen = _run([*offline, built / "aura" / "aura", "--self-test"], env=_user_env())
    source = _run([*offline, VENV_BIN / "aura", "--self-test"], env=_user_env())
    runs = {"frozen, network": frozen_online, "frozen, no network": frozen, "source, no network": source}
    for name, done in runs.items():
        print(f"{name}: {_self_test_line(done)}")
    line = _self_test_line(frozen)
    assert line.endswith("; frozen") and "sample_5.wav -> 'tehran'" in line
    assert "PortAudio" in line and "(in the app)" in line  # the bundled PortAudio, not the system's
    assert "network calls 0" in line
    # without the network it prints nothing new (the timings aside)
    assert _masked(frozen.stdout + frozen.stderr) == _masked(frozen_online.stdout + frozen_online.stderr)


@pytest.mark.slow
def test_frozen_gui_self_test(built):
    done = _run([*_offline_prefix(), built / "aura" / "aura-gui", "--self-test"], env=_user_env())
    line = _self_test_line(done)
    print(line)
    assert "Qt offscreen + qxcb plugin, icons" in line and line.endswith("; frozen")


@pytest.mark.slow
def test_frozen_trainer_writes_a_bundle_the_frozen_app_loads(built, tmp_path):
    """`aura train` in the frozen app (PEFT, Accelerate): two steps on the bundled clips, then chat with the result."""
    data = tmp_path / "clips"
    data.mkdir()
    for row in map(json.loads, (BUNDLE / "samples" / "samples.jsonl").read_text().splitlines()):
        shutil.copy(BUNDLE / "samples" / row["audio"], data / row["audio"])
        (data / row["audio"]).with_suffix(".txt").write_text(row["text"])
    aura = built / "aura" / "aura"
    done = _run([aura, "train", "--teacher", BUNDLE / "teacher", "--student", BUNDLE / "base", "--data", data,
                 "--output", tmp_path / "adapter", "--max-steps", "2"], timeout=600, env=_user_env(HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    training = json.loads((tmp_path / "adapter" / "aura_config.json").read_text())["training"]
    assert training["steps"] == 2 and training["final_loss"]["loss"] < training["first_loss"]  # it learns
    for request in (["--text", "tell me the capital of iran"], ["--audio", data / "sample_4.wav"]):
        ask = ["chat", "--bundle", tmp_path / "adapter", *request, "--max-new-tokens", "8"]
        frozen, source = _run([aura, *ask], env=_user_env()), _run([VENV_BIN / "aura", *ask], env=_user_env())
        assert frozen.returncode == 0 and source.returncode == 0, frozen.stderr + source.stderr
        assert frozen.stdout == source.stdout, request  # the frozen build computes what the source tree does
        assert frozen.stdout.strip() or request[0] == "--audio"  # two steps may not be enough to say anything


LINUX_INSTALLERS = pytest.mark.skipif(not (sys.platform.startswith("linux") and shutil.which("dpkg-deb")),
                                      reason="the .deb and .tar.gz are built on Debian-based Linux (dpkg-deb) only")


def _deb(built: Path) -> Path:
    found = sorted(built.glob("aura-assistant_*.deb"))
    assert found, f"no .deb in {built}"
    return found[0]


@pytest.mark.slow
@LINUX_INSTALLERS
def test_deb_metadata_and_files(built):
    deb = _deb(built)
    info = _run(["dpkg-deb", "--field", deb, "Package", "Depends", "Recommends"]).stdout
    print(f"{deb.name}: {deb.stat().st_size / 1e6:.0f} MB\n{info}")
    depends = re.search(r"^Depends: (.*)$", info, re.M).group(1)
    assert "libc6 (>= " in depends and "libxcb1" in depends
    assert "portaudio" not in depends  # it comes inside
    for pkg in re.findall(r"([a-z0-9][a-z0-9.+-]+)(?: \([^)]*\))?(?:,|$)", depends):
        assert _run(["dpkg-query", "-W", pkg]).returncode == 0, f"{pkg}: dpkg -i would refuse the package here"
    contents = _run(["dpkg-deb", "--contents", deb]).stdout
    for path in ("./opt/aura/aura", "./opt/aura/aura-gui", "./usr/share/applications/aura-assistant.desktop",
                 "./usr/share/icons/hicolor/256x256/apps/aura-assistant.png"):
        assert f" {path}\n" in contents or f" {path} " in contents, path
    assert "./usr/bin/aura -> ../../opt/aura/aura" in contents


@pytest.mark.slow
@LINUX_INSTALLERS
def test_deb_unpacked_in_a_scratch_root_runs(built, tmp_path):
    root = tmp_path / "root"
    assert _run(["dpkg", "-x", _deb(built), root]).returncode == 0
    entry = configparser.ConfigParser(interpolation=None)
    entry.read(root / "usr/share/applications/aura-assistant.desktop")
    assert entry["Desktop Entry"]["Exec"].split()[0] == "aura-gui"
    assert (root / "usr/share/icons/hicolor/256x256/apps" / f"{entry['Desktop Entry']['Icon']}.png").is_file()
    before = sorted(p.relative_to(root) for p in (root / "opt").rglob("*"))
    line = _self_test_line(_run([*_offline_prefix(), root / "usr/bin/aura", "--self-test"], env=_user_env()))
    print(f"installed (scratch root): {line}")
    assert sorted(p.relative_to(root) for p in (root / "opt").rglob("*")) == before  # writes nothing where installed


@pytest.mark.slow
@pytest.mark.skipif(not (os.environ.get("CI") and hasattr(os, "geteuid") and os.geteuid() == 0
                         and shutil.which("dpkg")),
                    reason="installs into the real system: only as root in CI (CI=1)")
def test_deb_installed_with_dpkg_runs(built):
    deb = _deb(built)
    installed = _run(["dpkg", "-i", deb], timeout=600)
    assert installed.returncode == 0, installed.stderr
    try:
        line = _self_test_line(_run(["/usr/bin/aura", "--self-test"], env=_user_env()))
        print(f"installed (dpkg -i): {line}")
        _self_test_line(_run(["/usr/bin/aura-gui", "--self-test"], env=_user_env()))
    finally:
        _run(["dpkg", "-r", "aura-assistant"], timeout=600)


@pytest.mark.slow
@LINUX_INSTALLERS
def test_tarball_holds_the_folder(built):
    tarball = sorted(built.glob("aura-*-linux-*.tar.gz"))[0]
    names = set(_run(["tar", "-tzf", tarball]).stdout.splitlines())
    print(f"{tarball.name}: {tarball.stat().st_size / 1e6:.0f} MB")
    assert {"aura/aura", "aura/aura-gui", "aura/_internal/assets/default_bundle/aura_config.json"} <= names
