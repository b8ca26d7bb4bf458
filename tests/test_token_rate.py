"""Token-rate AuRA: the integrate-and-fire pooler (pure math) and the two-pass model (hear, then read as text)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from aura_model.assistant import Assistant
from aura_model.audio import features_for
from aura_model.bundle import POOLER_NAME, load_bundle, read_bundle_config, save_bundle
from aura_model.config import GenerationSettings, ModelConfig, PoolingConfig, PromptConfig, RuntimeConfig
from aura_model.errors import AuraError
from aura_model.pooling import TokenPooler, fire_counts, mass_matrix
from aura_model.testing import save_tiny_base

from helpers import assert_close, build_model, clip

CPU = RuntimeConfig(device="cpu", quantization="none")


# ---------------------------------------------------------------------- the pooler
def test_mass_matrix_hand_computed():
    # weights 0.5, 0.75, 0.75 (sum 2): vector 0 = state 0 (0.5) + 2/3 of state 1's 0.75 (0.5);
    # vector 1 = the remaining 0.25 of state 1 + state 2's 0.75
    alphas = torch.tensor([[0.5, 0.75, 0.75]])
    mass = mass_matrix(alphas, torch.tensor([2]), 1.0)
    assert_close(mass, torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]]]), atol=1e-6)


def test_mass_rows_sum_to_one_and_padding_takes_none():
    torch.manual_seed(0)
    alphas = torch.rand(3, 9)
    alphas[1, 6:] = 0  # a shorter clip
    counts = torch.tensor([3, 2, 5])
    scaled = alphas * (counts / alphas.sum(1))[:, None]
    mass = mass_matrix(scaled, counts, 1.0)
    for b, n in enumerate(counts.tolist()):
        assert_close(mass[b, :n].sum(-1), torch.ones(n), atol=1e-5)
        assert mass[b, n:].abs().sum() == 0
    assert mass[1, :, 6:].abs().sum() == 0


@pytest.mark.parametrize("sums, expected", [([0.2, 0.6, 1.49, 1.5, 4.0], [1, 1, 1, 2, 4])])
def test_fire_counts_round_half_up_and_never_zero(sums, expected):
    assert fire_counts(torch.tensor(sums), 1.0).tolist() == expected


def test_pooler_gives_a_clip_the_same_tokens_alone_and_in_a_padded_batch():
    torch.manual_seed(1)
    pooler = TokenPooler(16, PoolingConfig(layers=1, kernel=3)).eval()
    torch.nn.init.normal_(pooler.mix.weight, std=0.1)
    torch.nn.init.normal_(pooler.context.weight, std=0.1)
    states = torch.randn(2, 12, 16)
    lengths = torch.tensor([12, 7])
    together = pooler(states, lengths)
    alone = pooler(states[1:, :7], lengths[1:])
    n = int(together.counts[1])
    assert n == int(alone.counts[0])
    assert_close(together.tokens[1, :n], alone.tokens[0, :n], atol=1e-5, what="padded vs alone")


def test_forced_counts_set_the_number_of_tokens_and_the_count_loss_can_train_the_sum():
    torch.manual_seed(2)
    pooler = TokenPooler(8, PoolingConfig(layers=1))
    states, lengths = torch.randn(2, 10, 8), torch.tensor([10, 10])
    out = pooler(states, lengths, torch.tensor([3, 5]))
    assert out.counts.tolist() == [3, 5] and out.tokens.shape[1] == 5
    assert out.tokens[0, 3:].abs().sum() == 0
    target = torch.tensor([3.0, 5.0])
    opt = torch.optim.SGD(pooler.weight.parameters(), lr=0.5)
    before = (out.weight_sums - target).abs().mean().item()
    for _ in range(50):
        loss = (pooler(states, lengths, torch.tensor([3, 5])).weight_sums - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.25 * before


# ---------------------------------------------------------------------- the two-pass model
@pytest.fixture(scope="module", params=["bidirectional", "causal"])
def assistant(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("token-rate")
    base = save_tiny_base(tmp / "base", "qwen2")
    cfg = ModelConfig(pooling=PoolingConfig(layers=2, kernel=3), prompt=PromptConfig(audio_attention=request.param))
    model, tok, cfg = build_model(base, cfg)
    bundle = save_bundle(tmp / "bundle", model, tok, cfg, base_id="tiny", include_base=base)
    return Assistant(load_bundle(bundle, CPU)), bundle


def features(asst: Assistant, audio):
    return features_for([asst.waveform(audio)], asst.config.audio)


def spoken_logits(asst: Assistant, audio, text=None) -> torch.Tensor:
    p = asst.prepare([audio], [text])
    e = p.encoded
    with torch.no_grad():
        return asst.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans,
                          audio_embeds=p.audio_embeds).logits[0]


def test_the_prompt_holds_as_many_slots_as_the_pooler_fires(assistant):
    asst, _ = assistant
    audio = clip(1.6, seed=3)
    p = asst.prepare([audio])
    with torch.no_grad():
        heard = asst.model.hear(*features(asst, audio))
    assert p.encoded.audio_spans[0][0][1] == int(heard.counts[0])
    assert p.audio_embeds.shape[1] == int(heard.counts[0])


def test_batch_of_clips_equals_each_alone(assistant):
    asst, _ = assistant
    clips = [clip(s, seed=i) for i, s in enumerate((0.7, 1.9, 1.2))]
    texts = [None, "quickly", None]
    p = asst.prepare(clips, texts)
    e = p.encoded
    with torch.no_grad():
        batch = asst.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans,
                           audio_embeds=p.audio_embeds).logits
    for i, (c, t) in enumerate(zip(clips, texts)):
        single = spoken_logits(asst, c, t)
        assert_close(batch[i, -single.shape[0]:], single, atol=1e-4, what=f"clip {i}")


def test_streamed_answer_equals_the_batched_one(assistant):
    asst, _ = assistant
    gen = GenerationSettings(max_new_tokens=10)
    audio = clip(1.3, seed=5)
    assert "".join(asst.stream(audio=audio, gen=gen)) == asst.answer(audio=audio, gen=gen)


def test_the_lora_only_hears_the_base_llm_reads(assistant):
    asst, _ = assistant
    audio = clip(1.1, seed=6)
    p = asst.prepare([audio])
    e = p.encoded
    with torch.no_grad():
        read = asst.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans,
                          audio_embeds=p.audio_embeds).logits
        with asst.model.adapter_disabled():  # pass 2 is the base LLM either way
            base = asst.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans,
                              audio_embeds=p.audio_embeds).logits
        heard = asst.model.hear(*features(asst, audio))
        with asst.model.adapter_disabled():
            unadapted = asst.model.hear(*features(asst, audio))
    assert_close(read, base, atol=0, rtol=0, what="pass 2 with and without the adapter")
    assert (heard.weight_sums - unadapted.weight_sums).abs().max() > 1e-4  # pass 1 does use the LoRA


def test_typed_turns_are_the_plain_base_model(assistant):
    asst, _ = assistant
    gen = GenerationSettings(max_new_tokens=8)
    with asst.model.adapter_disabled():
        reference = asst.answer(text="hello there", gen=gen)
    assert asst.answer(text="hello there", gen=gen) == reference


def test_the_bundle_records_pooling_and_carries_the_pooler(assistant, tmp_path):
    asst, bundle = assistant
    meta = read_bundle_config(bundle)
    assert meta["model"]["pooling"]["layers"] == 2 and POOLER_NAME in meta["checksums"]
    again = Assistant.open(bundle, runtime=CPU)
    audio = clip(0.9, seed=8)
    assert_close(spoken_logits(again, audio), spoken_logits(asst, audio), atol=0, rtol=0, what="reload")
    broken = Path(shutil.copytree(bundle, tmp_path / "nopooler"))
    (broken / POOLER_NAME).unlink()
    with pytest.raises(AuraError, match=POOLER_NAME):
        Assistant.open(broken, runtime=CPU)


def test_a_bundle_without_pooling_settings_loads_as_frame_rate(tmp_path):
    base = save_tiny_base(tmp_path / "base")
    model, tok, cfg = build_model(base)
    bundle = save_bundle(tmp_path / "b", model, tok, cfg, base_id="tiny", include_base=base)
    meta = json.loads((bundle / "aura_config.json").read_text())
    del meta["model"]["pooling"]  # as written before token-rate AuRA existed
    (bundle / "aura_config.json").write_text(json.dumps(meta))
    asst = Assistant.open(bundle, runtime=CPU)
    assert not asst.model.token_rate and asst.config.pooling.layers == 0
    assert asst.answer(audio=clip(0.8, seed=1), gen=GenerationSettings(max_new_tokens=4)) is not None


# ---------------------------------------------------------------------- training it
TOKEN_RATE = {"pooling.layers": "2", "pooling.kernel": "3", "distill.w_count": "1", "distill.w_tokens": "1",
              "distill.w_read": "1", "distill.w_slot_kl": "1", "distill.w_kl": "1", "distill.w_layer": "1"}
TINY_TRAIN = {"train.num_threads": "1", "embedding.conv_channels": "32", "lora.r": "8",
              "train.response_max_tokens": "6", "train.batch_size": "8", "train.lr": "3e-3",
              "train.scheduler": "constant", "train.val_fraction": "0.2"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from aura_model.testing import make_clip_folder, save_tiny_whisper

    root = tmp_path_factory.mktemp("tr-world")
    return {"base": save_tiny_base(root / "base"), "whisper": save_tiny_whisper(root / "whisper"),
            "clips": make_clip_folder(root / "clips", 10), "cache": root / "cache"}


def token_rate_spec(world, out, **overrides):
    from aura_model.train import build_spec

    o = {**TINY_TRAIN, **TOKEN_RATE, "train.cache_dir": str(world["cache"]), **overrides}
    return build_spec(None, o, {"teacher": str(world["whisper"]), "student": str(world["base"]),
                                "data": str(world["clips"]), "output": str(out)})


def test_a_short_token_rate_run_lowers_every_term_and_writes_a_token_rate_bundle(world, tmp_path):
    from aura_model.train import ListReporter, train

    rep = ListReporter()
    result = train(token_rate_spec(world, tmp_path / "tr", **{"train.max_steps": "30", "train.eval_every": "15"}), rep)
    first, last = result.losses[0], result.losses[-1]
    print("\n" + ", ".join(f"{k} {first[k]:.3f} -> {last[k]:.3f}" for k in sorted(first) if k != "step"))
    for term in ("loss", "loss_count", "loss_tokens", "loss_read", "loss_slot_kl", "loss_layer", "loss_kl"):
        assert last[term] < first[term], term
    evals = rep.of("eval")
    for key in ("val_loss_count", "val_loss_tokens", "val_loss_read", "val_loss_slot_kl", "val_count_exact",
                "val_agreement", "val_kl"):
        assert key in evals[-1], key
    meta = read_bundle_config(result.output)
    assert meta["model"]["pooling"]["layers"] == 2 and meta["model"]["lora"]["layers"] == [1, 2]
    asst = Assistant.open(result.output, runtime=CPU)
    assert asst.model.token_rate and asst.model.hearing_layers == 2
    adapted = {name.split(".layers.")[1].split(".")[0] for name in asst.model.lora.layers}
    assert adapted == {"0", "1"}  # LoRA only on the hearing layers
    assert isinstance(asst.answer(audio=clip(1.0, seed=2), gen=GenerationSettings(max_new_tokens=4)), str)


@pytest.mark.parametrize("overrides, message", [
    ({"distill.w_count": "0"}, "needs distill.w_count > 0"),
    ({"pooling.layers": "0"}, "train token-rate AuRA: set pooling.layers"),
    ({"lora.layers": "[1, 3]"}, "would never be used"),
    ({"distill.w_align": "1"}, "belong to frame-rate AuRA"),
    ({"pooling.layers": "4"}, "leave some to read with"),
])
def test_token_rate_settings_that_cannot_work_are_refused_before_any_work(world, tmp_path, overrides, message):
    from aura_model.train import train

    with pytest.raises(AuraError, match=message):
        train(token_rate_spec(world, tmp_path / "x", **overrides))


def test_a_bf16_llm_hears_through_an_fp32_pooler(assistant):
    """On CUDA the LLM computes in bf16 while the pooler (like the embedding) stays fp32."""
    asst, _ = assistant
    feats = features(asst, clip(1.0, seed=11))
    model = asst.model
    try:
        model.llm.to(torch.bfloat16)
        with torch.no_grad():
            heard = model.hear(*feats)
    finally:
        model.llm.to(torch.float32)
    assert heard.tokens.dtype == torch.float32 and torch.isfinite(heard.tokens).all()
    assert heard.tokens.shape[1] == int(heard.counts.max()) >= 1
