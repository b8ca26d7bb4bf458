"""The CUDA path: the LLM in 4-bit NF4 (bitsandbytes) with bf16 compute, as users run it. Skipped without a GPU."""

from __future__ import annotations

import pytest
import torch

from aura_model.assistant import Assistant
from aura_model.config import GenerationSettings, RuntimeConfig

from helpers import clip, make_bundle

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    bundle_dir, _ = make_bundle(tmp_path_factory.mktemp("cuda"), "llama", hidden=128, intermediate=256)
    return bundle_dir


def _logits(asst: Assistant, wave) -> torch.Tensor:
    p = asst.prepare([wave], [None])
    e = p.encoded.to(asst.model.device)
    with torch.no_grad():
        out = asst.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans, p.features, p.frame_lengths)
    return out.logits[0].float().cpu()


@pytest.mark.parametrize("attention", ["bidirectional", "causal"])
def test_4bit_cuda_answers_alike_batched_alone_and_streamed(bundle, attention):
    """Streaming decodes exactly what a single answer does. A left-padded batch reads each clip as it reads it
    alone, up to bf16 rounding (the tiny random model's near-tied tokens may then flip, so logits are compared)."""
    import bitsandbytes as bnb

    asst = Assistant.open(bundle, runtime=RuntimeConfig(device="cuda", quantization="4bit"))
    asst.model.bidirectional_audio = attention == "bidirectional"
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in asst.model.llm.modules())
    gen = GenerationSettings(max_new_tokens=8)
    clips = [clip(0.6, seed=5), clip(1.3, seed=6), clip(0.9, seed=7)]
    assert [asst.answer(audio=c, gen=gen) for c in clips] == ["".join(asst.stream(audio=c, gen=gen)) for c in clips]
    p = asst.prepare(clips, [None] * len(clips))
    e = p.encoded.to(asst.model.device)
    with torch.no_grad():
        batch = asst.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans, p.features,
                           p.frame_lengths).logits[:, -1].float().cpu()
    assert torch.isfinite(batch).all()
    for i, c in enumerate(clips):
        alone = _logits(asst, c)[-1]
        cos = float(torch.nn.functional.cosine_similarity(alone, batch[i], dim=0))
        assert cos > 0.995, (i, cos, (alone - batch[i]).abs().max())


def test_4bit_cuda_stays_close_to_fp32_on_the_cpu_in_both_attention_modes(bundle):
    quant = Assistant.open(bundle, runtime=RuntimeConfig(device="cuda", quantization="4bit"))
    full = Assistant.open(bundle, runtime=RuntimeConfig(device="cpu", quantization="none"))
    wave = clip(1.1, seed=8)
    cosines = {}
    for attention in ("bidirectional", "causal"):
        quant.model.bidirectional_audio = full.model.bidirectional_audio = attention == "bidirectional"
        a, b = _logits(full, wave), _logits(quant, wave)
        assert torch.isfinite(b).all()
        cosines[attention] = float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0))
        print(f"\n4-bit CUDA vs fp32 CPU logits, {attention}: cosine {cosines[attention]:.4f}, "
              f"max abs {(a - b).abs().max():.4f}")
    assert min(cosines.values()) > 0.97, cosines
