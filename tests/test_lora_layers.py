"""LoraSettings.layers: an adapter on chosen decoder layers only, the others stay the base LLM's."""

from __future__ import annotations

import argparse
import re

import pytest
import torch

from aura_model.bundle import load_bundle, save_bundle
from aura_model.config import LoraSettings, ModelConfig, RuntimeConfig
from aura_model.errors import AuraError
from aura_model.model import attach_lora
from aura_model.testing import save_tiny_base, tiny_llm
from aura_model.train.command import add_arguments, spec_from_args

from helpers import build_model

CPU = RuntimeConfig(device="cpu", quantization="none")


def _adapted_layers(llm) -> set[int]:
    """0-based decoder layers holding a LoRA parameter."""
    found = set()
    for name, _ in llm.named_parameters():
        if "lora_" in name:
            found.add(int(re.search(r"layers\.(\d+)\.", name).group(1)))
    return found


def test_default_adapts_every_layer():
    llm = attach_lora(tiny_llm("llama", layers=4), LoraSettings(r=4))
    assert _adapted_layers(llm) == {0, 1, 2, 3}


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_only_the_named_layers_get_an_adapter(arch):
    llm = attach_lora(tiny_llm(arch, layers=4), LoraSettings(r=4, layers=(2, 1)))
    assert _adapted_layers(llm) == {0, 1}  # 1-based [1, 2], sorted


def test_unadapted_layers_keep_the_base_output(tmp_path):
    """An adapter on layer 1 only changes nothing below it and something above; the base layers are intact."""
    base = save_tiny_base(tmp_path / "base", "llama", layers=3)
    model, _, _ = build_model(base, ModelConfig(lora=LoraSettings(r=4, layers=(2,))))
    ids = torch.tensor([[5, 17, 33, 8, 2]])
    with torch.no_grad():
        adapted = model.llm(input_ids=ids, output_hidden_states=True).hidden_states
        with model.llm.disable_adapter():
            plain = model.llm(input_ids=ids, output_hidden_states=True).hidden_states
    assert torch.equal(adapted[1], plain[1])  # layer 1 has no adapter
    assert not torch.allclose(adapted[2], plain[2])  # layer 2 has (randomised) one


def test_layer_choice_survives_the_bundle_round_trip(tmp_path):
    base = save_tiny_base(tmp_path / "base", "llama", layers=4)
    cfg = ModelConfig(lora=LoraSettings(r=4, layers=(3, 4)))
    model, tok, cfg = build_model(base, cfg)
    bundle = save_bundle(tmp_path / "bundle", model, tok, cfg, base_id="tiny", include_base=base)
    loaded = load_bundle(bundle, runtime=CPU)
    assert _adapted_layers(loaded.model.llm) == {2, 3}
    assert loaded.config.lora.layers == (3, 4)


def test_flag_parses_and_bad_layer_lists_are_named():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    spec = spec_from_args(parser.parse_args(["--teacher", "t", "--student", "s", "--data", "d", "--output", "o", "--lora.layers", "[1,2]"]))
    assert spec.model.lora.layers == (1, 2)
    for bad, match in (((), "non-empty"), ((0, 1), "1-based"), ((2, 2), "must not repeat")):
        with pytest.raises(AuraError, match=match):
            LoraSettings(layers=bad)
    with pytest.raises(AuraError, match=r"LoRA layers \[5\]: the student LLM has 4 layers \(valid: 1..4\)"):
        attach_lora(tiny_llm("llama", layers=4), LoraSettings(r=4, layers=(4, 5)))
