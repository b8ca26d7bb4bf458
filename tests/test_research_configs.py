"""research/experiments/*.yaml: every experiment config is one the trainer accepts, and replay.py builds its commands.

No training runs here: the trainer section goes through the trainer's own config reader (``build_spec``, the
code behind ``--config``), and ``replay.py --dry-run`` only prints what it would run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from aura_model.train.config import build_spec

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((ROOT / "research" / "experiments").glob("*.yaml"))
FAMILIES = {"arithmetic", "calendar", "capital", "smart_home", "timer", "unit_conversion"}


def _replay():
    spec = importlib.util.spec_from_file_location("replay", ROOT / "research" / "replay.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


replay = _replay()


def test_there_are_experiment_configs():
    assert len(EXPERIMENTS) >= 20
    assert (ROOT / "research" / "experiments" / "shipped.yaml") in EXPERIMENTS


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_config_is_complete(path):
    exp = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert exp["name"] == path.stem
    assert exp["what"] and exp["verdict"]
    assert set(exp["trainer"]) <= {"audio", "embedding", "lora", "prompt", "pooling", "distill", "train", "dataset"}, \
        "the trainer section holds settings only; replay.py passes the paths"
    assert exp["trainer"]["train"]["max_steps"] > 0
    extra = (exp.get("data") or {}).get("extra_arithmetic")
    assert extra is None or (isinstance(extra, int) and extra >= 0)
    reported = exp["reported"]
    assert reported["split"] in ("test", "valid")
    assert reported["measured"] and reported["llm"]
    assert reported["accuracy"] is not None or reported.get("val"), "report an accuracy or a validation metric"
    assert set(reported.get("by_family") or {}) <= FAMILIES
    if reported.get("val"):
        assert reported["val"]["step"] <= exp["trainer"]["train"]["max_steps"]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_trainer_accepts_the_settings(path, tmp_path):
    exp = replay.load_experiment(path)
    for steps in (None, 20):
        settings = replay.trainer_settings(exp, steps)
        config = tmp_path / "trainer.yaml"
        config.write_text(yaml.safe_dump(settings))
        spec = build_spec(config, paths={"teacher": "t", "student": "s", "data": "d", "output": "o"})
        assert spec.train.max_steps == (steps or exp["trainer"]["train"]["max_steps"])
        for section, values in settings.items():
            for name, value in values.items():
                got = getattr(spec.section(section), name)
                if isinstance(got, tuple):
                    got = [list(v) if isinstance(v, tuple) else v for v in got]
                assert got == value, f"{section}.{name}: {got!r} != {value!r}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_dry_run_prints_the_commands_and_writes_nothing(path, tmp_path, capsys):
    work, data = tmp_path / "work", tmp_path / "data"
    assert replay.main([str(path), "--dry-run", "--work", str(work), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    train = [line for line in lines if " -m aura_model.train " in line]
    assert len(train) == 1 and f"--config {work}/runs/{path.stem}/trainer.yaml" in train[0]
    assert f"--data {data}/train" in train[0] or f"--data {work}/extra-" in train[0]
    evaluate = [line for line in lines if " -m app.cli eval " in line]
    split = yaml.safe_load(path.read_text())["reported"]["split"]
    assert len(evaluate) == 1 and f"--manifest {data}/{split}/manifest.jsonl" in evaluate[0]
    assert "synthesize_all" in out
    assert not work.exists() and not data.exists()


def test_notes_index_every_experiment():
    notes = (ROOT / "research" / "NOTES.md").read_text(encoding="utf-8")
    missing = [p.stem for p in EXPERIMENTS if f"](experiments/{p.name})" not in notes]
    assert not missing, f"research/NOTES.md does not link {missing}"
