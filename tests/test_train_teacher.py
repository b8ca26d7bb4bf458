"""Teachers (tiny Whisper and wav2vec2), their features and time alignment, and the on-disk caches."""

from __future__ import annotations

import pytest
import torch

from aura_model.audio import num_frames
from aura_model.config import AudioConfig
from aura_model.embedding import num_audio_tokens
from aura_model.errors import AuraError
from aura_model.train.cache import Cache, teacher_key, teacher_keys
from aura_model.train.teacher import Teacher, align_and_pool, inspect_teacher, model_fingerprint, student_conv_frames
from aura_model.testing import save_tiny_wav2vec2, save_tiny_whisper, speech_like

from helpers import assert_close


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory):
    return save_tiny_whisper(tmp_path_factory.mktemp("whisper") / "w", max_source_positions=100)


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory):
    return save_tiny_wav2vec2(tmp_path_factory.mktemp("w2v") / "m")


def load(ref) -> Teacher:
    return Teacher.load(inspect_teacher(str(ref)), torch.device("cpu"), torch.float32)


def test_whisper_features_match_the_feature_extractor(whisper_dir):
    from transformers import WhisperFeatureExtractor

    teacher = load(whisper_dir)
    clips = [speech_like(0.7, 1), speech_like(1.9, 2)]
    ours = teacher._whisper_features(clips)  # (B, 80, 200): 2 * max_source_positions frames
    assert ours.shape == (2, 80, 200)
    fe = WhisperFeatureExtractor.from_pretrained(str(whisper_dir))
    for b, c in enumerate(clips):
        ref = fe(c, sampling_rate=16000, padding="max_length", max_length=32000, return_tensors="pt").input_features
        assert_close(ours[b], ref[0], atol=2e-5, what=f"clip {b}")


@pytest.mark.parametrize("which", ["whisper", "wav2vec2"])
def test_teacher_states_land_on_the_student_token_grid(which, whisper_dir, wav2vec2_dir):
    teacher = load(whisper_dir if which == "whisper" else wav2vec2_dir)
    info = teacher.info
    assert info.num_layers == 2 and info.width == (64 if which == "whisper" else 32)
    clips = [speech_like(s, i) for i, s in enumerate((0.5, 1.13, 1.8))]
    encoded = teacher.encode(clips, 16000, [1, 2])
    cfg = AudioConfig()
    for clip, states in zip(clips, encoded):
        frames = student_conv_frames(len(clip), cfg)
        if which == "whisper":
            assert states[1].shape[0] == frames  # 50 Hz exactly: no interpolation needed
        else:
            assert abs(states[1].shape[0] - frames) <= 2  # ~49.9 Hz: interpolated to the 50 Hz grid
        pooled = align_and_pool(states[2], frames, stack=4)
        assert pooled.shape == (int(num_audio_tokens(num_frames(len(clip), cfg), 4)), info.width)


def test_whisper_states_of_a_clip_do_not_depend_on_its_batch(whisper_dir):
    teacher = load(whisper_dir)
    a, b = speech_like(0.6, 1), speech_like(1.5, 2)
    alone = teacher.encode([a], 16000, [2])[0][2]
    together = teacher.encode([b, a], 16000, [2])[1][2]
    assert_close(together, alone, atol=1e-5, what="batched vs alone")


def test_align_and_pool_averages_groups_and_interpolates():
    x = torch.arange(8, dtype=torch.float32).view(8, 1)  # 8 frames, 1 feature
    assert align_and_pool(x, 8, 4).flatten().tolist() == [1.5, 5.5]
    assert align_and_pool(x, 6, 3).shape == (2, 1)  # 8 -> 6 frames (interpolated) -> 2 groups
    ramp = align_and_pool(torch.linspace(0, 1, 99).view(99, 1), 100, 1).flatten()
    assert torch.all(ramp[1:] >= ramp[:-1]) and abs(float(ramp[0])) < 0.02 and abs(float(ramp[-1]) - 1) < 0.02


def test_whisper_with_decoder_can_transcribe(whisper_dir):
    teacher = load(whisper_dir)
    assert teacher.info.can_transcribe
    texts = teacher.transcribe([speech_like(0.5, 1), speech_like(0.8, 2)], 16000, max_tokens=5)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_a_text_model_is_not_a_teacher(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64).save_pretrained(
        str(tmp_path / "bert"))
    with pytest.raises(AuraError, match=r"'bert' model whose input is 'input_ids', not audio"):
        inspect_teacher(str(tmp_path / "bert"))


def test_a_teacher_without_hidden_states_is_refused(wav2vec2_dir):
    class NoStates(torch.nn.Module):
        def forward(self, input_values, output_hidden_states=False, **kw):
            return {"last_hidden_state": torch.zeros(1, 3, 32)}

    real = load(wav2vec2_dir)
    stub = Teacher(real.info, NoStates(), torch.device("cpu"), torch.float32, real.feature_extractor)
    with pytest.raises(AuraError, match="returned no hidden_states"):
        stub.encode([speech_like(0.5, 0)], 16000, [1])


def test_missing_teacher_is_a_clear_error(tmp_path):
    with pytest.raises(AuraError, match="cannot load teacher"):
        inspect_teacher(str(tmp_path / "no-such-teacher"))


def test_fingerprint_follows_the_weights(tmp_path):
    a = save_tiny_whisper(tmp_path / "a", seed=0)
    b = save_tiny_whisper(tmp_path / "b", seed=1)  # same config, other weights
    c = save_tiny_whisper(tmp_path / "c", seed=0)
    ia, ib, ic = (inspect_teacher(str(p)) for p in (a, b, c))
    assert ia.fingerprint == ic.fingerprint != ib.fingerprint
    assert model_fingerprint(str(a), ia.config) == ia.fingerprint


def test_cache_entries_are_keyed_atomic_and_corruption_safe(tmp_path):
    cache = Cache(tmp_path)
    align = {"stack": 4}
    keys = teacher_keys("audio", "teacher", [2, 1, 2], align)
    assert list(keys) == [1, 2] and keys[2] == teacher_key("audio", "teacher", 2, align)
    assert len({*keys.values(), teacher_key("audio", "other", 1, align), teacher_key("audio", "teacher", 1, {"stack": 2}),
                teacher_key("clip2", "teacher", 1, align)}) == 5
    states = {1: torch.randn(5, 8), 2: torch.randn(5, 8)}
    for t, k in keys.items():
        cache.save_teacher(k, {t: states[t]})
    back = cache.load_teacher_layers(keys)
    assert back[1].dtype == torch.float16 and back.keys() == states.keys()
    assert_close(back[2], states[2], atol=2e-3, what="fp16 round trip")
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert cache.load_teacher_layers({1: keys[2]}) is None  # an entry of another layer does not stand in
    cache.teacher_path(keys[2]).write_bytes(b"garbage")
    assert cache.load_teacher(keys[2]) is None and cache.load_teacher_layers(keys) is None  # recomputed, never trusted
    assert cache.load_teacher_layers({1: keys[1]})[1].shape == (5, 8)  # the other layer's entry still serves
    cache.save_response("r", [5, 6, 2], "hi")
    assert cache.load_response("r") == [5, 6, 2]
    cache.save_transcript("t", "")
    assert cache.load_transcript("t") == ""
