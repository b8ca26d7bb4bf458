"""Demo recipe steps 1-4: synthesis, WER, the domain LLM and the tiny Whisper teacher (tiny runs),
the shared training loop, and the build's distillation flags and log lines."""

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aura_model.demo import asr, domain, llm_data, lm, synth, voices
from aura_model.errors import AuraError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


ONCE = synth.SynthConfig(renditions={"train": 1})  # one recording per request keeps these tests small


@pytest.fixture(scope="module")
def spoken(tmp_path_factory):
    """A handful of synthesised clips: 8 train items (fixed indices, one rendition each) and 4 valid items."""
    out = tmp_path_factory.mktemp("spoken")
    manifests = {"train": synth.synthesize_split("train", out, indices=list(range(8)), jobs=2, cfg=ONCE),
                 "valid": synth.synthesize_split("valid", out, indices=[0, 1, 2, 3], jobs=2)}
    return out, manifests


# ----------------------------------------------------------------------- synthesis


def test_item_plan_is_deterministic_and_in_range():
    cfg = synth.SynthConfig()
    plans = [synth.item_plan("test", i, cfg) for i in range(40)]
    assert plans == [synth.item_plan("test", i, cfg) for i in range(40)]
    assert all(cfg.snr_db[0] <= p["snr_db"] <= cfg.snr_db[1] for p in plans)
    assert {p["noise"] for p in plans} == {"white", "pink"}
    assert all(p["voice"] in voices.VOICES["test"] for p in plans)
    assert synth.item_plan("test", 3, cfg, noise=False)["noise"] == "none"


def test_renditions_keep_the_first_recording_and_vary_the_rest():
    cfg = synth.SynthConfig()
    assert (cfg.renditions_of("train"), cfg.renditions_of("test"), cfg.renditions_of("train", quick=True)) == (4, 1, 2)
    first = synth.item_plan("train", 5, cfg)
    assert first == synth.item_plan("train", 5, cfg, rendition=0) and first["rendition"] == 0
    later = [synth.item_plan("train", 5, cfg, rendition=r) for r in (1, 2, 3)]
    assert all(p["text"] == first["text"] and p["answer"] == first["answer"] for p in later)
    keys = ("voice", "rate_wpm", "pitch", "peak", "noise_seed")
    assert len({tuple(p[k] for k in keys) for p in [first, *later]}) == 4
    assert synth.wav_name("train", 5) == "train_00005.wav" and synth.wav_name("train", 5, 2) == "train_00005_r2.wav"
    with pytest.raises(synth.AuraError, match="renditions"):
        synth.SynthConfig(renditions={"train": 0})


@needs_espeak
def test_synthesis_writes_every_rendition_and_drops_extra_ones(tmp_path):
    cfg = synth.SynthConfig(renditions={"train": 3})
    rows = _jsonl(synth.synthesize_split("train", tmp_path, indices=[0, 1], cfg=cfg))
    assert [(r["index"], r["rendition"]) for r in rows] == [(i, r) for i in (0, 1) for r in range(3)]
    wavs = tmp_path / "train" / "wavs"
    assert sorted(p.name for p in wavs.glob("*.wav")) == sorted(r["audio"][len("wavs/"):] for r in rows)
    clips = [sf.read(str(tmp_path / "train" / r["audio"]), dtype="float32")[0] for r in rows[:3]]
    assert len({c.shape[0] for c in clips}) == 3  # another voice and rate: another clip
    fewer = _jsonl(synth.synthesize_split("train", tmp_path, indices=[0, 1], cfg=ONCE))
    assert [r["audio"] for r in fewer] == ["wavs/train_00000.wav", "wavs/train_00001.wav"]
    assert sorted(p.name for p in wavs.glob("*.wav")) == ["train_00000.wav", "train_00001.wav"]


def test_quick_selection_takes_a_few_items_of_every_family():
    cfg = synth.SynthConfig()
    picked = synth.selected_indices("train", quick=True, cfg=cfg)
    rows = domain.sentences("train")
    families = [rows[i]["family"] for i in picked]
    assert {f: families.count(f) for f in set(families)} == {f: cfg.quick_per_family["train"] for f in domain.family_names()}
    assert synth.selected_indices("valid") == list(range(len(domain.sentences("valid"))))


@needs_espeak
def test_synthesis_writes_16k_mono_clips_and_consistent_listings(spoken):
    out, manifests = spoken
    rows = _jsonl(manifests["train"])
    listing = domain.sentences("train")
    assert [r["index"] for r in rows] == list(range(8))
    meta = _jsonl(out / "train" / "metadata.jsonl")
    assert [m["file_name"] for m in meta] == [r["audio"] for r in rows]
    for r, m in zip(rows, meta):
        assert r["text"] == m["transcription"] == m["text"] == listing[r["index"]]["text"]
        assert r["answer"] == listing[r["index"]]["answer"]
        info = sf.info(str(out / "train" / r["audio"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        seconds = info.frames / info.samplerate
        assert seconds == pytest.approx(r["duration_s"], abs=1e-3)
        # espeak speaks 130-200 words per minute; plus 0.1-0.6 s of pauses
        words = len(r["text"].split())
        assert words / 200 * 60 * 0.5 < seconds < words / 130 * 60 * 1.6 + 0.8, (r["text"], seconds)
        x, _ = sf.read(str(out / "train" / r["audio"]), dtype="float32")
        assert 0.2 < np.abs(x).max() <= 1.0
        assert np.abs(x[:400]).max() > 0, "noise is added everywhere, pauses included"
        _check_word_times(r, m, x, synth.item_plan("train", r["index"], ONCE))
    assert r["voice"] in voices.VOICES["train"]


def _check_word_times(row: dict, meta: dict, x: np.ndarray, plan: dict) -> None:
    """Word timings spell the text, follow each other, start after the pause put in front and end inside the clip;
    the speech is louder inside the words than in the pause before them."""
    words = row["words"]
    assert words == meta["words"]
    assert " ".join(w for w, _, _ in words) == row["text"]
    bounds = [s for _, s, _ in words] + [words[-1][2]]
    assert all(a <= b for a, b in zip(bounds, bounds[1:]))
    assert all(e == s2 for (_, _, e), (_, s2, _) in zip(words, words[1:]))  # a word ends where the next starts
    assert words[0][1] == pytest.approx(plan["pad_before_s"], abs=2e-3)
    assert words[-1][2] == pytest.approx(row["duration_s"] - plan["pad_after_s"], abs=2e-3)
    sr = 16000
    before = x[: int(plan["pad_before_s"] * sr)]
    inside = x[int(words[0][1] * sr): int(words[-1][2] * sr)]
    assert np.sqrt(np.mean(inside ** 2)) > 3 * np.sqrt(np.mean(before ** 2))


def test_word_bounds_share_a_merged_word_span_by_characters():
    from aura_model.demo.word_times import word_bounds

    words = ["turn", "on", "the", "bedroom", "fan"]  # character offsets 1, 6, 9, 13, 21
    # espeak-ng gave no event for "the" (merged into its neighbour); samples relative to the untrimmed audio
    bounds = word_bounds(words, {1: 100, 6: 1100, 13: 2100, 21: 4100}, speech=(100, 5100))
    assert bounds[:2] == [0.0, 1000.0]
    assert bounds[2:4] == pytest.approx([1000 + 1000 * 2 / 5, 2000.0])  # "on" + "the" share 1000 samples 2:3
    assert bounds[4:] == [4000.0, 5000.0]
    # no event at all: the whole speech split by characters; the first event is clamped into the speech
    assert word_bounds(["ab", "c"], {}, speech=(0, 300)) == pytest.approx([0.0, 200.0, 300.0])
    assert word_bounds(["ab", "c"], {1: 0, 4: 250}, speech=(50, 350))[:2] == [0.0, 200.0]


@needs_espeak
def test_synthesis_rerun_is_idempotent_and_settings_change_rebuilds(spoken, tmp_path):
    out, manifests = spoken
    files = sorted((out / "train").rglob("*"))
    before = {p: (p.stat().st_mtime_ns, _digest(p)) for p in files if p.is_file()}
    again = synth.synthesize_split("train", out, indices=list(range(8)), jobs=2, cfg=ONCE)
    assert again == manifests["train"]
    after = {p: (p.stat().st_mtime_ns, _digest(p)) for p in sorted((out / "train").rglob("*")) if p.is_file()}
    assert after == before  # nothing rewritten, nothing added, nothing left behind

    # the same item without noise is a different (cleaner) clip, and the settings file records it
    clean = synth.synthesize_split("train", tmp_path, indices=[0], noise=False, cfg=ONCE)
    x_clean, _ = sf.read(str(tmp_path / "train" / _jsonl(clean)[0]["audio"]), dtype="float32")
    x_noisy, _ = sf.read(str(out / "train" / "wavs" / "train_00000.wav"), dtype="float32")
    assert x_clean.shape == x_noisy.shape
    assert np.abs(x_clean[:200]).max() < 1e-3 < np.abs(x_noisy[:200]).max()
    noisy_again = synth.synthesize_split("train", tmp_path, indices=[0], noise=True, cfg=ONCE)
    x_again, _ = sf.read(str(tmp_path / "train" / _jsonl(noisy_again)[0]["audio"]), dtype="float32")
    np.testing.assert_array_equal(x_again, x_noisy)  # stale clean wav was rebuilt, bit-identical


# ----------------------------------------------------------------------- WER


def test_wer_on_hand_examples():
    assert asr.wer("turn on the light", "turn on the light") == 0.0
    assert asr.wer("turn on the light", "turn off the light") == 0.25  # one substitution
    assert asr.wer("turn on the light", "turn on the kitchen light") == 0.25  # one insertion
    assert asr.wer("turn on the light", "turn the light") == 0.25  # one deletion
    assert asr.wer("a b c", "") == 1.0
    assert asr.wer("a b", "c d e f") == 2.0  # WER can exceed 1
    # corpus-level: edits summed over sentences / reference words summed (2 + 0) / (3 + 2)
    assert asr.wer(["a b c", "d e"], ["a x y c", "d e"]) == pytest.approx(2 / 5)
    assert asr.wer(["What Is"], ["what  is "]) == 0.0  # case and spacing do not count
    with pytest.raises(ValueError):
        asr.wer(["a"], ["a", "b"])


# ----------------------------------------------------------------------- LLM


def test_history_turns_are_the_chat_template_of_the_whole_conversation():
    tok = lm.train_domain_tokenizer(lm.domain_texts(), 1024)
    pairs = [("what is six times seven", "42"), ("turn off the kitchen fan", "ok, the kitchen fan is off"),
             ("capital of france", "paris")]
    examples = [llm_data.encode_example(tok, q, a) for q, a in pairs]
    ids, labels = llm_data.with_history(examples, examples[2], [0, 1], tok.encode("\n", add_special_tokens=False)[0])
    messages = [m for q, a in pairs for m in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
    whole = tok.apply_chat_template(messages, tokenize=True, return_dict=False)
    assert ids == whole[: len(ids)] and tok.decode(whole[len(ids):]).strip() == ""
    assert tok.decode([t for t in labels if t != -100]) == "paris<|im_end|>"  # only the last answer is scored
    assert len(labels) == len(ids)


def test_score_history_also_scores_the_earlier_answers():
    tok = lm.train_domain_tokenizer(lm.domain_texts(), 1024)
    examples = [llm_data.encode_example(tok, q, a)
                for q, a in (("what is six times seven", "42"), ("capital of france", "paris"))]
    _, labels = llm_data.with_history(examples, examples[1], [0], tok.encode("\n", add_special_tokens=False)[0],
                                      score_history=True)
    assert tok.decode([t for t in labels if t != -100]) == "42<|im_end|>paris<|im_end|>"


def test_stretched_request_repeats_the_request_tokens_and_keeps_the_answer():
    tok = lm.train_domain_tokenizer(lm.domain_texts(), 1024)
    x, y = llm_data.encode_example(tok, "what is six times seven", "42")
    bounds = llm_data.content_bounds(tok)
    request = tok.encode("what is six times seven", add_special_tokens=False)
    assert x[bounds[0]: bounds[0] + len(request)] == request and len(x) == len(y)
    gen = torch.Generator().manual_seed(0)
    sx, sy = llm_data.stretch_request((x, y), bounds, tok.pad_token_id, 3, 0.5, gen)
    assert len(sx) == len(sy) and sx[: bounds[0]] == x[: bounds[0]]
    assert [t for t in sy if t != -100] == [t for t in y if t != -100]  # the same answer is scored
    prompt_len = next(i for i, v in enumerate(sy) if v != -100)
    content = sx[bounds[0]: prompt_len - bounds[1]]
    collapsed = [t for i, t in enumerate(content) if t != tok.pad_token_id and (i == 0 or t != content[i - 1])]
    assert collapsed == request and len(content) > len(request)  # CTC-style: collapse repeats, drop blanks
    assert sx[prompt_len - bounds[1]:] == x[bounds[0] + len(request):]  # the template and answer after it unchanged
    dropped, _ = llm_data.stretch_request((x, y), bounds, tok.pad_token_id, 1, 0.0, torch.Generator().manual_seed(0),
                                          drop_rate=0.99)
    assert len(dropped) < len(x)
    # blank_max > 1: runs of 1..blank_max blanks after tokens, 0..blank_max before the first, the tokens once each
    runs: set[int] = set()
    for seed in range(20):
        bx, by = llm_data.stretch_request((x, y), bounds, tok.pad_token_id, 1, 1.0,
                                          torch.Generator().manual_seed(seed), blank_max=4)
        content = bx[bounds[0]: len(bx) - (len(x) - bounds[0] - len(request))]
        assert [t for t in content if t != tok.pad_token_id] == request
        assert [t for t in by if t != -100] == [t for t in y if t != -100]
        run = 0
        for t in content + [-1]:
            if t == tok.pad_token_id:
                run += 1
            else:
                runs.add(run)
                run = 0
    assert runs == {0, 1, 2, 3, 4}  # leading runs may be empty; every run after a token holds 1..4


@pytest.mark.parametrize("kwargs,match", [
    ({"stretch_fraction": 1.5}, r"stretch_fraction 1\.5 and blank_rate 0\.25 must be fractions"),
    ({"stretch_max": 0}, r"stretch_max 0 and blank_max 1 >= 1"),
    ({"blank_max": 0}, r"blank_max 0 >= 1"),
    ({"pack_tokens": -1}, r"pack_tokens must be >= 0 \(0 = no packing\), got -1"),
    ({"phoneme_fraction": -0.1}, r"phoneme_fraction -0\.1 and phoneme_drop_rate 0\.1 must be fractions"),
    ({"phoneme_drop_rate": 1.0}, r"phoneme_drop_rate 1\.0 must be fractions"),
    ({"phoneme_max_copies": 0}, r"phoneme_max_copies 0 >= 1"),
    ({"phoneme_fraction": 0.5, "phoneme_accents": ()}, r"phoneme_accents must name at least one espeak-ng voice"),
])
def test_llm_config_refuses_bad_stretch_packing_and_phoneme_settings(kwargs, match):
    with pytest.raises(lm.AuraError, match=match):
        lm.LLMTrainConfig(**kwargs)
    assert lm.LLMTrainConfig(phoneme_accents=()).phoneme_fraction == 0  # no spellings asked for: no voice needed


@needs_espeak
def test_phoneme_spellings_are_one_token_per_sound_and_stable():
    from aura_model.demo import phonemes

    texts = ["turn off the kitchen fan", "what is six times seven"]
    us = phonemes.spell(texts, "en-us")
    assert all(s and set(s) <= set(phonemes.all_phoneme_chars()) for s in us)
    assert phonemes.spell(texts, "en-us") == us and us[0] != us[1]
    assert len(us[1]) > len(texts[1].split())  # several sounds per word
    tok = lm.train_domain_tokenizer(lm.domain_texts(), 1024, phonemes=True)
    ids = tok.encode(us[0], add_special_tokens=False)
    assert len(ids) == len(us[0]) and tok.decode(ids) == us[0]
    assert tok.encode("144", add_special_tokens=False) == lm.train_domain_tokenizer(
        lm.domain_texts(), 1024).encode("144", add_special_tokens=False)  # words and digits unchanged
    with pytest.raises(phonemes.AuraError, match="no-such-espeak not found"):
        phonemes.spell(texts, executable="no-such-espeak")


def test_domain_tokenizer_keeps_digits_single_and_words_whole():
    tok = lm.train_domain_tokenizer(lm.domain_texts(), 1024)
    assert tok.convert_ids_to_tokens(tok.encode("144", add_special_tokens=False)) == ["1", "4", "4"]
    text = "what is the capital of new zealand"
    assert len(tok.encode(text, add_special_tokens=False)) == len(text.split())
    assert tok.decode(tok.encode("ok, the kitchen fan is at 60 percent")) == "ok, the kitchen fan is at 60 percent"


def test_knowledge_corpus_is_facts_not_requests():
    pairs = llm_data.knowledge_corpus()
    queries = [q for q, _ in pairs]
    assert len(set(queries)) == len(queries) > 4000
    requests = {r["text"] for s in domain.SPLITS for r in domain.sentences(s)}
    assert not requests & set(queries)  # never phrased as a listed request
    facts = dict(pairs)
    assert facts["six times seven"] == "42" and facts["twelve times twelve"] == "144"
    assert facts["three days after friday"] == "monday" and facts["twenty days in hours"] == "480"
    assert facts["country with capital moscow"] == "russia" and facts["moscow, capital of"] == "russia"


def test_train_requests_hold_no_valid_or_test_composition():
    held_out = {r["text"] for s in ("valid", "test") for r in domain.sentences(s)}
    listing = llm_data.train_requests("listing")
    pool = llm_data.train_requests("compositions")
    assert listing == domain.sentences("train")
    assert pool[: len(listing)] == listing and len(pool) > 3 * len(listing)
    assert not held_out & {r["text"] for r in pool}
    key_of = {c.text: (c.family, c.key) for c in domain._candidates()}
    held_keys = {(r["family"], r["key"]) for s in ("valid", "test") for r in domain.items(s)}
    assert not held_keys & {key_of[r["text"]] for r in pool}  # no held-out composition in any phrasing


def test_llm_quick_training_learns_and_reloads(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = lm.LLMTrainConfig.quick(steps=100, eval_splits=("valid",), eval_limit=8)
    out = lm.train_llm(tmp_path / "llm", seed=0, cfg=cfg)
    report = lm.load_llm_report(out)
    assert report["loss_last"] < report["loss_first"] / 3, (report["loss_first"], report["loss_last"])
    assert report["scores"]["valid"]["n"] == 8
    assert (out / "model.safetensors").exists()

    model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tok = AutoTokenizer.from_pretrained(str(out))
    assert model.config.model_type == "llama"
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    assert model.generation_config.eos_token_id == tok.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "what is two plus two"}],
                                     add_generation_prompt=True, tokenize=False)
    assert prompt == "<|im_start|>user\nwhat is two plus two<|im_end|>\n<|im_start|>assistant\n"
    enc = tok.apply_chat_template([{"role": "user", "content": "what is two plus two"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], len(tok))
    # the reloaded model answers exactly as the one scored in the report
    rows = domain.sentences("valid")[:8]
    assert lm.score(rows, lm.answer_texts(model, tok, [r["text"] for r in rows]))["accuracy"] == \
        report["scores"]["valid"]["accuracy"]


def test_llm_training_can_continue_from_a_saved_llm(tmp_path):
    cfg = lm.LLMTrainConfig.quick(steps=100, eval_splits=("valid",), eval_limit=8)
    first = lm.train_llm(tmp_path / "first", seed=0, cfg=cfg)
    more = lm.LLMTrainConfig.quick(steps=20, eval_splits=("valid",), eval_limit=8, init_from=str(first),
                                   stretch_fraction=0.5)
    again = lm.load_llm_report(lm.train_llm(tmp_path / "again", seed=0, cfg=more))
    fresh = lm.load_llm_report(lm.train_llm(tmp_path / "fresh", seed=0, cfg=lm.LLMTrainConfig.quick(
        steps=20, eval_splits=("valid",), eval_limit=8, stretch_fraction=0.5)))
    # the continued run starts where the first one ended, not at a random model's loss
    assert again["loss_first"] < fresh["loss_first"] / 2, (again["loss_first"], fresh["loss_first"])
    with pytest.raises(AuraError, match="tokenizer of .* differs"):
        lm.train_llm(tmp_path / "other", cfg=lm.LLMTrainConfig.quick(steps=1, vocab_size=700, init_from=str(first)))
    with pytest.raises(AuraError, match="holds no model"):
        lm.train_llm(tmp_path / "none", cfg=lm.LLMTrainConfig.quick(steps=1, init_from=str(tmp_path / "missing")))


def test_llm_training_takes_more_threads_when_told(tmp_path):
    before = torch.get_num_threads()
    answers = iter([1, 2, 2])  # asked at steps 0, 50 and 100: the second core comes free after step 0
    events = []
    try:
        lm.train_llm(tmp_path / "llm", seed=0, cfg=lm.LLMTrainConfig.quick(steps=101, eval_splits=()), threads=1,
                     threads_now=lambda: next(answers), report=events.append)
        assert [e["threads"] for e in events if e["event"] == "step"] == [1, 2, 2]
    finally:
        torch.set_num_threads(before)


# ----------------------------------------------------------------------- tiny Whisper


def test_teacher_features_are_padded_to_the_encoder_input():
    waves = [np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1,
             np.random.default_rng(1).standard_normal(120000).astype(np.float32) * 0.1]
    feats = asr.teacher_features(waves, frames=500)
    assert feats.shape == (2, 80, 500)
    # the 1 s clip: frames 100.. are padding and all hold one (silence) value
    assert torch.unique(feats[0, :, 101:]).numel() == 1
    assert feats[0, :, :99].std() > 0.01
    # the 7.5 s clip is cut to its first 5 s, which equals the features of that cut alone
    alone = asr.teacher_features([waves[1][:80000]], frames=500)
    torch.testing.assert_close(feats[1], alone[0], atol=1e-5, rtol=1e-5)


@needs_espeak
def test_whisper_quick_training_learns_and_reloads(spoken, tmp_path):
    from transformers import WhisperForConditionalGeneration

    data_dir, _ = spoken
    cfg = asr.WhisperTrainConfig.quick(steps=40, batch_size=8, max_source_positions=250, lr=3e-3,
                                       time_masks=0, freq_masks=0, ctc_weight=0.0)
    out = asr.train_whisper(data_dir, tmp_path / "asr", seed=0, cfg=cfg)
    report = asr.load_asr_report(out)
    assert report["loss_last"] < report["loss_first"] / 3, (report["loss_first"], report["loss_last"])
    assert report["scores"]["valid"]["n"] == 4 and report["input_frames"] == 500

    model, tok = asr.load_teacher(out)
    assert isinstance(model, WhisperForConditionalGeneration)
    assert model.config.max_source_positions == 250 and model.config.num_mel_bins == 80
    rows = _jsonl(data_dir / "train" / "manifest.jsonl")
    from aura_model.audio import load_audio

    waves = [load_audio(data_dir / "train" / r["audio"]) for r in rows]
    hyps = asr.transcribe(model, tok, waves)
    assert len(hyps) == len(rows) and all(isinstance(h, str) for h in hyps)
    # 40 steps on 8 clips is enough to fit them: most words of the training clips come back
    assert asr.wer([r["text"] for r in rows], hyps) < 0.5, hyps
    enc = model.model.encoder(input_features=asr.teacher_features(waves[:2], asr.input_frames(model)))
    assert enc.last_hidden_state.shape == (2, 250, cfg.d_model)


# ----------------------------------------------------------------------- the shared training loop


@dataclass
class _LoopCfg:
    steps: int = 101
    lr: float = 0.05
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 40


def test_shared_loop_steps_reports_and_evaluates():
    from aura_model.demo.training import adamw, run_steps, warmup_cosine_lr

    cfg = _LoopCfg()
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    opt = adamw(model.parameters(), cfg.lr, 0.0)
    steps_drawn, recorded, events, asked = [], [], [], []

    def make_batch(step):
        steps_drawn.append(step)
        return x, y

    def loss_fn(batch):
        assert model.training  # back in training mode after each evaluation
        loss = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
        recorded.append(float(loss.detach() + 1.0))
        return loss, loss.detach() + 1.0  # the recorded loss may differ from the minimised one

    def evaluate():
        model.eval()
        return {"score": len(steps_drawn)}

    run = run_steps(cfg, model, opt, list(model.parameters()), make_batch, loss_fn, events.append, started=0.0,
                    evaluate=evaluate, threads_now=lambda: asked.append(1) or torch.get_num_threads())
    assert steps_drawn == list(range(cfg.steps)) and run.losses == recorded
    assert run.losses[-1] < run.losses[0] - 0.1  # the model was optimised
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [0, 50, 100] and len(asked) == 3
    assert all(e["threads"] == torch.get_num_threads() for e in steps)
    assert [e["lr"] for e in steps] == [warmup_cosine_lr(s, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
                                        for s in (0, 50, 100)]
    assert opt.param_groups[0]["lr"] == steps[-1]["lr"]
    assert run.evals == [{"step": 40, "score": 40}, {"step": 80, "score": 80}]  # none at the last step
    assert [e for e in events if e["event"] == "eval"] == [{"event": "eval", **e} for e in run.evals]


def test_saved_run_report_and_done_event(tmp_path):
    from aura_model.demo.training import LoopResult, load_report, save_trained

    class Saves:
        def save_pretrained(self, folder, **_):
            (Path(folder) / f"{type(self).__name__}.saved").write_text("")

    class Model(Saves):
        pass

    class Tokenizer(Saves):
        pass

    run = LoopResult(started=0.0, losses=[4.0, 3.0, 2.0, 1.0], evals=[{"step": 2, "valid": 0.5}], train_seconds=1.26)
    events = []
    save_trained(tmp_path, Model(), Tokenizer(), "r.json", _LoopCfg(steps=4), run, {"seed": 3, "params": 7}, 2,
                 {"valid": {"accuracy": 0.75}}, events.append, {"accuracy": {"valid": 0.75}})
    report = load_report(tmp_path, "r.json")
    assert (tmp_path / "Model.saved").is_file() and (tmp_path / "Tokenizer.saved").is_file()
    assert report["config"]["steps"] == 4 and report["seed"] == 3 and report["params"] == 7
    assert (report["loss_first"], report["loss_last"], report["loss_curve"]) == (4.0, 1.5, [4.0, 3.0, 2.0, 1.0])
    assert report["evals"] == run.evals and report["scores"] == {"valid": {"accuracy": 0.75}}
    assert report["train_seconds"] == 1.3 and report["total_seconds"] >= report["train_seconds"]
    assert events == [{"event": "done", "params": 7, "train_seconds": 1.3, "total_seconds": report["total_seconds"],
                       "accuracy": {"valid": 0.75}}]


# ----------------------------------------------------------------------- build recipe (fast parts)


def test_eval_log_line_leaves_out_metrics_a_run_does_not_compute():
    from aura_model.demo.build import eval_line

    full = eval_line("AuRA", {"step": 500, "val_cosine": 0.81234, "val_kl": 3.8, "val_token_accuracy": 0.7,
                              "val_agreement": 0.125})
    assert full == "   [AuRA] eval @ 500: cosine 0.812, kl 3.800, token accuracy 0.700, answer agreement 0.125"
    no_layer = eval_line("no layer-wise loss", {"step": 500, "val_cosine": None, "val_kl": 3.5})
    assert no_layer == "   [no layer-wise loss] eval @ 500: kl 3.500"


def test_distillation_flags_start_the_stem_from_the_teacher(tmp_path):
    from aura_model.demo.build import FULL, teacher_width

    (tmp_path / "config.json").write_text(json.dumps({"d_model": 128}))
    assert teacher_width(tmp_path) == 128 and teacher_width(tmp_path / "missing") is None
    flags = FULL.flags(1, 128)
    assert flags[flags.index("--embedding.conv_channels") + 1] == "128"
    assert flags[flags.index("--distill.stem_from_teacher") + 1] == "true"
    assert flags[flags.index("--distill.w_layer") + 1] == str(FULL.w_layer)
    assert "--embedding.conv_channels" not in FULL.flags(1, None)  # an unreadable teacher: the default stem


def test_a_stopped_build_resumes_each_run_from_its_checkpoint(tmp_path):
    from aura_model.demo.build import FULL, QUICK, trainer_command

    out = tmp_path / "bundle"
    cmd = trainer_command(tmp_path / "t", tmp_path / "s", tmp_path / "d", out, FULL, [], tmp_path / "c", True, 1)
    assert cmd[cmd.index("--train.checkpoint_every") + 1] == "1000" and "--resume" not in cmd
    assert "--train.checkpoint_every" not in QUICK.flags(1)
    (out.parent / "bundle.checkpoints" / "step-00002000").mkdir(parents=True)
    assert "--resume" not in trainer_command(tmp_path / "t", tmp_path / "s", tmp_path / "d", out, FULL, [],
                                             tmp_path / "c", True, 1)  # a folder without its state is no checkpoint
    (out.parent / "bundle.checkpoints" / "step-00002000" / "state.json").write_text("{}")
    cmd = trainer_command(tmp_path / "t", tmp_path / "s", tmp_path / "d", out, FULL, ["--distill.w_kl", "0"],
                          tmp_path / "c", True, 1)
    assert cmd[-1] == "--resume" and cmd[-3:-1] == ["--distill.w_kl", "0"]


def test_distillation_flags_are_what_the_trainer_reads(tmp_path):
    """The plan's flags parse into the trainer's settings: rank-32 LoRA on attention and MLP, bidirectional audio."""
    import argparse

    from aura_model.demo.build import FULL
    from aura_model.train.command import add_arguments, spec_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--teacher", "t", "--student", "s", "--data", str(tmp_path), "--output",
                              str(tmp_path / "out"), *FULL.flags(1, 128)])
    spec = spec_from_args(args)
    assert (spec.model.lora.r, spec.model.lora.include_mlp) == (FULL.lora_r, FULL.lora_mlp) == (32, True)
    assert spec.model.prompt.audio_attention == "bidirectional"
    assert (spec.train.max_steps, spec.train.batch_size, spec.distill.w_layer) == (FULL.steps, FULL.batch_size, 3.0)
    assert spec.model.pooling.layers == FULL.pooling_layers == 2  # token-rate AuRA
    assert (spec.distill.w_count, spec.distill.w_tokens, spec.distill.w_read, spec.distill.w_slot_kl) == (1, 1, 1, 1)


def test_the_ablations_switch_off_what_they_name(tmp_path):
    """Each ablation's flags, after the plan's, leave the recipe but for its one change."""
    import argparse

    from aura_model.demo.build import ABLATIONS, FULL
    from aura_model.train.command import add_arguments, spec_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)

    def spec(extra):
        return spec_from_args(parser.parse_args(["--teacher", "t", "--student", "s", "--data", str(tmp_path),
                                                 "--output", str(tmp_path / "o"), *FULL.flags(1, 128), *extra]))

    frame_rate = spec(ABLATIONS["no pooling"])
    assert frame_rate.model.pooling.layers == 0 and not frame_rate.distill.token_rate
    assert frame_rate.distill.w_layer == 3.0 and frame_rate.distill.w_kl == 1.0
    no_text = spec(ABLATIONS["no text-state loss"])
    assert (no_text.distill.w_tokens, no_text.distill.w_read, no_text.distill.w_count) == (0, 0, 1)
    assert spec(ABLATIONS["no layer-wise loss"]).distill.w_layer == 0
    assert spec(ABLATIONS["no response KL"]).distill.w_kl == 0


@pytest.mark.parametrize("status, said", [(130, "Ctrl-C"), (143, "SIGTERM"), (1, None)])
def test_a_stopped_run_tells_how_to_go_on(tmp_path, monkeypatch, status, said):
    """Ctrl-C during the build stops each trainer at a checkpoint: the build says to run it again (another failure
    keeps its exit status)."""
    from aura_model.demo import build
    from aura_model.errors import AuraError

    class Stopped:
        def __init__(self, cmd, **kwargs):
            self.stdout, self.returncode = iter(['{"event": "progress", "stage": "prepare"}\n']), status

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(build.subprocess, "Popen", Stopped)
    with pytest.raises(AuraError) as caught:
        build.run_trainer(tmp_path / "t", tmp_path / "s", tmp_path / "d", tmp_path / "out", build.QUICK, [],
                          lambda line: None, tmp_path / "cache")
    message = str(caught.value)
    if said:
        assert said in message and "run the same `aura demo build` command again" in message
    else:
        assert message.endswith("exited with status 1")
    assert not (tmp_path / "out" / "train_trace.json").exists()
