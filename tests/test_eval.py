"""`aura eval`: manifests, modes, exact match after normalisation, one summary line."""

from __future__ import annotations

import json

import pytest

from aura_model.assistant import Assistant
from aura_model.config import GenerationSettings, RuntimeConfig
from aura_model.errors import AuraError
from aura_model.evaluate import is_correct, read_manifest
from app.cli import main

from helpers import clip, make_bundle, write_wav


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("eval")
    bundle, _ = make_bundle(tmp, "llama")
    asst = Assistant.open(bundle, runtime=RuntimeConfig(device="cpu"))
    gen = GenerationSettings(max_new_tokens=6)
    rows = []
    for i in range(3):
        wav = write_wav(tmp / f"a{i}.wav", clip(0.8 + 0.3 * i, seed=i))
        # the expected answer of item 0 is what the model really says, so exactly one item is right
        answer = asst.answer(audio=str(wav), gen=gen) if i == 0 else "no such answer"
        rows.append({"audio": wav.name, "answer": answer, "family": "f"})
    manifest = tmp / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text_manifest = tmp / "t.jsonl"
    with asst.model.adapter_disabled():
        said = asst.answer(text="hello", gen=gen)
    text_manifest.write_text(json.dumps({"text": "hello", "answer": said.upper() + " ."}) + "\n")
    return bundle, manifest, text_manifest


def _run(capsys, *args):
    code = main(["eval", *args, "--max-new-tokens", "6"])
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines()], out.err


def test_aura_mode_scores_each_item_and_summarises(setup, capsys):
    bundle, manifest, _ = setup
    code, lines, err = _run(capsys, "--bundle", str(bundle), "--manifest", str(manifest))
    assert code == 0, err
    items, summary = lines[:-1], lines[-1]
    assert [r["correct"] for r in items] == [True, False, False]
    assert all(r["first_token_s"] > 0 for r in items)
    assert summary["summary"] is True and summary["n"] == 3
    assert summary["accuracy"] == pytest.approx(1 / 3)
    assert summary["median_first_token_s"] == sorted(r["first_token_s"] for r in items)[1]


def test_text_mode_uses_the_base_model_and_normalises(setup, capsys):
    bundle, _, text_manifest = setup
    code, lines, _ = _run(capsys, "--bundle", str(bundle), "--manifest", str(text_manifest), "--mode", "text")
    assert code == 0
    assert lines[0]["correct"] is True  # "ANSWER ." matches "answer" after normalisation
    assert lines[-1]["accuracy"] == 1.0


def test_bad_manifests_are_clear_errors(tmp_path, setup, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "x.wav"}\n')
    with pytest.raises(AuraError, match='needs "answer"'):
        read_manifest(bad)
    bad.write_text("not json\n")
    code, _, err = _run(capsys, "--bundle", str(setup[0]), "--manifest", str(bad))
    assert code == 1 and "bad.jsonl:1: not valid JSON" in err
    with pytest.raises(AuraError, match="not found"):
        read_manifest(tmp_path / "none.jsonl")


def test_normalisation_rules():
    assert is_correct("OK, the kitchen fan is off.", "ok the kitchen fan is off")
    assert is_correct(" 22. ", "22")
    assert not is_correct("2.2", "22")


@pytest.mark.parametrize("line, message", [
    ('{"audio": 7, "answer": "x"}', '"audio" must be a string, got 7'),
    ('{"audio": ["a.wav"], "answer": "x"}', '"audio" must be a string, got ["a.wav"]'),
    ('{"text": 12, "answer": "x"}', '"text" must be a string, got 12'),
    ('{"text": "hi", "answer": null}', '"answer" must be text (or a number), got null'),
    ('{"text": "hi", "answer": ["a"]}', '"answer" must be text (or a number)'),
    ('["text", "answer"]', "each line must be a JSON object, got list"),
])
def test_wrong_field_types_name_the_line_and_the_field(tmp_path, setup, capsys, line, message):
    bad = tmp_path / "types.jsonl"
    bad.write_text('{"text": "fine", "answer": "x"}\n' + line + "\n")
    code, _, err = _run(capsys, "--bundle", str(setup[0]), "--manifest", str(bad))
    assert code == 1 and f"types.jsonl:2: {message}" in err
    assert "unexpected error" not in err


def test_a_numeric_answer_is_read_as_its_text(tmp_path):
    ok = tmp_path / "n.jsonl"
    ok.write_text('{"text": "two plus two", "answer": 4}\n')
    assert read_manifest(ok)[0].answer == "4"


def test_a_non_utf8_manifest_names_the_line(tmp_path, setup, capsys):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes('{"text": "ok", "answer": "x"}\n{"text": "caf\u00e9", "answer": "x"}\n'.encode("latin-1"))
    code, _, err = _run(capsys, "--bundle", str(setup[0]), "--manifest", str(bad))
    assert code == 1 and "latin1.jsonl:2: not UTF-8 text (byte 0xe9)" in err


def test_missing_audio_is_found_before_the_model_loads(tmp_path, capsys, monkeypatch):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"audio": "here.wav", "answer": "x"}\n{"audio": "gone.wav", "answer": "x"}\n')
    write_wav(tmp_path / "here.wav", clip(0.5))
    monkeypatch.setattr(Assistant, "open", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    code, _, err = _run(capsys, "--manifest", str(manifest))
    assert code == 1 and "m.jsonl:2:" in err and "gone.wav: audio file not found" in err


def test_an_item_failing_midway_still_prints_the_summary_of_the_items_done(tmp_path, setup, capsys):
    bundle, manifest, _ = setup
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")  # passes the existence check, fails when decoded
    rows = [{**rows[0], "audio": str(manifest.parent / rows[0]["audio"])}, {"audio": str(broken), "answer": "x"}]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, lines, err = _run(capsys, "--bundle", str(bundle), "--manifest", str(mixed))
    assert code == 1 and "mixed.jsonl:2: " in err and "cannot read audio" in err
    summary = lines[-1]
    assert summary["incomplete"] is True and summary["n"] == 1 and summary["accuracy"] == 1.0
    assert summary["stopped_at"].endswith("mixed.jsonl:2")
