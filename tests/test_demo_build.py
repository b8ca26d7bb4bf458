"""`aura demo build --quick`: the whole recipe end to end, small (accuracy not asserted, learning is).

The build's fast unit tests (log lines, distillation flags) are in test_demo_parts.py, outside this
slow module."""

from __future__ import annotations

import json
import shutil

import pytest

from aura_model.bundle import read_bundle_config
from app.cli import main

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo-quick")
    ship = tmp_path_factory.mktemp("ship") / "bundle"
    assert main(["demo", "build", "--quick", "--work", str(work), "--ship", str(ship)]) == 0
    return work, ship


def test_every_stage_learns(built):
    work, _ = built
    results = json.loads((work / "results.json").read_text())
    for run, loss in results["losses"].items():
        assert loss["last"] < 0.9 * loss["first"], (run, loss)  # every distillation run's loss falls
    main_run = results["losses"]["AuRA"]
    assert main_run["last"] < 0.6 * main_run["first"], main_run  # the full objective falls clearly
    llm = json.loads((work / "llm" / "llm_report.json").read_text())
    assert llm["loss_last"] < 0.5 * llm["loss_first"]
    asr = json.loads((work / "teacher" / "asr_report.json").read_text())
    assert asr["loss_last"] < 0.7 * asr["loss_first"]
    test = asr["scores"]["test"]
    assert test["n"] == results["n"]  # scored on every clip of the spoken test split the systems were scored on
    assert (test["wer"] > 0) == (test["sentence_error_rate"] > 0)  # a word error is a sentence error, and back
    assert len(test["errors"]) == min(25, round(test["sentence_error_rate"] * test["n"]))
    # the cascade's transcriber is this teacher (stored in fp16 for shipping, which may flip a word or two)
    assert results["teacher_wer"] == pytest.approx(test["wer"], abs=0.05)


def test_report_has_every_system_and_a_plot(built):
    work, _ = built
    md = (work / "report.md").read_text()
    for row in ("text upper bound", "cascade (ASR -> LLM)", "| AuRA |", "no pooling", "no text-state loss",
                "no layer-wise loss", "no response KL",
                "word error rate", "median first token"):
        assert row in md, row
    png = (work / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    results = json.loads((work / "results.json").read_text())
    assert results["systems"]["AuRA"]["n"] == results["n"] > 0
    data = results["data"]  # quick: 2 renditions of each request
    assert data["renditions"] == 2 and data["train_clips"] == 2 * data["train_requests"] > 0
    assert f"Distilled from {data['train_clips']:,} training clips" in md


def test_shipped_bundle_carries_models_samples_and_report(built, capsys):
    _, ship = built
    meta = read_bundle_config(ship)
    assert meta["teacher"]
    teacher_width = json.loads((ship / "teacher" / "config.json").read_text())["d_model"]
    assert meta["model"]["embedding"]["conv_channels"] == teacher_width  # the stem was started from the teacher's
    for rel in ("base/config.json", "base/model.safetensors", "teacher/config.json", "samples/samples.jsonl",
                "report.md", "report.png", "adapter_model.safetensors", "audio_embedding.safetensors"):
        assert (ship / rel).is_file(), rel
    samples = [json.loads(x) for x in (ship / "samples" / "samples.jsonl").read_text().splitlines()]
    assert len({s["family"] for s in samples}) >= 5
    sample = ship / "samples" / samples[0]["audio"]
    assert main(["chat", "--bundle", str(ship), "--audio", str(sample), "--max-new-tokens", "8"]) == 0
    assert capsys.readouterr().out.endswith("\n")  # the shipped bundle loads and answers from audio
    manifest = ship.parent / "m.jsonl"
    manifest.write_text(json.dumps({"audio": str(sample), "answer": samples[0]["answer"]}) + "\n")
    assert main(["eval", "--bundle", str(ship), "--manifest", str(manifest), "--mode", "cascade"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["n"] == 1 and summary["mode"] == "cascade"
