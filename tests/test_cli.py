"""The `aura` command: contract names, streaming to stdout, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from aura_model.assistant import Assistant
from aura_model.config import GenerationSettings, RuntimeConfig
from aura_model.testing import save_tiny_base
from app.cli import main

from helpers import clip, make_bundle, write_wav


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("cli"), "qwen2")[0]


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_wav(tmp_path_factory.mktemp("wav") / "ask.wav", clip(1.1, seed=4))


def _aura(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("aura", path=os.path.dirname(sys.executable)) or shutil.which("aura")
    cmd = [exe] if exe else [sys.executable, "-m", "app.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120)


def test_chat_with_audio_streams_the_models_answer(bundle, wav):
    done = _aura("chat", "--bundle", str(bundle), "--audio", str(wav), "--max-new-tokens", "8", "--stats")
    assert done.returncode == 0, done.stderr
    expected = Assistant.open(bundle, runtime=RuntimeConfig(device="cpu")).answer(
        audio=str(wav), gen=GenerationSettings(max_new_tokens=8))
    assert done.stdout == expected + "\n"
    assert "first token" in done.stderr
    # stderr is aura's own lines only: no library notices (the suite runs offline, where the `kernels` package
    # that transformers loads announces "Skipping publisher trust check ... offline mode")
    assert [line for line in done.stderr.splitlines() if not line.startswith("aura: ")] == []


def test_chat_with_text_and_plain_base(bundle, tmp_path, capsys):
    assert main(["chat", "--bundle", str(bundle), "--text", "hello", "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.endswith("\n")
    base = save_tiny_base(tmp_path / "base", "llama")
    assert main(["chat", "--base", str(base), "--text", "hello", "--max-new-tokens", "4"]) == 0


@pytest.mark.parametrize("case", ["missing", "corrupt", "empty", "silent"])
def test_bad_audio_is_one_line_on_stderr(bundle, tmp_path, capsys, case):
    path = tmp_path / f"{case}.wav"
    if case == "corrupt":
        path.write_bytes(b"RIFF....WAVEfmt garbage")
    elif case == "empty":
        write_wav(path, np.zeros(0, dtype=np.float32))
    elif case == "silent":
        write_wav(path, clip(1.0) * 0)
    code = main(["chat", "--bundle", str(bundle), "--audio", str(path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("aura: error: ") and err.count("\n") == 1, err
    assert path.name in err


def test_missing_bundle_and_mismatched_base(tmp_path, bundle, capsys):
    assert main(["chat", "--bundle", str(tmp_path / "nothing"), "--text", "hi"]) == 1
    assert "does not exist" in capsys.readouterr().err
    other = save_tiny_base(tmp_path / "other", "llama", layers=2)
    assert main(["chat", "--bundle", str(bundle), "--base", str(other), "--text", "hi"]) == 1
    err = capsys.readouterr().err
    assert "tiny-qwen2" in err and "other" in err and "num_hidden_layers 4 vs 2" in err


def test_no_default_bundle_yet_is_explained(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("AURA_ASSETS", str(tmp_path))
    assert main(["chat", "--text", "hi"]) == 1
    assert "--bundle" in capsys.readouterr().err


def test_debug_shows_the_traceback(tmp_path):
    done = _aura("--debug", "chat", "--bundle", str(tmp_path / "nope"), "--text", "hi")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and done.stderr.rstrip().splitlines()[-1].startswith("aura: error:")
    done = _aura("chat", "--audio", "x.wav", "--text", "both")
    assert done.returncode == 2 and "not allowed with argument" in done.stderr  # argparse's own usage error


def test_info_shows_the_bundle(bundle, capsys):
    assert main(["info", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "qwen2, 4 layers x 64 hidden" in out and "r=16" in out and "every layer" in out
    assert "pooling     none (frame-rate" in out
    assert main(["info", str(bundle), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["base"]["id"] == "tiny-qwen2"
    assert data["adapter_and_embedding_parameters"] > 0


def test_info_names_the_token_rate_pooling_of_the_default_bundle(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "pooling     token-rate: layers 1-2 hear the clip" in out and "layers 1,2" in out
    assert "(adapter + audio embedding + pooler)" in out


def test_demo_sentences_lists_json_lines(capsys):
    assert main(["demo", "sentences", "--split", "test"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 100
    first = json.loads(lines[0])
    assert set(first) == {"text", "answer", "family"}
