"""Hand-made bad inputs against the real `aura` commands: each one a clean one-line error, never the
generic `unexpected error` line, and nothing of the user's lost."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from app.cli import main
from aura_model.testing import make_clip_folder, save_tiny_base, save_tiny_whisper

from helpers import clip, make_bundle, write_wav


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad-inputs")
    bundle, base = make_bundle(root)
    return {"root": root, "bundle": bundle, "base": base, "whisper": save_tiny_whisper(root / "whisper"),
            "student": save_tiny_base(root / "student"), "clips": make_clip_folder(root / "clips", 6),
            "wav": write_wav(root / "ok.wav", clip(1.0))}


def broken_bundle(world, tmp: Path, how: str) -> Path:
    b = Path(shutil.copytree(world["bundle"], tmp / f"bundle-{how}"))
    meta = json.loads((b / "aura_config.json").read_text())
    if how == "fingerprint":
        meta["base"]["fingerprint"]["hidden_size"] = 7
    elif how == "no-fingerprint-key":
        del meta["base"]["fingerprint"]["vocab_size"]
    elif how == "format":
        meta["format_version"] = 99
    elif how == "not-json":
        (b / "aura_config.json").write_text("{ not json")
        return b
    elif how == "no-adapter":
        (b / "adapter_model.safetensors").unlink()
    elif how == "corrupt-adapter":
        data = bytearray((b / "adapter_model.safetensors").read_bytes())
        data[-64:] = os.urandom(64)
        (b / "adapter_model.safetensors").write_bytes(bytes(data))
    elif how == "truncated-embedding":
        (b / "audio_embedding.safetensors").write_bytes((b / "audio_embedding.safetensors").read_bytes()[:40])
    elif how == "no-config":
        (b / "aura_config.json").unlink()
        return b
    (b / "aura_config.json").write_text(json.dumps(meta))
    return b


def audio_case(tmp: Path, how: str) -> Path:
    path = tmp / f"{how}.wav"
    if how == "missing":
        return path
    if how == "empty":
        path.write_bytes(b"")
    elif how == "garbage":
        path.write_bytes(os.urandom(3000))
    elif how == "silent":
        sf.write(str(path), np.zeros(16000, np.float32), 16000)
    elif how == "too-long":
        sf.write(str(path), (np.random.default_rng(0).standard_normal(16000 * 31) * 0.1).astype(np.float32), 16000)
    elif how == "fifo":
        os.mkfifo(path)
    elif how == "folder":
        path.mkdir()
    elif how == "text-file":
        path.write_text("hello")
    elif how == "zero-rate-header":
        path.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00" + b"\x00" * 16)
    return path


BUNDLE_CASES = ["fingerprint", "no-fingerprint-key", "format", "not-json", "no-adapter", "corrupt-adapter",
                "truncated-embedding", "no-config"]
AUDIO_CASES = ["missing", "empty", "garbage", "silent", "too-long", "fifo", "folder", "text-file", "zero-rate-header"]
MANIFEST_CASES = {
    "not-json": "nope\n", "not-object": "[1, 2]\n", "no-answer": '{"audio": "ok.wav"}\n',
    "answer-null": '{"text": "x", "answer": null}\n', "audio-number": '{"audio": 5, "answer": "x"}\n',
    "text-list": '{"text": ["x"], "answer": "x"}\n', "missing-clip": '{"audio": "gone.wav", "answer": "x"}\n',
    "empty": "\n\n",
}


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 1, (argv, code, err)
    lines = [line for line in err.splitlines() if line.startswith(("aura: error: ", "aura train: error: "))]
    assert len(lines) == 1 and "unexpected error" not in err, err
    return lines[0]


@pytest.mark.parametrize("how", BUNDLE_CASES)
@pytest.mark.parametrize("command", ["chat", "info"])
def test_broken_bundles(world, tmp_path, capsys, command, how):
    bundle = broken_bundle(world, tmp_path, how)
    argv = ["info", str(bundle)] if command == "info" else ["chat", "--bundle", str(bundle), "--text", "hi"]
    one_line_error(capsys, argv)


@pytest.mark.parametrize("how", AUDIO_CASES)
@pytest.mark.timeout(120)
def test_bad_audio_for_chat(world, tmp_path, capsys, how):
    message = one_line_error(capsys, ["chat", "--bundle", str(world["bundle"]), "--audio", str(audio_case(tmp_path, how))])
    assert f"{how}.wav" in message


@pytest.mark.parametrize("how", list(MANIFEST_CASES))
def test_bad_manifests_for_eval(world, tmp_path, capsys, how):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(MANIFEST_CASES[how])
    shutil.copy(world["wav"], tmp_path / "ok.wav")
    message = one_line_error(capsys, ["eval", "--bundle", str(world["bundle"]), "--manifest", str(manifest)])
    assert "m.jsonl" in message


TRAIN_CASES = ["output-is-data", "output-user-folder", "output-a-file", "missing-teacher", "student-no-template",
               "teacher-not-audio", "empty-data", "bad-flag-value", "unknown-setting", "resume-without-checkpoint",
               "config-not-yaml", "layer-map-too-deep"]


def train_argv(world, tmp: Path, how: str) -> list[str]:
    out = tmp / "adapter"
    paths = {"teacher": str(world["whisper"]), "student": str(world["student"]), "data": str(world["clips"]),
             "output": str(out)}
    extra = ["--train.num_threads", "1", "--max-steps", "1", "--train.cache_dir", str(tmp / "cache")]
    if how == "output-is-data":
        paths["output"] = paths["data"]
    elif how == "output-user-folder":
        out.mkdir()
        (out / "thesis.txt").write_text("mine")
    elif how == "output-a-file":
        out.write_text("mine")
    elif how == "missing-teacher":
        paths["teacher"] = str(tmp / "no-such-teacher")
    elif how == "student-no-template":
        plain = Path(shutil.copytree(world["student"], tmp / "plain"))
        cfg = json.loads((plain / "tokenizer_config.json").read_text())
        cfg.pop("chat_template", None)
        (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
        for f in plain.glob("chat_template*"):
            f.unlink()
        paths["student"] = str(plain)
    elif how == "teacher-not-audio":
        paths["teacher"] = str(world["student"])
    elif how == "empty-data":
        (tmp / "nothing").mkdir()
        paths["data"] = str(tmp / "nothing")
    elif how == "bad-flag-value":
        extra += ["--train.lr", "fast"]
    elif how == "unknown-setting":
        extra += ["--train.speed", "3"]
    elif how == "resume-without-checkpoint":
        extra += ["--resume"]
    elif how == "config-not-yaml":
        (tmp / "run.yaml").write_text("train: [unclosed")
        extra += ["--config", str(tmp / "run.yaml")]
    elif how == "layer-map-too-deep":
        extra += ["--distill.layer_map", "[[9, 1]]"]
    return ["train", *(x for k, v in paths.items() for x in (f"--{k}", v)), *extra]


@pytest.mark.parametrize("how", TRAIN_CASES)
def test_bad_training_setups(world, tmp_path, capsys, how):
    argv = train_argv(world, tmp_path, how)
    if how in ("bad-flag-value", "unknown-setting"):  # the command line itself: argparse's usage error, exit 2
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
        assert code in (1, 2) and "error: " in err and "unexpected error" not in err and "Traceback" not in err, err
        return
    one_line_error(capsys, argv)
    if how == "output-user-folder":
        assert (tmp_path / "adapter" / "thesis.txt").read_text() == "mine"
    if how == "output-a-file":
        assert (tmp_path / "adapter").read_text() == "mine"
