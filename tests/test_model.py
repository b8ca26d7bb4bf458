"""AuraModel, processor and bundle on tiny random Llama / Qwen2 models (no network)."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from aura_model.assistant import Assistant
from aura_model.bundle import load_bundle, read_bundle_config, save_bundle
from aura_model.config import GenerationSettings, ModelConfig, PromptConfig, RuntimeConfig
from aura_model.embedding import AudioEmbedding, num_audio_tokens
from aura_model.errors import AuraError
from aura_model.model import sample_next
from aura_model.processor import AuraProcessor, position_row
from aura_model.testing import save_tiny_base, tiny_tokenizer

from helpers import assert_close, build_model, clip, make_bundle

ARCHS = ["llama", "qwen2"]


@pytest.fixture(scope="module", params=ARCHS)
def bundle(request, tmp_path_factory):
    """(bundle_dir, base_dir) for each architecture."""
    return make_bundle(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def assistant(bundle):
    return Assistant.open(bundle[0], runtime=RuntimeConfig(device="cpu", quantization="none"))


# ---------------------------------------------------------------------- embedding
@pytest.mark.parametrize("frames", [1, 2, 3, 7, 8, 9, 100, 101, 2999, 3000])
@pytest.mark.parametrize("stack", [1, 3, 4])
def test_audio_token_count_formula_matches_the_module(frames, stack):
    from aura_model.config import EmbeddingConfig

    emb = AudioEmbedding(80, 32, EmbeddingConfig(conv_channels=8, stack=stack))
    out, lengths = emb(torch.randn(1, 80, frames))
    expected = -(-(-(-frames // 2)) // stack)  # ceil(ceil(F / 2) / stack)
    assert out.shape == (1, expected, 32)
    assert lengths.tolist() == [expected] == [num_audio_tokens(frames, stack)]


def test_embedding_is_batch_invariant():
    emb = AudioEmbedding(80, 48).eval()
    feats = [torch.randn(1, 80, n) for n in (37, 100, 64)]
    batch = torch.zeros(3, 80, 100)
    for i, f in enumerate(feats):
        batch[i, :, : f.shape[-1]] = f[0]
        batch[i, :, f.shape[-1]:] = 5.0  # padding garbage must not leak in
    out, lengths = emb(batch, torch.tensor([37, 100, 64]))
    for i, f in enumerate(feats):
        single, n = emb(f)
        assert lengths[i] == n[0]
        assert_close(out[i, : n[0]], single[0], atol=1e-5, what=f"clip {i}")


def test_audio_tokens_start_at_the_scale_of_the_llm_token_embeddings():
    torch.manual_seed(0)
    token_embeddings = torch.randn(500, 48) * torch.linspace(0.01, 0.1, 48)  # (V, d): a small per-dim scale
    emb = AudioEmbedding(80, 48)
    raw, _ = emb(torch.randn(2, 80, 120))
    emb.match_scale(token_embeddings)
    out, _ = emb(torch.randn(2, 80, 120))
    target = token_embeddings.pow(2).mean(0).sqrt()  # (d,)
    measured = out.pow(2).mean(dim=(0, 1)).sqrt()
    assert raw.norm(dim=-1).mean() > 5 * out.norm(dim=-1).mean()  # unnormalised it would be far larger
    assert_close(out.norm(dim=-1).mean(), token_embeddings.norm(dim=-1).mean(), atol=0.05, what="token norm")
    assert torch.corrcoef(torch.stack([measured, target]))[0, 1] > 0.9  # per-dimension scale follows the LLM
    with pytest.raises(ValueError, match="width 32"):
        emb.match_scale(torch.randn(10, 32))


def test_embedding_parameter_budget():
    emb = AudioEmbedding(80, 1536)  # a 1.5B LLM's width
    params = sum(p.numel() for p in emb.parameters())
    assert params < 3_000_000, params


# ---------------------------------------------------------------------- processor
def test_placeholder_expands_to_exact_span():
    tok = tiny_tokenizer()
    proc = AuraProcessor(tok)
    rendered = proc.render(proc.messages("please", n_audio=1))
    assert rendered.count("<|audio|>") == 1
    enc = proc.encode([rendered], [[7]])
    (start, length), = enc.audio_spans[0]
    ids = enc.input_ids[0].tolist()
    assert length == 7
    assert ids[start:start + 7] == [proc.placeholder_id] * 7
    before, after = rendered.split("<|audio|>")
    assert ids[:start] == tok(before, add_special_tokens=False)["input_ids"]
    assert ids[start + 7:] == tok(after, add_special_tokens=False)["input_ids"]
    assert len(tok) == 300  # the vocabulary is never resized


def test_batch_is_left_padded_with_shifted_spans():
    proc = AuraProcessor(tiny_tokenizer())
    rendered = [proc.render(proc.messages(None, 1)), proc.render(proc.messages("a longer typed request", 1))]
    enc = proc.encode(rendered, [[3], [5]])
    width = enc.input_ids.shape[1]
    for b in range(2):
        real = int(enc.attention_mask[b].sum())
        assert enc.attention_mask[b, width - real:].all() and not enc.attention_mask[b, : width - real].any()
        assert enc.position_ids[b, width - real:].tolist() == list(range(real))
        (start, n), = enc.audio_spans[b]
        assert start >= width - real
        assert (enc.input_ids[b, start:start + n] == proc.placeholder_id).all()


def test_audio_tokens_advance_the_position_by_the_step():
    # 2 text tokens, 4 audio tokens, 2 text tokens: text advances by 1, audio by 0.25
    assert position_row(8, [(2, 4)], 0.25).tolist() == [0, 1, 2, 2.25, 2.5, 2.75, 3, 4]
    assert position_row(7, [(1, 2), (4, 2)], 0.5).tolist() == [0, 1, 1.5, 2, 3, 3.5, 4]
    one = position_row(5, [(1, 3)], 1.0)
    assert one.dtype == torch.long and one.tolist() == [0, 1, 2, 3, 4]  # step 1: the integer positions as before
    assert position_row(4, [], 0.25).tolist() == [0, 1, 2, 3]  # a typed row has no audio to pack


def test_fractional_positions_are_the_same_alone_and_left_padded():
    proc = AuraProcessor(tiny_tokenizer(), PromptConfig(audio_position_step=0.25))
    rendered = [proc.render(proc.messages(None, 1)), proc.render(proc.messages("a longer typed request", 1))]
    enc = proc.encode(rendered, [[8], [5]])
    assert enc.position_ids.is_floating_point()
    typed = proc.render(proc.messages("a typed turn"))  # a row without audio first: its whole positions set no dtype
    mixed = proc.encode([typed, rendered[0]], [[], [8]])
    assert mixed.position_ids[1, -proc.encode([rendered[0]], [[8]]).input_ids.shape[1]:].tolist() == \
        proc.encode([rendered[0]], [[8]]).position_ids[0].tolist()
    width = enc.input_ids.shape[1]
    for b, (r, n) in enumerate(zip(rendered, (8, 5))):
        alone = proc.encode([r], [[n]])
        real = int(enc.attention_mask[b].sum())
        assert enc.position_ids[b, width - real:].tolist() == alone.position_ids[0].tolist()
        (start, length), = alone.audio_spans[0]
        last = alone.position_ids[0]
        assert last[-1].item() == pytest.approx(real - 1 - length * 0.75)  # the span fills length / 4 positions


def test_packed_audio_positions_change_the_answer_and_decode_alike(bundle):
    """With audio_position_step < 1 the LLM sees other positions (the setting matters), a batch answers each clip as
    it would alone, and batched decoding equals streaming (positions continue by 1 after the prompt in both)."""
    packed = Assistant.open(bundle[0], runtime=RuntimeConfig(device="cpu", quantization="none"))
    plain = Assistant.open(bundle[0], runtime=RuntimeConfig(device="cpu", quantization="none"))
    packed.processor.prompt = PromptConfig(audio_position_step=0.25)
    wave = clip(1.2, seed=11)
    a, _ = _logits(packed, wave)
    b, _ = _logits(plain, wave)
    assert (a - b).abs().max() > 1e-3
    gen = GenerationSettings(max_new_tokens=10)
    clips = [clip(0.7, seed=1), wave]
    batch = packed.answer_batch(clips, gen=gen)
    alone = [packed.answer(audio=c, gen=gen) for c in clips]
    streamed = ["".join(packed.stream(audio=c, gen=gen)) for c in clips]
    assert batch == alone == streamed


def test_span_attention_mask_opens_each_audio_span_and_nothing_else():
    from aura_model.model import span_attention_mask

    padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1, 1]])
    spans = [[(3, 3)], [(1, 2), (5, 2)]]
    mask = span_attention_mask(padding, spans, torch.float32)
    assert mask.shape == (2, 1, 8, 8)
    allowed = mask[:, 0] == 0  # (B, query, key)
    expected = torch.tril(torch.ones(8, 8, dtype=torch.bool)).repeat(2, 1, 1)
    expected[0, 3:6, 3:6] = True
    expected[1, 1:3, 1:3] = True
    expected[1, 5:7, 5:7] = True  # two clips: each sees itself whole, the later one sees the earlier causally
    expected[0, :, :2] = False  # padding is never a key...
    expected[0, :2, :2] = torch.eye(2, dtype=torch.bool)  # ...except for itself, so its row stays finite
    assert torch.equal(allowed, expected)
    assert mask.min() == torch.finfo(torch.float32).min


def test_bidirectional_audio_lets_early_audio_hear_the_end_of_the_clip(bundle):
    """Causal: the first audio position's output ignores the rest of the clip. Bidirectional: it depends on it.
    Either way the text before the span is untouched, and batched, single and streamed decoding agree."""
    runs = {}
    for attention in ("causal", "bidirectional"):
        asst = Assistant.open(bundle[0], runtime=RuntimeConfig(device="cpu", quantization="none"))
        asst.model.bidirectional_audio = attention == "bidirectional"
        a, b = clip(1.0, seed=3), clip(1.0, seed=3).copy()
        b[8000:] = 0.2 * clip(0.5, seed=4)  # same first half, another (quieter: same clip maximum) second half
        la, ea = _logits(asst, a)
        lb, _ = _logits(asst, b)
        (start, n), = ea.audio_spans[0]
        assert_close(la[:start], lb[:start], atol=0, rtol=0, what=f"{attention}: text before the span")
        runs[attention] = (la[start] - lb[start]).abs().max().item()
        gen = GenerationSettings(max_new_tokens=8)
        clips = [clip(0.6, seed=5), a]
        assert asst.answer_batch(clips, gen=gen) == [asst.answer(audio=c, gen=gen) for c in clips] == \
            ["".join(asst.stream(audio=c, gen=gen)) for c in clips]
    assert runs["causal"] == 0.0
    assert runs["bidirectional"] > 1e-4


def test_placeholder_count_must_match_clips():
    proc = AuraProcessor(tiny_tokenizer())
    with pytest.raises(AuraError, match="1 audio placeholder"):
        proc.encode([proc.render(proc.messages(None, 1))], [[3, 4]])


def test_tokenizer_without_chat_template_is_refused():
    tok = tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(AuraError, match="no chat template"):
        AuraProcessor(tok)


# ---------------------------------------------------------------------- the model
def _logits(asst: Assistant, audio=None, text=None):
    p = asst.prepare([audio], [text])
    e = p.encoded
    with torch.no_grad():
        out = asst.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans, p.features, p.frame_lengths)
    return out.logits[0], e


def test_audio_lands_exactly_on_the_span(assistant):
    a, b = clip(1.0, seed=1), clip(1.0, seed=2)  # same length, different sound
    la, ea = _logits(assistant, a)
    lb, eb = _logits(assistant, b)
    assert torch.equal(ea.input_ids, eb.input_ids)
    (start, n), = ea.audio_spans[0]
    assert_close(la[:start], lb[:start], atol=0, rtol=0, what="positions before the span")
    per_position = (la[start:] - lb[start:]).abs().amax(dim=-1)
    assert (per_position > 1e-4).all(), per_position


def test_adapter_disabled_without_audio_equals_the_base_model(bundle, assistant):
    base = tiny_llm_from(bundle[1])
    _, enc = _logits(assistant, text="what is the capital of france")
    with torch.no_grad():
        with assistant.model.adapter_disabled():
            ours = assistant.model(enc.input_ids, enc.attention_mask, enc.position_ids).logits
        plain = base(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        adapted = assistant.model(enc.input_ids, enc.attention_mask, enc.position_ids).logits
    assert_close(ours, plain, atol=1e-5, what="adapter off vs base")
    assert (adapted - plain).abs().max() > 1e-3  # and the adapter does change something


def test_typed_turns_run_on_the_base_llm_and_spoken_turns_on_the_adapter(bundle, assistant):
    gen = GenerationSettings(max_new_tokens=6)
    text = "what is the capital of france"
    prepared = assistant.prepare([None], [text])
    enc = prepared.encoded
    base = tiny_llm_from(bundle[1])
    with torch.no_grad():
        out = base.generate(input_ids=enc.input_ids, attention_mask=enc.attention_mask, max_new_tokens=6,
                            do_sample=False, eos_token_id=assistant.eos_ids, pad_token_id=assistant.processor.pad_id)
    expected = assistant.processor.decode(assistant._strip_eos(out[0, enc.input_ids.shape[1]:].tolist()))
    assert assistant.answer(text=text, gen=gen) == expected == "".join(assistant.stream(text=text, gen=gen))
    wave = clip(seconds=1.0)
    spoken = assistant.answer(audio=wave, gen=gen)
    with assistant.model.adapter_disabled():
        unadapted = assistant.answer_batch([wave], gen=gen)[0]  # the adapter is on for audio: it matters
    assert "".join(assistant.stream(audio=wave, gen=gen)) == spoken
    mixed = assistant.answer_batch([wave, None], [None, text], gen=gen)
    assert mixed == [spoken, expected]  # a mixed batch answers each row as it would alone
    assert spoken != unadapted or assistant.model.has_adapter is False


def tiny_llm_from(base_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()


def test_save_load_round_trip_gives_identical_logits(bundle, assistant, tmp_path):
    audio = clip(1.3, seed=3)
    before, _ = _logits(assistant, audio, "and this")
    copy = save_bundle(tmp_path / "again", assistant.model, assistant.loaded.tokenizer, assistant.config,
                       base_id="tiny", include_base=bundle[1])
    again = Assistant.open(copy, runtime=RuntimeConfig(device="cpu", quantization="none"))
    after, _ = _logits(again, audio, "and this")
    assert_close(after, before, atol=0, rtol=0, what="round trip")


def test_batch_of_three_clips_matches_one_at_a_time(assistant):
    clips = [clip(s, seed=i) for i, s in enumerate((0.6, 1.7, 1.1))]
    texts = [None, "quickly", None]
    p = assistant.prepare(clips, texts)
    e = p.encoded
    with torch.no_grad():
        batch = assistant.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans, p.features,
                                p.frame_lengths).logits
    for i, (c, t) in enumerate(zip(clips, texts)):
        single, es = _logits(assistant, c, t)
        n = single.shape[0]
        assert_close(batch[i, -n:], single, atol=1e-4, what=f"clip {i}")


def test_streaming_yields_the_same_text_as_generate(assistant):
    gen = GenerationSettings(max_new_tokens=12)
    for audio, text in ((clip(0.9, seed=5), None), (None, "hello, how can I help")):
        pieces = list(assistant.stream(audio, text, gen))
        whole = assistant.answer(audio, text, gen)
        assert len(pieces) >= 1
        assert "".join(pieces) == whole


def test_stop_interrupts_streaming(assistant):
    gen = GenerationSettings(max_new_tokens=40)
    full = list(assistant.model.stream_ids(*_stream_args(assistant), gen=gen))
    assert len(full) > 5  # a random tiny model rarely says EOS early; it would make this test meaningless
    stop = threading.Event()
    got = []
    for tok in assistant.model.stream_ids(*_stream_args(assistant), gen=gen, stop=stop):
        got.append(tok)
        if len(got) == 3:
            stop.set()  # as the GUI's Stop button does, from the consumer side
    assert got == full[:3]


def _stream_args(asst):
    p = asst.prepare([None], ["hello"])
    e = p.encoded
    return e.input_ids, e.attention_mask, e.position_ids


def test_sampling_respects_top_p():
    logits = torch.tensor([[5.0, 4.9, -10.0, -10.0]])
    gen = GenerationSettings(temperature=1.0, top_p=0.5)
    g = torch.Generator().manual_seed(0)
    picks = {int(sample_next(logits, gen, g)) for _ in range(50)}
    assert picks == {0}  # the nucleus of mass 0.5 is the top token alone
    assert int(sample_next(logits, GenerationSettings())) == 0


def test_plain_base_model_chats_but_refuses_audio(bundle):
    asst = Assistant.open(base=str(bundle[1]), runtime=RuntimeConfig(device="cpu", quantization="none"))
    assert isinstance(asst.answer(text="hello", gen=GenerationSettings(max_new_tokens=4)), str)
    with pytest.raises(AuraError, match="plain base model"):
        asst.answer(audio=clip(0.5))


# ---------------------------------------------------------------------- 4-bit
@pytest.mark.parametrize("arch", ARCHS)
def test_4bit_path_runs_and_stays_close(arch, tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    base = save_tiny_base(tmp_path / arch, arch, hidden=128, intermediate=256)
    full, tok, _ = build_model(base)
    quant, _, _ = build_model(base, runtime=RuntimeConfig(device="cpu", quantization="4bit"))
    quant.embedding.load_state_dict(full.embedding.state_dict())
    for (n1, p1), (n2, p2) in zip(full.llm.named_parameters(), quant.llm.named_parameters()):
        if "lora_" in n1:
            p2.data.copy_(p1.data)
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in quant.llm.modules())
    proc = AuraProcessor(tok)
    from aura_model.audio import features_for

    feats, lengths = features_for([clip(1.0)], ModelConfig().audio)
    enc = proc.encode([proc.render(proc.messages("hi", 1))], [num_audio_tokens(lengths, 4).tolist()])
    with torch.no_grad():
        a = full(enc.input_ids, enc.attention_mask, enc.position_ids, enc.audio_spans, feats, lengths).logits
        b = quant(enc.input_ids, enc.attention_mask, enc.position_ids, enc.audio_spans, feats, lengths).logits
    assert torch.isfinite(b).all()
    diff = (a - b).abs()
    rel = (diff.norm() / a.norm()).item()
    print(f"\n4-bit vs fp32 logits ({arch}): max abs {diff.max():.4f}, mean abs {diff.mean():.4f}, relative L2 {rel:.4f}")
    assert rel < 0.25
    cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert cos > 0.97, cos


# ---------------------------------------------------------------------- bundle errors
def test_bundle_keeps_its_audio_attention(bundle, assistant, tmp_path):
    assert assistant.config.prompt.audio_attention == "bidirectional" and assistant.model.bidirectional_audio
    cfg = ModelConfig()
    cfg.prompt.audio_attention = "causal"
    target = save_bundle(tmp_path / "causal", assistant.model, assistant.loaded.tokenizer, cfg, base_id="x",
                         include_base=bundle[1])
    reopened = Assistant.open(target, runtime=RuntimeConfig(device="cpu", quantization="none"))
    assert read_bundle_config(target)["model"]["prompt"]["audio_attention"] == "causal"
    assert not reopened.model.bidirectional_audio


def test_bundle_records_what_it_needs(bundle):
    meta = read_bundle_config(bundle[0])
    assert meta["base"]["fingerprint"]["num_hidden_layers"] == 4
    assert meta["embedding_shape"]["stack"] == 4
    names = {p.name for p in bundle[0].iterdir()}
    assert {"aura_config.json", "adapter_model.safetensors", "adapter_config.json", "audio_embedding.safetensors"} <= names
    assert not [p for p in bundle[0].rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl")]


def test_bundle_for_another_base_is_refused_naming_both(bundle, tmp_path):
    other = save_tiny_base(tmp_path / "other", "llama", hidden=96, intermediate=192)
    with pytest.raises(AuraError, match=r"made for base model 'tiny-.*' but '.*other'.*hidden_size 64 vs 96"):
        load_bundle(bundle[0], RuntimeConfig(device="cpu"), base=str(other))


# Spelled out rather than read from bundle.FINGERPRINT_KEYS, so a key dropped there is a failing case here.
FINGERPRINT_FIELDS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")


def test_bundle_fingerprint_records_exactly_the_checked_fields(bundle):
    assert set(read_bundle_config(bundle[0])["base"]["fingerprint"]) == set(FINGERPRINT_FIELDS)


@pytest.mark.parametrize("field", FINGERPRINT_FIELDS)
def test_bundle_with_one_fingerprint_field_edited_is_refused_naming_it(bundle, tmp_path, field):
    import re
    import shutil

    edited = tmp_path / "edited"
    shutil.copytree(bundle[0], edited)
    meta = json.loads((edited / "aura_config.json").read_text())
    original = meta["base"]["fingerprint"][field]
    changed = f"not-{original}" if isinstance(original, str) else original + 1
    meta["base"]["fingerprint"][field] = changed
    (edited / "aura_config.json").write_text(json.dumps(meta))
    with pytest.raises(AuraError, match=re.escape(f"differs ({field} {changed} vs {original})")):
        load_bundle(edited, RuntimeConfig(device="cpu", quantization="none"))


def test_missing_and_broken_bundles(tmp_path, bundle):
    with pytest.raises(AuraError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AuraError, match="aura_config.json is missing"):
        load_bundle(tmp_path / "empty")
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(bundle[0], broken)
    (broken / "audio_embedding.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(AuraError, match="audio_embedding.safetensors"):
        load_bundle(broken, RuntimeConfig(device="cpu"))
    meta = json.loads((broken / "aura_config.json").read_text())
    meta["format_version"] = 99
    (broken / "aura_config.json").write_text(json.dumps(meta))
    with pytest.raises(AuraError, match="format_version 99"):
        load_bundle(broken)


def test_missing_base_model_is_a_clear_error(tmp_path):
    with pytest.raises(AuraError, match="cannot load"):
        Assistant.open(base=str(tmp_path / "no-such-model"))


def test_failed_save_leaves_the_previous_bundle_intact(bundle, assistant, tmp_path, monkeypatch):
    import shutil

    target = tmp_path / "keep"
    shutil.copytree(bundle[0], target)
    before = sorted(p.name for p in target.iterdir())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr("aura_model.bundle.save_file", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        save_bundle(target, assistant.model, assistant.loaded.tokenizer, assistant.config, base_id="x")
    assert sorted(p.name for p in target.iterdir()) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_config_validation_names_the_bad_value():
    from aura_model.config import AudioConfig, EmbeddingConfig, LoraSettings

    with pytest.raises(AuraError, match="stack must be in"):
        EmbeddingConfig(stack=0)
    with pytest.raises(AuraError, match="got 'gpu'"):
        RuntimeConfig(device="gpu")
    with pytest.raises(AuraError, match="quantization"):
        RuntimeConfig(quantization="3bit")
    with pytest.raises(AuraError, match="r must be >= 1, got 0"):
        LoraSettings(r=0)
    for bad in (0, 1.5, -0.25):
        with pytest.raises(AuraError, match=f"audio_position_step must be in \\(0, 1\\], got {bad}"):
            PromptConfig(audio_position_step=bad)
    assert ModelConfig.from_dict({"prompt": {"placeholder": "<|audio|>"}}).prompt.audio_position_step == 1.0
    # bundles from before the setting were trained with the causal mask; new ones default to bidirectional
    assert ModelConfig.from_dict({"prompt": {"placeholder": "<|audio|>"}}).prompt.audio_attention == "causal"
    assert ModelConfig().prompt.audio_attention == "bidirectional"
    with pytest.raises(AuraError, match="audio_attention must be one of bidirectional, causal, got 'full'"):
        PromptConfig(audio_attention="full")
    with pytest.raises(AuraError, match="unknown field"):
        AudioConfig.from_dict({"sample_rat": 1})
    cfg = ModelConfig()
    assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
