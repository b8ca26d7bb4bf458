"""Start-up does only what the request needs: no trainer, no PEFT, no bitsandbytes, no Hub kernels, and
no network (the commands work, and say nothing more, with the network removed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "default_bundle" / "samples" / "sample_0.wav"
PROBE = ("import runpy, sys; sys.argv = ['aura'] + sys.argv[1:]; code = 0\n"
         "try:\n    runpy.run_module('app.cli', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
         "print('MODULES', sorted(m for m in ('aura_model.train', 'peft', 'bitsandbytes', 'kernels')"
         " if sys.modules.get(m) is not None), file=sys.stderr); sys.exit(code)\n")


def run_aura(*args: str, no_network: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    cmd = [sys.executable, "-c", PROBE, *args]
    if no_network:
        cmd = ["unshare", "-n", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def split(stderr: str) -> tuple[list[str], str]:
    lines = stderr.strip().splitlines()
    assert lines and lines[-1].startswith("MODULES"), stderr
    return lines[:-1], lines[-1]


@pytest.mark.parametrize("request_args", [("--text", "what is two plus two"), ("--audio", str(SAMPLE))])
def test_chat_imports_only_what_it_needs(request_args):
    done = run_aura("chat", *request_args)
    assert done.returncode == 0, done.stderr
    said, modules = split(done.stderr)
    assert said == [] and modules == "MODULES []"
    assert done.stdout.strip()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="removing the network needs root and unshare")
def test_chat_answers_with_the_network_removed_and_prints_nothing_more():
    online = run_aura("chat", "--audio", str(SAMPLE))
    offline = run_aura("chat", "--audio", str(SAMPLE), no_network=True)
    assert offline.returncode == 0, offline.stderr
    assert offline.stdout == online.stdout and offline.stderr == online.stderr


def test_the_trainer_flags_are_there_when_asked_for():
    done = subprocess.run([sys.executable, "-m", "app.cli", "train", "--help"], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0 and "--distill.w_layer" in done.stdout and "--dataset.follow_links_outside" in done.stdout


def test_importing_the_library_turns_hub_kernels_off():
    code = ("import os, sys, aura_model, transformers; "
            "print(os.environ['USE_HUB_KERNELS'], sys.modules.get('kernels', 'absent'))")
    env = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          check=True)
    assert done.stdout.split() == ["NO", "None"]


def test_the_window_says_when_its_model_is_ready_and_closes(tmp_path):
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-m", "app", "--settings", str(tmp_path / "s.ini"), "--quit-when-ready"],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("aura-gui: model ready ") and done.stdout.rstrip().endswith("s after start")
