"""The trainer end to end, in-process, on tiny random models: losses, caches, bundle, errors, interrupts."""

from __future__ import annotations

import argparse
import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from aura_model.bundle import load_bundle, read_bundle_config
from aura_model.config import RuntimeConfig
from aura_model.errors import AuraError
from aura_model.testing import make_clip_folder, save_tiny_base, save_tiny_wav2vec2, save_tiny_whisper, speech_like, tiny_llm, tiny_tokenizer
from aura_model.train import ListReporter, build_spec, train
from aura_model.processor import AuraProcessor
from aura_model.train.batching import Collator, text_prompt_ids
from aura_model.train.command import add_arguments, run
from aura_model.train.data import Item
from aura_model.train.objective import gather_spans, span_mask, with_echo_items
from aura_model.train.teacher import Teacher

from helpers import assert_close

TINY = {  # small and fast: one CPU thread (no spin-waiting on a shared machine), a thin embedding and LoRA
    "train.num_threads": "1", "embedding.conv_channels": "32", "lora.r": "8", "train.response_max_tokens": "6",
    "train.batch_size": "8", "train.lr": "3e-3", "train.scheduler": "constant", "train.max_steps": "3",
    "train.val_fraction": "0.2",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    return {
        "root": root,
        "base": save_tiny_base(root / "base"),
        "whisper": save_tiny_whisper(root / "whisper", max_source_positions=100),
        "clips": make_clip_folder(root / "clips", 10),
        "cache": root / "cache",
    }


def make_spec(world, out, overrides=None, resume=False, **paths):
    o = dict(TINY, **{"train.cache_dir": str(world["cache"])})
    o.update({k: str(v) for k, v in (overrides or {}).items()})
    p = {"teacher": str(world["whisper"]), "student": str(world["base"]), "data": str(world["clips"]),
         "output": str(out)}
    p.update({k: str(v) for k, v in paths.items()})
    return build_spec(None, o, p, resume=resume)


def tensors(bundle):
    out = {}
    for name in ("adapter_model.safetensors", "audio_embedding.safetensors"):
        out.update({f"{name}:{k}": v for k, v in load_file(str(bundle / name)).items()})
    return out


# ---------------------------------------------------------------------- the main path
def test_short_run_halves_the_loss_and_writes_a_valid_bundle(world, tmp_path):
    rep = ListReporter()
    out = tmp_path / "bundle"
    result = train(make_spec(world, out, {"train.max_steps": 25, "train.eval_every": 10}), rep)
    first, last = result.losses[0]["loss"], result.losses[-1]["loss"]
    print(f"\nloss {first:.4f} -> {last:.4f} in {result.steps} steps ({result.samples_per_s:.1f} samples/s)")
    assert last <= 0.5 * first
    assert result.exit_code == 0 and result.output == out and result.steps == 25

    progress = [e for e in rep.of("progress") if e["stage"] == "train"]
    assert [e["step"] for e in progress] == list(range(1, 26))
    for key in ("step", "total_steps", "epoch", "loss", "loss_layer", "loss_kl", "lr", "samples_per_s", "eta_s"):
        assert progress[-1][key] is not None, key
    assert "loss_ce" not in progress[-1]  # w_ce = 0: that term is off
    evals = rep.of("eval")
    assert [e["step"] for e in evals] == [10, 20, 25]  # every 10 steps and at the end
    for key in ("val_cosine_s1_t1", "val_cosine_s2_t2", "val_cosine", "val_kl", "val_agreement", "val_loss"):
        assert key in evals[-1], key
    assert evals[-1]["val_cosine"] > evals[0]["val_cosine"]  # the student moves towards the teacher
    (finished,) = rep.of("finished")
    assert finished["output"] == str(out) and finished["data"]["n_train"] == 8 and finished["data"]["n_val"] == 2

    meta = read_bundle_config(out)
    assert meta["teacher"] == str(world["whisper"]) and meta["base"]["id"] == str(world["base"])
    training = meta["training"]
    assert training["steps"] == 25 and training["layer_map"] == [[1, 1], [2, 2]]
    assert training["first_loss"] == pytest.approx(first) and training["teacher_loaded"] is True
    assert meta["metrics"]["val_cosine"] == pytest.approx(evals[-1]["val_cosine"])
    assert not any("heads" in k for k in tensors(out))  # projection heads are training-only
    loaded = load_bundle(out, RuntimeConfig(device="cpu"))
    trained = load_file(str(out / "audio_embedding.safetensors"))
    assert_close(loaded.model.embedding.conv1.weight, trained["conv1.weight"], atol=0, rtol=0)


def test_warm_cache_never_loads_the_teacher(world, tmp_path):
    cache = tmp_path / "cache"
    cold = train(make_spec(world, tmp_path / "a", {"train.max_steps": 1, "train.cache_dir": cache}), ListReporter())
    assert cold.teacher_loaded and cold.cache["teacher_misses"] == 10 and cold.cache["response_misses"] == 10

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher was loaded although everything was cached")

    warm = train(make_spec(world, tmp_path / "b", {"train.max_steps": 1, "train.cache_dir": cache}), ListReporter(),
                 teacher_loader=refuse)
    assert not warm.teacher_loaded
    assert warm.cache["teacher_hits"] == 10 and warm.cache["teacher_misses"] == 0 and warm.cache["response_hits"] == 10
    assert warm.losses[0]["loss"] == pytest.approx(cold.losses[0]["loss"], abs=1e-6)  # same targets from the cache


def test_teacher_states_are_cached_layer_by_layer(world, tmp_path):
    knobs = {"train.max_steps": 1, "train.cache_dir": tmp_path / "cache"}
    asked: list[list[int]] = []

    def recording(*args):
        teacher = Teacher.load(*args)
        encode = teacher.encode
        teacher.encode = lambda waves, sr, layers: asked.append(list(layers)) or encode(waves, sr, layers)
        return teacher

    top = train(make_spec(world, tmp_path / "a", {**knobs, "distill.layer_map": "[[1,2]]"}), ListReporter(),
                teacher_loader=recording)
    assert top.cache["teacher_misses"] == 10 and asked and all(layers == [2] for layers in asked)
    asked.clear()
    both = train(make_spec(world, tmp_path / "b", knobs), ListReporter(), teacher_loader=recording)  # [[1,1],[2,2]]
    assert both.cache["teacher_misses"] == 10 and asked and all(layers == [1] for layers in asked)  # layer 2 is kept
    assert len(list((tmp_path / "cache" / "teacher").rglob("*.safetensors"))) == 20  # one entry per clip and layer

    def refuse(*args, **kwargs):
        raise AssertionError("the teacher was loaded although both layers were cached")

    low = train(make_spec(world, tmp_path / "c", {**knobs, "distill.layer_map": "[[2,1]]"}), ListReporter(),
                teacher_loader=refuse)
    assert low.cache["teacher_hits"] == 10 and low.cache["teacher_misses"] == 0 and low.output.is_dir()


def test_teacher_writes_missing_transcripts_once(world, tmp_path):
    data = make_clip_folder(tmp_path / "untranscribed", 4, seed=5, transcripts=False)
    cache = tmp_path / "cache"
    first = train(make_spec(world, tmp_path / "a", {"train.max_steps": 1, "train.cache_dir": cache}, data=data),
                  ListReporter())
    written = first.data["transcripts"].get("teacher", 0)
    empty = [s for s in first.data["skipped"] if "teacher's transcript of it is empty" in s["reason"]]
    assert written + len(empty) == 4 and written >= 1
    assert first.cache["transcript_misses"] == 4 and len(list((cache / "transcripts").rglob("*.json"))) == 4
    again = train(make_spec(world, tmp_path / "b", {"train.max_steps": 1, "train.cache_dir": cache}, data=data),
                  ListReporter(), teacher_loader=lambda *a: pytest.fail("teacher loaded"))
    assert again.cache["transcript_hits"] == 4 and again.data["transcripts"] == first.data["transcripts"]


def test_loss_terms_switch_off(world, tmp_path):
    only_kl = train(make_spec(world, tmp_path / "a", {"distill.w_layer": 0, "train.max_steps": 2}), ListReporter(),
                    teacher_loader=lambda *a: pytest.fail("no layer loss and transcripts given: no teacher needed"))
    assert set(only_kl.losses[-1]) == {"step", "loss", "loss_kl"}
    assert "val_cosine" not in only_kl.metrics and "val_kl" in only_kl.metrics
    only_ce = train(make_spec(world, tmp_path / "b", {"distill.w_layer": 0, "distill.w_kl": 0, "distill.w_ce": 1,
                                                     "train.max_steps": 2}), ListReporter())
    assert set(only_ce.losses[-1]) == {"step", "loss", "loss_ce"}
    assert only_ce.losses[-1]["loss"] == pytest.approx(only_ce.losses[-1]["loss_ce"])


def train_one_term(world, output, term: str, extra: dict | None = None):
    """20 steps with only the ``term`` loss on (validated every 10); returns (spec, result, eval events).
    Asserts that the loss trace holds that term alone."""
    spec = {"distill.w_layer": 0, "distill.w_kl": 0, f"distill.w_{term}": 1, "train.max_steps": 20,
            "train.eval_every": 10, **(extra or {})}
    rep = ListReporter()
    run = train(make_spec(world, output, spec), rep)
    assert set(run.losses[-1]) == {"step", "loss", f"loss_{term}"}
    return spec, run, rep.of("eval")


def test_text_state_loss_pulls_the_student_towards_the_base_reading_the_transcript(world, tmp_path):
    spec, run, evals = train_one_term(world, tmp_path / "a", "state")
    assert run.losses[-1]["loss"] < 0.7 * run.losses[0]["loss"]
    assert evals[-1]["val_loss_state"] < evals[0]["val_loss_state"]
    one = train(make_spec(world, tmp_path / "b", dict(spec, **{"distill.state_layers": "[2]", "train.max_steps": 1})),
                ListReporter())
    assert one.losses[0]["loss_state"] != pytest.approx(run.losses[0]["loss_state"])  # fewer layers compared
    with pytest.raises(AuraError, match="state_layers \\[9\\]: the student LLM has 4 layers"):
        train(make_spec(world, tmp_path / "c", dict(spec, **{"distill.state_layers": "[9]"})), ListReporter())


def test_text_alignment_loss_trains_and_reports(world, tmp_path):
    _, run, evals = train_one_term(world, tmp_path / "a", "align")
    assert run.losses[-1]["loss"] < 0.8 * run.losses[0]["loss"]
    assert [e["step"] for e in evals] == [10, 20] and all(0 <= e["val_loss_align"] < 2 for e in evals)


def test_ctc_loss_spells_the_transcript_and_reports(world, tmp_path):
    spec, run, evals = train_one_term(world, tmp_path / "a", "ctc", {"distill.ctc_layer": 0})
    assert run.losses[-1]["loss"] < 0.8 * run.losses[0]["loss"]
    assert evals[-1]["val_loss_ctc"] < evals[0]["val_loss_ctc"]
    top = train(make_spec(world, tmp_path / "b", dict(spec, **{"distill.ctc_layer": None, "train.max_steps": 1})),
                ListReporter())
    assert top.losses[0]["loss_ctc"] != pytest.approx(run.losses[0]["loss_ctc"])  # another layer spells
    with pytest.raises(AuraError, match="ctc_layer 9: the student LLM has 4 layers"):
        train(make_spec(world, tmp_path / "c", dict(spec, **{"distill.ctc_layer": 9})), ListReporter())


def test_teacher_decoder_term_trains_the_head_towards_what_the_whisper_decoder_reads(world, tmp_path):
    spec = {"distill.w_kl": 0, "distill.w_decode": 1, "train.max_steps": 20, "train.eval_every": 10}
    rep = ListReporter()
    run = train(make_spec(world, tmp_path / "a", spec), rep)
    assert set(run.losses[-1]) == {"step", "loss", "loss_layer", "loss_decode"}
    evals = rep.of("eval")
    assert evals[-1]["val_loss_decode"] < evals[0]["val_loss_decode"]
    assert run.losses[-1]["loss_decode"] < run.losses[0]["loss_decode"]
    assert any("teacher decoder term" in m for m in rep.messages)
    # training-only: the bundle holds the adapter and the embedding, never the teacher's decoder
    assert not any("decoder" in k for k in tensors(tmp_path / "a"))
    with pytest.raises(AuraError, match="no pair of the layer map \\[\\[1, 1\\]\\] ends there"):
        train(make_spec(world, tmp_path / "b", dict(spec, **{"distill.layer_map": "[[1, 1]]"})), ListReporter())
    with pytest.raises(AuraError, match="w_decode reads the teacher's own decoder, but teacher .* has none"):
        train(make_spec(world, tmp_path / "c", spec, teacher=save_tiny_wav2vec2(tmp_path / "w2v")), ListReporter())


def test_packed_audio_positions_train_and_ship(world, tmp_path):
    """--prompt.audio_position_step reaches the student's positions (not the base LLM's: it reads text) and the
    bundle, so inference sees the positions training saw."""
    one_step = {"train.max_steps": 1, "train.eval_every": 0}
    plain = train(make_spec(world, tmp_path / "plain", one_step), ListReporter())
    packed = train(make_spec(world, tmp_path / "packed", dict(one_step, **{"prompt.audio_position_step": 0.25})),
                   ListReporter())
    assert packed.losses[0]["loss_kl"] != pytest.approx(plain.losses[0]["loss_kl"])
    assert packed.losses[0]["loss_layer"] != pytest.approx(plain.losses[0]["loss_layer"])
    assert read_bundle_config(packed.output)["model"]["prompt"]["audio_position_step"] == 0.25
    from aura_model.assistant import Assistant

    asst = Assistant.open(packed.output, runtime=RuntimeConfig(device="cpu", quantization="none"))
    enc = asst.prepare([speech_like(0.8, seed=2)], [None]).encoded
    (start, n), = enc.audio_spans[0]
    steps = enc.position_ids[0, start:start + n + 1].diff()
    assert torch.allclose(steps, torch.full_like(steps, 0.25))


def test_pad_left_packs_only_the_audio_spans():
    from aura_model.train.batching import pad_left

    rows = pad_left([[1, 9, 9, 9, 9, 5], [1, 2, 9, 9, 5]], [[(1, 4)], [(2, 2)]], 0, audio_position_step=0.5)
    assert rows.position_ids.tolist() == [[0, 1, 1.5, 2, 2.5, 3], [0, 0, 1, 2, 2.5, 3]]
    text = pad_left([[1, 2, 3], [4, 5]], [[], []], 0, audio_position_step=0.5)  # transcript rows: whole steps
    assert text.position_ids.dtype == torch.long and text.position_ids.tolist() == [[0, 1, 2], [0, 0, 1]]


def test_transcript_spans_stand_where_the_audio_stands():
    from aura_model.train.batching import pad_left, transcript_spans

    student = pad_left([[1, 2, 9, 9, 9, 5, 6, 7], [1, 2, 9, 9, 5, 6, 7, 8, 8]], [[(2, 3)], [(2, 2)]], 0)
    base = [[1, 2, 30, 31, 5, 6, 7], [1, 2, 40, 5, 6, 7, 8, 8]]
    assert transcript_spans(student, base) == [[(2, 2)], [(2, 1)]]
    assert transcript_spans(student, [[1, 3, 30, 5, 6, 7], [1, 2, 5, 6, 7, 8, 8]]) == [[], []]  # no common prefix; no words


def test_shared_suffix_covers_what_follows_the_audio_in_both_prompts():
    from aura_model.train.batching import pad_left, shared_suffix_mask

    student = pad_left([[1, 2, 9, 9, 9, 5, 6, 7], [1, 2, 9, 9, 5, 6, 7, 8]], [[(2, 3)], [(2, 2)]], 0)
    mask = shared_suffix_mask(student, [[1, 2, 30, 31, 5, 6, 7], [1, 2, 40, 5, 6, 7, 8]])
    assert mask.tolist() == [[False, True, True, True], [True, True, True, True]]
    # a tokenizer that merged the last word with what follows shortens the span, never misaligns it
    assert shared_suffix_mask(student, [[1, 5, 6, 7], [1, 2, 40, 55, 6, 7, 8]]).tolist() == [
        [True, True, True], [True, True, True]]


def test_wav2vec2_teacher_without_transcripts_trains_on_the_layer_loss(world, tmp_path):
    w2v = save_tiny_wav2vec2(tmp_path / "w2v")
    data = make_clip_folder(tmp_path / "untranscribed", 4, seed=6, transcripts=False)
    with pytest.raises(AuraError, match=r"no usable items.*cannot transcribe"):
        train(make_spec(world, tmp_path / "a", teacher=w2v, data=data), ListReporter())
    result = train(make_spec(world, tmp_path / "b", {"distill.w_kl": 0, "train.max_steps": 2}, teacher=w2v, data=data),
                   ListReporter())
    assert result.output.is_dir() and set(result.losses[-1]) == {"step", "loss", "loss_layer"}
    assert read_bundle_config(result.output)["training"]["teacher_info"]["model_type"] == "wav2vec2"


def test_gradient_checkpointing_does_not_change_the_math(world, tmp_path):
    plain = train(make_spec(world, tmp_path / "a", {"train.max_steps": 3}), ListReporter())
    ckpt = train(make_spec(world, tmp_path / "b", {"train.max_steps": 3, "train.gradient_checkpointing": True}),
                 ListReporter())
    for a, b in zip(plain.losses, ckpt.losses):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)


def test_student_masks_change_what_the_student_hears_during_training_only(world, tmp_path):
    knobs = {"train.max_steps": 2, "train.eval_every": 1}
    plain = train(make_spec(world, tmp_path / "a", knobs), ListReporter())
    masks = {"distill.student_time_masks": 3, "distill.student_time_width": 0.2, "distill.student_freq_masks": 2}
    masked = train(make_spec(world, tmp_path / "b", dict(knobs, **masks)), ListReporter())
    again = train(make_spec(world, tmp_path / "c", dict(knobs, **masks)), ListReporter())
    assert masked.losses[0]["loss"] != pytest.approx(plain.losses[0]["loss"], abs=1e-6)  # step 1: same weights
    assert [r["loss"] for r in again.losses] == [r["loss"] for r in masked.losses]  # seeded
    rep_plain, rep_masked = ListReporter(), ListReporter()
    # validation of the same weights never masks: the first eval (after step 1) differs only through step 1's update,
    # so score the untouched start instead, with a run of zero learning rate
    zero = {"train.max_steps": 1, "train.eval_every": 1, "train.lr": 1e-12}
    a = train(make_spec(world, tmp_path / "z1", zero), rep_plain)
    b = train(make_spec(world, tmp_path / "z2", dict(zero, **masks)), rep_masked)
    assert b.metrics["val_kl"] == pytest.approx(a.metrics["val_kl"], rel=1e-5)
    assert b.losses[0]["loss"] != pytest.approx(a.losses[0]["loss"], abs=1e-6)


# ---------------------------------------------------------------------- bad data and bad models
def test_corrupt_empty_and_untranscribed_items_are_skipped_and_reported(world, tmp_path):
    data = make_clip_folder(tmp_path / "messy", 5, seed=7)
    (data / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(64))
    (data / "corrupt.txt").write_text("hello")
    (data / "empty.wav").write_bytes(b"")
    import soundfile as sf

    sf.write(str(data / "no_words.wav"), speech_like(0.7, 9), 16000)
    (data / "no_words.txt").write_bytes(b"")  # a 0-byte transcript
    rep = ListReporter()
    result = train(make_spec(world, tmp_path / "out", {"train.max_steps": 2}, data=data), rep)
    skipped = {s["item"]: s["reason"] for s in result.data["skipped"]}
    assert set(skipped) == {"corrupt.wav", "empty.wav", "no_words.wav"}
    assert "empty (0 samples)" in skipped["empty.wav"] or "cannot read audio" in skipped["empty.wav"]
    assert "transcript file no_words.txt is empty" == skipped["no_words.wav"]
    assert result.data["n_train"] + result.data["n_val"] == 5
    (finished,) = rep.of("finished")
    assert finished["data"]["n_skipped"] == 3
    assert read_bundle_config(result.output)["training"]["data_report"]["n_skipped"] == 3
    assert any("skipped corrupt.wav" in m for m in rep.messages)


def test_no_usable_items_is_a_clear_error(world, tmp_path):
    data = tmp_path / "all-bad"
    data.mkdir()
    (data / "a.wav").write_bytes(b"")
    (data / "b.wav").write_bytes(b"not audio at all")
    with pytest.raises(AuraError, match=r"no usable items in .*all 2 skipped - a.wav: .*b.wav"):
        train(make_spec(world, tmp_path / "out", data=data), ListReporter())
    assert not (tmp_path / "out").exists()


def test_student_without_chat_template_is_refused(world, tmp_path):
    tok = tiny_tokenizer()
    tok.chat_template = None
    plain = tmp_path / "plain-lm"
    tiny_llm(vocab_size=len(tok)).save_pretrained(str(plain))
    tok.save_pretrained(str(plain))
    with pytest.raises(AuraError, match="has no chat template"):
        train(make_spec(world, tmp_path / "out", student=plain), ListReporter())


def test_teachers_that_are_not_audio_encoders_are_refused(world, tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64).save_pretrained(
        str(tmp_path / "bert"))
    with pytest.raises(AuraError, match="not audio"):
        train(make_spec(world, tmp_path / "o1", teacher=tmp_path / "bert"), ListReporter())

    class NoStates(torch.nn.Module):
        def get_encoder(self):
            return self

        def forward(self, input_features, output_hidden_states=False):
            return (torch.zeros(1),)  # a plain tuple: no hidden_states anywhere

    def stub_loader(info, device, dtype, trust):
        return Teacher(info, NoStates(), device, dtype)

    with pytest.raises(AuraError, match="returned no hidden_states"):
        train(make_spec(world, tmp_path / "o2", {"train.cache_dir": tmp_path / "fresh"}), ListReporter(),
              teacher_loader=stub_loader)


# ---------------------------------------------------------------------- interrupts, checkpoints, resume
def sigterm_at(step):
    def hook(s):
        if s == step:
            os.kill(os.getpid(), signal.SIGTERM)
    return hook


def test_sigterm_checkpoints_and_resume_matches_an_uninterrupted_run(world, tmp_path):
    knobs = {"train.max_steps": 9, "train.batch_size": 3, "train.grad_accum": 2, "train.checkpoint_every": 2,
             "train.keep_checkpoints": 2, "train.deterministic": True, "train.eval_every": 4,
             "train.warmup_steps": 2, "train.scheduler": "cosine", "distill.w_ce": 0.5,
             "distill.student_time_masks": 2, "distill.student_freq_masks": 2}  # masks drawn again alike on resume
    whole = train(make_spec(world, tmp_path / "whole", knobs), ListReporter())
    handler = signal.getsignal(signal.SIGTERM)
    rep = ListReporter()
    cut = train(make_spec(world, tmp_path / "cut", knobs), rep, on_step=sigterm_at(5))
    assert cut.interrupted == "SIGTERM" and cut.exit_code == 143 and cut.output is None
    assert [(e["step"], e["reason"]) for e in rep.of("checkpoint")] == [(2, "interval"), (4, "interval"),
                                                                         (5, "SIGTERM")]
    ckpts = sorted(p.name for p in (tmp_path / "cut.checkpoints").iterdir())
    assert ckpts == ["step-00000004", "step-00000005"]  # the last two kept, no temp folders left
    assert signal.getsignal(signal.SIGTERM) is handler  # our handler is gone again

    rep2 = ListReporter()
    resumed = train(make_spec(world, tmp_path / "cut", knobs, resume=True), rep2)
    assert [e["step"] for e in rep2.of("progress") if e["stage"] == "train"][0] == 6
    assert resumed.steps == 9 and len(resumed.losses) == 9
    a, b = tensors(tmp_path / "whole"), tensors(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert_close(b[k], a[k], atol=1e-6, rtol=0, what=k)
    assert resumed.losses[-1]["loss"] == pytest.approx(whole.losses[-1]["loss"], abs=1e-6)


def test_resume_refuses_missing_or_mismatched_checkpoints(world, tmp_path):
    with pytest.raises(AuraError, match="--resume: no checkpoint in"):
        train(make_spec(world, tmp_path / "none", resume=True), ListReporter())
    train(make_spec(world, tmp_path / "run", {"train.checkpoint_every": 1, "train.max_steps": 1}), ListReporter())
    with pytest.raises(AuraError, match=r"other settings \(train.lr 0.003 -> 0.001\)"):
        train(make_spec(world, tmp_path / "run", {"train.lr": "1e-3", "train.max_steps": 2}, resume=True),
              ListReporter())
    more = train(make_spec(world, tmp_path / "run", {"train.max_steps": 2}, resume=True), ListReporter())
    assert more.steps == 2 and len(more.losses) == 2  # a longer run continues where the last one stopped


# ---------------------------------------------------------------------- the command
def command(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return run(parser.parse_args(argv))


def test_command_prints_json_lines_and_errors(world, tmp_path, capsys):
    flags = [f"--{k}={v}" for k, v in TINY.items()] + [f"--train.cache_dir={world['cache']}"]
    code = command(["--teacher", str(world["whisper"]), "--student", str(world["base"]), "--data", str(world["clips"]),
                    "--output", str(tmp_path / "out"), "--max-steps", "2", "--progress-json", *flags])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    events = [json.loads(line) for line in lines]  # every stdout line is one JSON object
    assert {e["event"] for e in events} == {"progress", "eval", "finished"}
    assert events[-1]["event"] == "finished" and events[-1]["step"] == 2

    code = command(["--teacher", str(world["whisper"]), "--student", str(world["base"]),
                    "--data", str(tmp_path / "missing"), "--output", str(tmp_path / "o2"), "--progress-json", *flags])
    captured = capsys.readouterr()
    assert code == 1
    (error,) = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert error["event"] == "error" and "does not exist" in error["message"]
    assert "aura train: error:" in captured.err

    assert command(["--teacher", "t"]) == 1
    assert "missing --student, --data, --output" in capsys.readouterr().err


@pytest.mark.filterwarnings("error:.*autograd kernel was not registered")  # gradients must flow through 4-bit layers
def test_4bit_base_trains_on_cpu(world, tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes not installed")
    base = save_tiny_base(tmp_path / "base128", hidden=128, intermediate=256)
    result = train(make_spec(world, tmp_path / "q", {"train.quantization": "4bit", "train.max_steps": 2,
                                                      "train.gradient_checkpointing": True}, student=base),
                   ListReporter())
    assert result.output.is_dir() and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.losses)
    assert read_bundle_config(result.output)["training"]["quantization"] == "4bit"


def test_dataloader_workers_and_bf16_autocast(world, tmp_path):
    plain = train(make_spec(world, tmp_path / "a"), ListReporter())
    workers = train(make_spec(world, tmp_path / "b", {"train.num_workers": 2}), ListReporter())
    assert [r["loss"] for r in workers.losses] == [r["loss"] for r in plain.losses]  # same batches, same order
    bf16 = train(make_spec(world, tmp_path / "c", {"train.mixed_precision": "bf16"}), ListReporter())
    assert read_bundle_config(bf16.output)["training"]["mixed_precision"] == "bf16"
    for a, b in zip(plain.losses, bf16.losses):
        assert b["loss"] == pytest.approx(a["loss"], rel=0.02)  # autocast rounds, the math is the same


def test_trains_on_a_huggingface_dataset(world, tmp_path):
    datasets = pytest.importorskip("datasets")
    wavs = sorted(str(p) for p in world["clips"].glob("*.wav"))[:6]
    texts = [(world["clips"] / f"{os.path.basename(p)[:-4]}.txt").read_text().strip() for p in wavs]
    ds = datasets.Dataset.from_dict({"audio": wavs, "text": texts}).cast_column("audio", datasets.Audio())
    ds.save_to_disk(str(tmp_path / "hf"))
    cache = {"train.max_steps": 1, "train.cache_dir": tmp_path / "cache"}
    folder = train(make_spec(world, tmp_path / "a", cache), ListReporter())
    assert folder.cache["teacher_misses"] == 10
    result = train(make_spec(world, tmp_path / "b", cache, data=tmp_path / "hf"), ListReporter())
    assert result.data["kind"] == "hf" and result.data["n_train"] + result.data["n_val"] == 6
    assert result.output.is_dir() and result.losses
    # the same audio as six of the folder's clips: the cache is keyed by content, not by file or dataset
    assert result.cache["teacher_hits"] == 6 and result.cache["teacher_misses"] == 0


def test_terminal_progress_bar(world, tmp_path):
    import io

    from aura_model.train import TqdmReporter

    stream = io.StringIO()
    train(make_spec(world, tmp_path / "out"), TqdmReporter(stream=stream))
    text = stream.getvalue()
    assert "train: 100%" in text and "loss=" in text and "eval @ step 3" in text and "finished at step 3" in text


def test_a_stop_while_filling_the_cache_keeps_what_was_cached(world, tmp_path):
    knobs = {"train.cache_dir": tmp_path / "cache", "train.teacher_batch_size": 4, "train.max_steps": 1}

    def load_then_sigterm(*args):
        teacher = Teacher.load(*args)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the teacher works on its first batch of clips
        return teacher

    rep = ListReporter()
    stopped = train(make_spec(world, tmp_path / "a", knobs), rep, teacher_loader=load_then_sigterm)
    assert stopped.interrupted == "SIGTERM" and stopped.exit_code == 143
    assert stopped.checkpoint is None and stopped.output is None and not rep.of("checkpoint")
    # the first batch of 4 clips is kept, one entry for each of the 2 mapped teacher layers
    assert len(list((tmp_path / "cache" / "teacher").rglob("*.safetensors"))) == 8
    again = train(make_spec(world, tmp_path / "a", knobs), ListReporter())
    assert again.cache["teacher_hits"] == 4 and again.cache["teacher_misses"] == 6 and again.output.is_dir()


# ---------------------------------------------------------------------- echo items
def test_echo_prompt_goes_after_the_audio_for_the_student_and_after_the_transcript_for_the_base():
    processor = AuraProcessor(tiny_tokenizer())
    base = processor.tokenizer.decode(text_prompt_ids(processor, "turn on the light", "say it back"))
    assert base.index("turn on the light") < base.index("say it back")
    assert "say it back" not in processor.tokenizer.decode(text_prompt_ids(processor, "turn on the light"))
    collate = Collator(None, processor, None, None, [], want_response=False, want_base=False)
    prompt = collate.audio_prompt("say it back")
    assert prompt.index(processor.prompt.placeholder) < prompt.index("say it back")  # the audio states stay task-blind
    assert "say it back" not in collate.audio_prompt("")

    items = [Item(key="a.wav", transcript="x", response=[1, 2]), Item(key="b.wav", transcript="y")]
    assert with_echo_items(items, "") is items
    echoed = with_echo_items(items, "say it back")
    assert [(it.key, it.instruction, it.response) for it in echoed[2:]] == [
        ("a.wav#echo", "say it back", None), ("b.wav#echo", "say it back", None)]
    assert items[0].instruction == "" and items[0].response == [1, 2]  # the originals are untouched


def test_echo_items_double_the_training_clips_not_the_validation(world, tmp_path):
    rep = ListReporter()
    result = train(make_spec(world, tmp_path / "a", {"distill.echo_prompt": "say it back", "train.max_steps": 2,
                                                     "train.cache_dir": tmp_path / "cache"}), rep)
    assert result.exit_code == 0 and result.data["n_train"] == 8 and result.data["n_val"] == 2
    assert result.cache["response_misses"] == 10 + 8  # every clip once, each training clip again with the echo prompt
    assert any(m.startswith("training: 16 clips") for m in rep.messages)
    with pytest.raises(AuraError, match="echo_prompt needs a response term"):
        make_spec(world, tmp_path / "b", {"distill.echo_prompt": "say it back", "distill.w_kl": 0})


# ---------------------------------------------------------------------- stem from the teacher
def test_embedding_stem_starts_from_the_whisper_teachers_conv_stem(world, tmp_path):
    from transformers import WhisperForConditionalGeneration

    from aura_model.config import EmbeddingConfig
    from aura_model.embedding import AudioEmbedding
    from aura_model.train.teacher import inspect_teacher, whisper_stem

    info = inspect_teacher(str(world["whisper"]))
    stem = whisper_stem(info)
    encoder = WhisperForConditionalGeneration.from_pretrained(str(world["whisper"])).model.encoder
    assert_close(stem["conv2.weight"], encoder.conv2.weight, atol=0, rtol=0)
    emb = AudioEmbedding(80, 48, EmbeddingConfig(conv_channels=info.width))
    emb.load_stem(stem)
    assert_close(emb.conv1.weight, encoder.conv1.weight, atol=0, rtol=0)
    assert_close(emb.conv2.bias, encoder.conv2.bias, atol=0, rtol=0)
    with pytest.raises(ValueError, match="conv1.weight: expected shape"):
        AudioEmbedding(80, 48, EmbeddingConfig(conv_channels=info.width + 1)).load_stem(stem)

    rep = ListReporter()
    out = tmp_path / "fits"
    train(make_spec(world, out, {"embedding.conv_channels": info.width, "train.max_steps": 1}), rep)
    assert "embedding: conv stem starts from the teacher's" in rep.messages
    rep = ListReporter()
    train(make_spec(world, tmp_path / "random", {"distill.stem_from_teacher": "false", "train.max_steps": 1,
                                                 "embedding.conv_channels": info.width}), rep)
    assert not any(m.startswith("embedding: conv stem") for m in rep.messages)
    rep = ListReporter()
    train(make_spec(world, tmp_path / "misfit", {"train.max_steps": 1}), rep)  # TINY has 32 channels
    assert any(m.startswith("embedding: conv stem starts random, the teacher's does not fit") for m in rep.messages)


# ---------------------------------------------------------------------- pure parts of the loop
def test_lr_schedule_warms_up_then_holds_or_decays_to_zero_at_the_last_step():
    from aura_model.train.runtime import lr_lambda

    for name in ("constant", "linear", "cosine"):
        f = lr_lambda(name, warmup=4, total=12)
        assert [f(s) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]  # linear warm-up from 0
    assert lr_lambda("constant", 4, 12)(12) == 1.0
    assert lr_lambda("linear", 4, 12)(8) == pytest.approx(0.5) and lr_lambda("linear", 4, 12)(12) == 0.0
    cosine = lr_lambda("cosine", 4, 12)
    assert cosine(8) == pytest.approx(0.5) and cosine(12) == pytest.approx(0.0) and cosine(20) == pytest.approx(0.0)
    assert lr_lambda("linear", 0, 10)(0) == 1.0  # no warm-up: the full rate from the first step


def test_step_plan_counts_batches_per_process_and_steps_per_accumulation_window():
    from aura_model.train.runtime import StepPlan

    plan = StepPlan.of(n_items=10, batch_size=3, grad_accum=2, world=2, epochs=3, max_steps=0)
    assert (plan.batches_per_epoch, plan.steps_per_epoch, plan.total_steps) == (2, 1, 3)  # 5 clips per process
    assert StepPlan.of(10, 3, 2, 2, epochs=3, max_steps=7).total_steps == 7  # max_steps wins
    assert plan.epochs_done(epoch=1, batch=1) == 1.5


def test_step_record_names_every_term_and_pops_the_total():
    from aura_model.train.reporting import record_fields, step_record
    from aura_model.train.runtime import reduce_named

    class OneProcess:
        num_processes = 1

    losses = reduce_named({"total": 1.5, "layer": 1.0, "kl": 0.5}, OneProcess(), "mean")
    record = step_record(4, losses)
    assert list(record) == ["step", "loss", "loss_kl", "loss_layer"] and record["loss"] == 1.5
    assert record_fields(record) == {"loss": 1.5, "loss_kl": 0.5, "loss_layer": 1.0}


def test_named_values_travel_between_processes_as_one_tensor_in_key_order():
    from aura_model.train.runtime import reduce_named

    class TwoProcesses:  # as if the other process held the same values
        num_processes, device = 2, torch.device("cpu")

        def reduce(self, tensor, op):
            assert op == "sum" and tensor.dtype == torch.float64
            return tensor * 2

    assert reduce_named({"b": 1.0, "a": 3.0, "c": 0.5}, TwoProcesses(), "sum") == {"a": 6.0, "b": 2.0, "c": 1.0}


def test_bundle_history_is_thinned_evenly_and_keeps_the_last_step():
    from aura_model.train.reporting import HISTORY_IN_BUNDLE, thinned_history

    short = [{"step": i} for i in range(1, HISTORY_IN_BUNDLE + 1)]
    assert thinned_history(short) == short
    long = [{"step": i} for i in range(1, 451)]  # stride 3
    kept = [e["step"] for e in thinned_history(long)]
    assert kept[:3] == [1, 4, 7] and kept[-2:] == [448, 450] and len(kept) == 151
    assert thinned_history([]) == []


def test_validation_metrics_from_named_sums():
    from aura_model.distill import DistillConfig
    from aura_model.train.validation import cosine_name, empty_sums, metrics_from_sums

    sums = empty_sums(2)
    sums.update({"items": 4, "layer_positions": 10.0, "layer_sum": 5.0, cosine_name(0): 8.0, cosine_name(1): 6.0,
                 "response_tokens": 20.0, "kl_sum": 2.0, "ce_sum": 30.0, "token_hits": 5.0, "agreements": 1.0,
                 "ctc_items": 4.0, "ctc_sum": 12.0})
    d = DistillConfig(w_layer=1.0, w_kl=2.0, w_ce=0.0, w_ctc=0.5)
    m = metrics_from_sums(sums, [(1, 3), (2, 6)], d)
    assert m == pytest.approx({
        "val_items": 4, "val_loss_layer": 0.5, "val_cosine_s1_t3": 0.8, "val_cosine_s2_t6": 0.6, "val_cosine": 0.7,
        "val_kl": 0.1, "val_loss_ce": 1.5, "val_loss_kl": 0.1, "val_token_accuracy": 0.25, "val_agreement": 0.25,
        "val_loss_ctc": 3.0,
        "val_loss": 1.0 * 0.5 + 2.0 * 0.1 + 0.5 * 3.0,  # CE is reported but weighs 0
    })
    assert list(m)[-1] == "val_loss"
    nothing = metrics_from_sums(empty_sums(0), [], DistillConfig(w_layer=0.0, w_kl=1.0))
    assert nothing == {"val_items": 0, "val_loss": 0.0}  # a term without positions is not reported


def test_validation_sums_have_the_same_names_on_every_process():
    from aura_model.train.validation import SUMS, empty_sums

    assert set(empty_sums(3)) == set(SUMS) | {"cosine_sum.0", "cosine_sum.1", "cosine_sum.2"}
    assert set(empty_sums(0)) == set(SUMS) and not any(empty_sums(2).values())


def test_spans_are_gathered_left_aligned_and_masked():
    h = torch.arange(2 * 6 * 1, dtype=torch.float32).reshape(2, 6, 1)
    spans = [[(1, 3)], []]
    got = gather_spans(h, spans, t_max=4)
    assert got[0, :, 0].tolist() == [1.0, 2.0, 3.0, 0.0] and not got[1].any()
    assert span_mask(spans, 4).tolist() == [[True, True, True, False], [False] * 4]
    assert span_mask([[(0, 9)]], 4).tolist() == [[True] * 4]  # a span longer than the width is cut
