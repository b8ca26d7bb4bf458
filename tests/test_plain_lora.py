"""The bundle's LoRA applied without PEFT (aura_model/lora.py) computes what PEFT computes, and loading a
plain bundle imports neither peft nor bitsandbytes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aura_model import backends, lora
from aura_model.assistant import Assistant
from aura_model.bundle import load_embedding, load_llm, read_bundle_config
from aura_model.config import ModelConfig, RuntimeConfig
from aura_model.model import AuraModel

from helpers import assert_close, clip, make_bundle

CPU = RuntimeConfig(device="cpu", quantization="none")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("plain"), "qwen2")


def peft_model(bundle_dir: Path, base_dir: Path, runtime: RuntimeConfig) -> AuraModel:
    """The same bundle loaded the PEFT way (the reference)."""
    from peft import PeftModel

    meta = read_bundle_config(bundle_dir)
    cfg = ModelConfig.from_dict(meta["model"])
    resolved = backends.resolve(runtime)
    llm = PeftModel.from_pretrained(load_llm(base_dir, resolved), str(bundle_dir), is_trainable=False).eval()
    embedding = load_embedding(bundle_dir, cfg, llm.get_input_embeddings().weight.shape[1], resolved.device)
    return AuraModel(llm, embedding, cfg.prompt.audio_attention)


def logits(model: AuraModel, asst: Assistant, audio) -> torch.Tensor:
    p = asst.prepare([audio], ["and this"])
    e = p.encoded
    with torch.no_grad():
        return model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans, p.features,
                     p.frame_lengths).logits[0]


@pytest.mark.parametrize("quantization", ["none", "4bit"])
def test_plain_lora_equals_peft_with_the_adapter_on_and_off(bundle, quantization):
    if quantization == "4bit" and not backends.bitsandbytes_available():
        pytest.skip("bitsandbytes is not installed")
    runtime = RuntimeConfig(device="cpu", quantization=quantization)
    asst = Assistant.open(bundle[0], runtime=runtime)
    assert asst.model.lora is not None, "a bundle from aura train should load without PEFT"
    reference = peft_model(bundle[0], bundle[1], runtime)
    audio = clip(1.1, seed=4)
    assert_close(logits(asst.model, asst, audio), logits(reference, asst, audio), atol=1e-5, what="adapter on")
    with asst.model.adapter_disabled(), reference.adapter_disabled():
        assert_close(logits(asst.model, asst, audio), logits(reference, asst, audio), atol=1e-5, what="adapter off")
    on = logits(asst.model, asst, audio)
    with asst.model.adapter_disabled():
        assert (logits(asst.model, asst, audio) - on).abs().max() > 1e-3  # the switch really switches


def test_plain_lora_state_dict_is_the_files_own(bundle):
    from safetensors.torch import load_file

    asst = Assistant.open(bundle[0], runtime=CPU)
    saved = load_file(str(bundle[0] / "adapter_model.safetensors"))
    mine = asst.model.lora.state_dict()
    assert set(mine) == set(saved)
    for key in saved:
        assert torch.equal(mine[key], saved[key]), key


@pytest.mark.parametrize("setting", [{"use_dora": True}, {"bias": "lora_only"}, {"rank_pattern": {"q_proj": 4}}])
def test_settings_the_plain_path_does_not_apply_are_named(setting):
    assert lora.unsupported({"peft_type": "LORA", **setting}) == ", ".join(f"{k}={v!r}" for k, v in setting.items())


def test_peft_defaults_written_as_null_or_empty_count_as_plain(bundle):
    config = json.loads((bundle[0] / "adapter_config.json").read_text())
    assert lora.unsupported(config) is None
    assert lora.unsupported({**config, "modules_to_save": [], "rank_pattern": None}) is None


def test_an_adapter_with_other_settings_loads_through_peft(bundle, tmp_path):
    copy = Path(shutil.copytree(bundle[0], tmp_path / "rslora"))
    config = json.loads((copy / "adapter_config.json").read_text())
    config["alpha_pattern"] = {"nonexistent_module": 3}  # PEFT applies per-module alphas; the plain path does not
    (copy / "adapter_config.json").write_text(json.dumps(config))
    asst = Assistant.open(copy, runtime=CPU)
    assert asst.model.lora is None and asst.model.has_adapter  # PEFT's PeftModel
    plain = Assistant.open(bundle[0], runtime=CPU)
    audio = clip(0.9, seed=2)
    assert_close(logits(asst.model, asst, audio), logits(plain.model, plain, audio), atol=1e-5, what="peft vs plain")


def test_weights_that_do_not_fit_the_base_are_refused(bundle, tmp_path):
    from safetensors.torch import load_file, save_file

    from aura_model.errors import AuraError

    copy = Path(shutil.copytree(bundle[0], tmp_path / "bad"))
    state = load_file(str(copy / "adapter_model.safetensors"))
    key = sorted(k for k in state if k.endswith("q_proj.lora_A.weight"))[0]
    state[key.replace("q_proj", "no_such_proj")] = state.pop(key)
    save_file(state, str(copy / "adapter_model.safetensors"))
    meta = json.loads((copy / "aura_config.json").read_text())
    del meta["checksums"]
    (copy / "aura_config.json").write_text(json.dumps(meta))
    with pytest.raises(AuraError, match="does not fit base model"):
        Assistant.open(copy, runtime=CPU)


def test_loading_a_bundle_imports_neither_peft_nor_bitsandbytes(bundle):
    code = (f"import sys; from aura_model.assistant import Assistant; from aura_model.config import RuntimeConfig; "
            f"a = Assistant.open({str(bundle[0])!r}, runtime=RuntimeConfig(device='cpu')); "
            f"a.answer(text='hi'); print(sorted(m for m in ('peft', 'bitsandbytes') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
