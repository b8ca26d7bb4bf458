"""benchmarks/bench_real_shapes.py still runs: its configurations are the real ones, and a toy-shaped run goes
through every measurement (first token, memory, decode, profile, training step) to its JSON, table and plot.
No timing is asserted."""

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


def test_toy_run_measures_everything(bench, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = bench.main(["--toy", "--in-process", "--lengths", "2", "--reps", "1", "--quant", "none",
                       "--train-reps", "1", "--work", str(tmp_path / "work"), "--json", str(out),
                       "--plot", str(tmp_path / "r.png")])
    assert code == 0
    pair = json.loads(out.read_text())["pairs"][0]
    row = pair["first_token"]["none"]["2"]
    assert {"aura", "cascade", "text", "aura_over_cascade", "aura_over_text"} <= set(row)
    assert row["cascade"]["asr_tokens"] == row["text_tokens"] + bench.WHISPER_EXTRA_TOKENS
    assert row["aura"]["prompt_tokens"] > row["text"]["prompt_tokens"]
    assert pair["memory"]["none"]["2"]["aura"] > 0 and pair["memory"]["none"]["2"]["cascade"] > 0
    assert {"base", "LoRA unmerged", "merged"} <= set(pair["decode"]["none"])
    assert "as shipped" in pair["profile"]["none"]["median_s"]
    assert len(pair["training"]["steps"]) == 1 and "backward" in pair["training"]["steps"][0]
    assert (tmp_path / "r.png").stat().st_size > 0
    assert bench.main(["--from-json", str(out)]) == 0
    assert "README rows" in capsys.readouterr().out
