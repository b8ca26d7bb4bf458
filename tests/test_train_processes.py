"""The trainer as a process: SIGKILL then --resume, and `accelerate launch` with two processes on the CPU."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from aura_model.bundle import load_bundle, read_bundle_config
from aura_model.config import RuntimeConfig
from aura_model.testing import make_clip_folder, save_tiny_base, save_tiny_whisper
from aura_model.train import ListReporter, build_spec, train

from helpers import assert_close

REPO = Path(__file__).resolve().parents[1]
TINY = {"train.num_threads": "1", "embedding.conv_channels": "32", "lora.r": "8", "train.response_max_tokens": "6",
        "train.lr": "3e-3", "train.val_fraction": "0.2"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("procs")
    return {"base": save_tiny_base(root / "base"), "whisper": save_tiny_whisper(root / "whisper"),
            "clips": make_clip_folder(root / "clips", 10), "cache": root / "cache"}


def flags(world, out, knobs):
    argv = ["--teacher", str(world["whisper"]), "--student", str(world["base"]), "--data", str(world["clips"]),
            "--output", str(out), "--progress-json", f"--train.cache_dir={world['cache']}"]
    return argv + [f"--{k}={v}" for k, v in {**TINY, **knobs}.items()]


def env():
    e = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", CUDA_VISIBLE_DEVICES="")
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), e.get("PYTHONPATH")]))
    return e


def weights(bundle: Path) -> dict:
    out = {}
    for name in ("adapter_model.safetensors", "audio_embedding.safetensors"):
        out.update({f"{name}:{k}": v for k, v in load_file(str(bundle / name)).items()})
    return out


@pytest.mark.slow
def test_sigkill_after_a_checkpoint_then_resume_ends_with_the_uninterrupted_weights(world, tmp_path):
    knobs = {"train.max_steps": "40", "train.batch_size": "3", "train.checkpoint_every": "5",
             "train.deterministic": "true", "train.eval_every": "15", "train.scheduler": "linear",
             "train.warmup_steps": "3"}
    whole = tmp_path / "whole"
    train(build_spec(None, {**TINY, **knobs, "train.cache_dir": str(world["cache"])},
                     {"teacher": str(world["whisper"]), "student": str(world["base"]), "data": str(world["clips"]),
                      "output": str(whole)}), ListReporter())

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "aura_model.train", *flags(world, out, knobs)]
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env(), cwd=REPO)
        killed_after = None
        for line in proc.stdout:
            event = json.loads(line)
            if event["event"] == "checkpoint":
                proc.send_signal(signal.SIGKILL)
                killed_after = event["step"]
                break
        proc.wait(timeout=120)
    assert killed_after == 5, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()  # it really died before the end

    resumed = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    events = [json.loads(line) for line in resumed.stdout.splitlines()]
    steps = [e["step"] for e in events if e["event"] == "progress" and e["stage"] == "train"]
    assert steps[0] > killed_after and steps[0] % 5 == 1 and steps[-1] == 40  # picked up at its last checkpoint
    assert read_bundle_config(out)["training"]["resumed_from_step"] == steps[0] - 1
    a, b = weights(whole), weights(out)
    assert a.keys() == b.keys() and len(a) > 10
    for k in a:
        assert_close(b[k], a[k], atol=1e-6, rtol=0, what=k)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_accelerate_launch_with_two_processes_writes_one_bundle(world, tmp_path):
    out = tmp_path / "bundle"
    # On a machine without GPUs, `--multi_gpu` is what makes accelerate start N processes (torchrun);
    # the trainer then sees no CUDA and runs them on the CPU (gloo).
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "aura_model.train",
           *flags(world, out, {"train.max_steps": "4", "train.batch_size": "2", "train.eval_every": "2",
                               "train.checkpoint_every": "2"})]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events].count("finished") == 1  # one process reports
    evals = [e for e in events if e["event"] == "eval"]
    assert [e["val_items"] for e in evals] == [2, 2]  # one validation clip per process, summed across both
    training = read_bundle_config(out)["training"]
    assert training["num_processes"] == 2
    assert training["samples_seen"] == 4 * 2 * 2  # 4 steps x batch 2 x 2 processes
    ckpt = out.with_name(out.name + ".checkpoints") / "step-00000004"
    assert (ckpt / "rng-0.safetensors").is_file() and (ckpt / "rng-1.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    load_bundle(out, RuntimeConfig(device="cpu"))  # a valid bundle


PARENT = """
import subprocess, sys, time
err = open(sys.argv[1], "w")
child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=err, text=True)
print(child.pid, flush=True)
for line in child.stdout:
    if '"stage": "train"' in line:
        print("training", flush=True)
        break
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's zombie may wait a while for a reaper in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux) to watch the orphan")
def test_a_trainer_whose_app_is_killed_writes_a_checkpoint_and_exits(world, tmp_path):
    """The desktop app starts `aura train --exit-with-parent`; SIGKILL on the app must not leave an orphan."""
    import time

    out = tmp_path / "bundle"
    trainer = [sys.executable, "-m", "aura_model.train", "--exit-with-parent",
               *flags(world, out, {"train.max_steps": "100000", "train.batch_size": "2", "train.eval_every": "0"})]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "stderr.txt"), *trainer],
                              stdout=subprocess.PIPE, text=True, env=env(), cwd=REPO)
    try:
        pid = int(parent.stdout.readline())
        assert parent.stdout.readline().strip() == "training", (tmp_path / "stderr.txt").read_text()[-2000:]
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 120
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(pid), "the trainer outlived the app that started it"
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    checkpoints = list(out.with_name(out.name + ".checkpoints").glob("step-*/state.json"))
    assert len(checkpoints) == 1, (tmp_path / "stderr.txt").read_text()[-2000:]
    assert not out.exists()  # stopped, not finished
