"""benchmarks/bench_real_shapes.py still runs: its configurations are the real ones, and a toy-shaped run goes
through every measurement (first token of AuRA, token-rate AuRA, the cascade and the text prefill, memory, decode,
profile, training step) to its JSON, table and plot. No timing is asserted."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")  # what the module would set; undone after the test
    spec = importlib.util.spec_from_file_location("bench_real_shapes", ROOT / "benchmarks" / "bench_real_shapes.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, params", [("qwen2.5-0.5b", 494_032_768), ("qwen2.5-1.5b", 1_543_714_304),
                                          ("llama-3.2-1b", 1_235_814_400)])
def test_llm_configs_have_the_published_sizes(bench, name, params):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(bench.llm_config(name))
    assert sum(p.numel() for p in model.parameters()) == params


@pytest.mark.parametrize("name, params, mels", [("whisper-small", 241_734_912, 80),
                                                ("whisper-large-v3-turbo", 808_878_080, 128)])
def test_whisper_configs_have_the_published_sizes(bench, name, params, mels):
    from transformers import WhisperForConditionalGeneration

    config = bench.whisper_config(name)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == params and config.num_mel_bins == mels


def test_cpu_default_runs_one_pair_and_names_the_skipped(bench):
    pairs, skipped = bench.chosen_pairs(bench.parse_args([]))
    assert pairs == ["qwen2.5-0.5b+whisper-small"] and len(skipped) == len(bench.ALL_PAIRS) - 1
    assert bench.lengths_for(bench.parse_args([]), "4bit") == [5.0]


def test_token_rate_hears_with_a_quarter_of_the_layers_unless_told(bench):
    assert bench.hearing_layers(0, "qwen2.5-0.5b+whisper-small", toy=False) == 6
    assert bench.hearing_layers(0, "llama-3.2-1b+whisper-small", toy=False) == 4
    assert bench.hearing_layers(0, "qwen2.5-0.5b+whisper-small", toy=True) == 1  # 2 toy layers: at least 1
    assert bench.hearing_layers(9, "qwen2.5-0.5b+whisper-small", toy=False) == 9
    with pytest.raises(SystemExit, match="1..23"):
        bench.hearing_layers(24, "qwen2.5-0.5b+whisper-small", toy=False)


class FakeStation:
    def __init__(self, fail: bool = False):
        self.fail, self.closed = fail, False

    def call(self, command: str) -> dict:
        if self.fail:
            raise RuntimeError("the worker ended (exit 1)")
        return {"total": 1.0, "peak": 1, "peak_reset": True, "text_tokens": 6, "prompt_tokens": 40}

    def close(self) -> None:
        self.closed = True


def test_a_failing_token_rate_system_leaves_the_others_measured(bench):
    stations = {"aura": FakeStation(), "token_rate": FakeStation(fail=True), "cascade": FakeStation()}
    failing, errors = stations["token_rate"], {}
    runs = bench.interleaved_runs(stations, [2.0], 2, "none", errors)
    assert set(runs["2"]) == {"aura", "cascade", "text"} and all(len(v) == 2 for v in runs["2"].values())
    assert "token_rate" in errors and failing.closed and "token_rate" not in stations
    result = {"first_token": {}, "memory": {}, "decode": {}}
    bench.add_quant_results(result, "none", {"runs": runs, "errors": errors, "load_peak": {},
                                             "decode": {"rates": {"base": [2.0], "LoRA unmerged": [1.0]}}})
    assert "token_rate" not in result["first_token"]["none"]["2"] and "none token_rate" in result["errors"]


def test_toy_run_measures_everything(bench, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = bench.main(["--toy", "--in-process", "--threads", "1", "--lengths", "2", "--reps", "1", "--quant", "none",
                       "--train-reps", "1", "--work", str(tmp_path / "work"), "--json", str(out),
                       "--plot", str(tmp_path / "r.png")])
    assert code == 0
    pair = json.loads(out.read_text())["pairs"][0]
    row = pair["first_token"]["none"]["2"]
    assert {"aura", "token_rate", "cascade", "text", "aura_over_cascade", "aura_over_text",
            "token_rate_over_cascade", "token_rate_over_text"} <= set(row)
    assert row["cascade"]["asr_tokens"] == row["text_tokens"] + bench.WHISPER_EXTRA_TOKENS
    assert row["aura"]["prompt_tokens"] > row["text"]["prompt_tokens"]
    assert pair["memory"]["none"]["2"]["aura"] > 0 and pair["memory"]["none"]["2"]["cascade"] > 0
    # token-rate AuRA: pass 1 over the audio tokens, the pooler's count, pass 2 over a text-shaped prompt
    rate = row["token_rate"]
    assert pair["token_rate"]["layers"] == 1 and pair["token_rate"]["llm_layers"] == 2
    assert rate["audio_tokens"] == 25 and rate["pooled_tokens"] >= 1  # 2 s at 12.5 audio tokens/s
    # the same prompt as AuRA's around a span of the pooler's count instead of the 12.5/s audio tokens
    assert rate["prompt_tokens"] - rate["pooled_tokens"] == row["aura"]["prompt_tokens"] - rate["audio_tokens"]
    assert abs(rate["pooled_tokens"] - row["text_tokens"]) <= 2  # the pooler's bias set for ~3 tokens/s
    if pair["token_rate"]["calibrated"]:
        assert abs(pair["token_rate"]["tokens_per_s"] - bench.TEXT_TOKENS_PER_S) < 0.05
    assert {"hearing (pass 1)", "pooler", "prefill (pass 2)"} <= set(rate)
    assert pair["memory"]["none"]["2"]["token_rate"] > 0 and "token_rate" in pair["memory"]["none"]["load_peak"]
    anon = pair["memory"]["none"]["load_anon"]  # the steadier CPU figure: below the RSS, not counting mapped files
    assert set(anon) == {"aura", "token_rate", "cascade"}
    assert all(0 < anon[k] <= pair["memory"]["none"]["load_peak"][k] for k in anon)
    assert {"base", "LoRA unmerged", "merged"} <= set(pair["decode"]["none"])
    assert "as shipped" in pair["profile"]["none"]["median_s"]
    assert len(pair["training"]["steps"]) == 1 and "backward" in pair["training"]["steps"][0]
    assert (tmp_path / "r.png").stat().st_size > 0
    # the bundle measured as token-rate AuRA loads as one, through Assistant.open as users load it
    pair_dir = bench.pair_paths(tmp_path / "work", "qwen2.5-0.5b+whisper-small", True, "cpu")
    rated = bench.open_assistant(pair_dir, "cpu", "none", "token_rate", 1)
    assert rated.model.token_rate and rated.model.hearing_layers == 1
    assert rated.config.lora.layers == (1,) and rated.config.pooling.layers == 1
    bias = float(rated.model.pooler.weight.bias[0])
    assert bias == pytest.approx(pair["token_rate"]["bias"], abs=1e-6)
    assert not bench.open_assistant(pair_dir, "cpu", "none", "aura").model.token_rate
    capsys.readouterr()
    assert bench.main(["--from-json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "README rows" in printed and "token-rate AuRA: pass 1" in printed
    assert "anonymous memory after loading" in printed
    assert "AuRA token-rate vs. text" in printed.split("README rows")[1]


def test_reports_of_earlier_runs_without_token_rate_still_print(bench, tmp_path, capsys):
    old = ROOT / "docs" / "real_shapes.json"
    if not old.is_file():
        pytest.skip("no docs/real_shapes.json")
    report = json.loads(old.read_text())
    for pair in report["pairs"]:
        pair.pop("token_rate", None)
        for rows in pair.get("first_token", {}).values():
            for row in rows.values():
                for key in ("token_rate", "token_rate_over_cascade", "token_rate_over_text"):
                    row.pop(key, None)
        for rows in pair.get("memory", {}).values():
            for row in rows.values():
                if isinstance(row, dict):
                    row.pop("token_rate", None)
                    row.pop("token_rate_ratio", None)
    path = tmp_path / "old.json"
    path.write_text(json.dumps(report))
    assert bench.main(["--from-json", str(path), "--plot", str(tmp_path / "old.png")]) == 0
    printed = capsys.readouterr().out
    assert "README rows" in printed and "AuRA token-rate vs. text" not in printed
    assert (tmp_path / "old.png").stat().st_size > 0
