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
