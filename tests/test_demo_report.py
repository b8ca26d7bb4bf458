"""The demo build's record of its own cost over sittings, and the report that shows it (aura_model/demo/report.py)."""

from __future__ import annotations

import json

import pytest

from aura_model.demo.report import BuildClock, report_markdown


def _sitting(work, stages, lines):
    clock = BuildClock(work, lines.append)
    for name, kwargs in stages:
        with clock.stage(name, **kwargs):
            pass
    return clock


def test_stage_time_adds_up_over_sittings_and_an_interrupted_stage_counts(tmp_path, monkeypatch):
    now = iter([0.0, 10.0, 10.0, 40.0, 100.0, 107.0, 107.0, 110.0, 200.0, 205.0])
    monkeypatch.setattr("aura_model.demo.report.time.time", lambda: next(now))
    lines: list[str] = []
    first = BuildClock(tmp_path, lines.append)
    with first.stage("1. synth"):
        pass  # 10 s
    with pytest.raises(KeyboardInterrupt):  # the build is stopped inside the long stage
        with first.stage("5. distil"):
            raise KeyboardInterrupt  # 30 s
    second = _sitting(tmp_path, [("1. synth", {"reused": True}), ("5. distil", {})], lines)  # 7 s, 3 s
    assert second.stages["1. synth"] == {"seconds": 17.0, "sittings": 2, "worked": True}
    assert second.stages["5. distil"] == {"seconds": 33.0, "sittings": 2, "worked": True}
    with BuildClock(tmp_path, lines.append).stage("6. evaluate", redone=True):
        pass  # 5 s
    saved = json.loads((tmp_path / "timings.json").read_text())["stages"]
    assert list(saved) == ["1. synth", "5. distil", "6. evaluate"]
    assert "== 1. synth (reused from an earlier sitting)" in lines


def test_a_redone_stage_keeps_only_its_last_sitting_and_a_reused_one_says_so(tmp_path, monkeypatch):
    now = iter([0.0, 50.0, 50.0, 51.0, 100.0, 160.0, 160.0, 161.0])
    monkeypatch.setattr("aura_model.demo.report.time.time", lambda: next(now))
    lines: list[str] = []
    _sitting(tmp_path, [("6. evaluate", {"redone": True}), ("1. synth", {"reused": True})], lines)
    clock = _sitting(tmp_path, [("6. evaluate", {"redone": True}), ("1. synth", {"reused": True})], lines)
    assert clock.stages["6. evaluate"] == {"seconds": 60.0, "sittings": 1, "worked": True}
    assert clock.stages["1. synth"] == {"seconds": 2.0, "sittings": 2, "worked": False}
    md = report_markdown(_results(), {"stages": clock.stages, "params": {"LLM": 1}}, ["arithmetic"])
    assert "| 1. synth | 2 (reused) | 2 |" in md and "| 6. evaluate | 60 | 1 |" in md
    assert "over the build's 2 sitting(s)" in md


def test_a_broken_timings_file_starts_a_new_record(tmp_path):
    (tmp_path / "timings.json").write_text("{not json")
    assert BuildClock(tmp_path).stages == {}


def _results() -> dict:
    row = {"accuracy": 0.5, "accuracy_by_family": {"arithmetic": 0.5}, "median_first_token_s": 0.01}
    return {"systems": {"text upper bound": row, "cascade (ASR -> LLM)": row, "AuRA": row}, "teacher_wer": 0.03,
            "n": 2}


def test_report_shows_each_runs_training_time_and_the_data():
    extra = {"runs": {"AuRA": 3600.4, "AuRA, no pooling": 1800.0}, "params": {"LLM": 1_820_352},
             "data": {"train_clips": 8, "train_requests": 4, "renditions": 2}}
    md = report_markdown(_results(), extra, ["arithmetic"])
    assert "| AuRA | 3600 |" in md and "| AuRA, no pooling | 1800 |" in md
    assert "Distilled from 8 training clips: 4 requests, 2 rendition(s) each." in md
    assert "| LLM | 1,820,352 |" in md
    assert "wall seconds" not in md  # no stage record given, no stage table
