"""Test fixtures: tiny random models and clips, built locally (no downloads).

For the test suite, the benchmarks and smoke runs. The models have the real architectures
(Llama, Qwen2, Whisper, wav2vec2) at toy sizes, so every code path that runs on a real
checkpoint runs on them too:

* ``tiny_llm`` / ``save_tiny_base``: a random Llama or Qwen2 LLM with a small BPE chat tokenizer;
* ``save_tiny_whisper``: a tiny ``WhisperForConditionalGeneration`` teacher with a tokenizer (so it
  can also transcribe) whose encoder window is ``max_source_positions`` frames at 50 Hz: 100 -> 2 s
  clips, 200 padded mel frames (much cheaper than the real 1500 -> 30 s);
* ``save_tiny_wav2vec2``: a tiny wav2vec2 teacher (the generic ``AutoModel`` path: its own feature
  extractor, ~49.9 Hz frames);
* ``make_clip_folder``: short synthetic speech-like clips with transcripts beside them;
* ``random_pooler``: a token-rate TokenPooler whose zero-initialised convolutions act.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .chat_tokenizer import train_chat_tokenizer

SAMPLE_TEXT = [
    "turn on the kitchen light", "what is seventeen plus five", "the answer is twenty two",
    "set a timer for seven minutes", "what is the capital of france", "paris is the capital of france",
    "hello, how can I help you today?", "ok, the kitchen fan is off", "numbers 0 1 2 3 4 5 6 7 8 9",
]


def tiny_tokenizer(vocab_size: int = 300):
    return train_chat_tokenizer(SAMPLE_TEXT * 4, vocab_size=vocab_size)


def tiny_llm_config(arch: str = "llama", vocab_size: int = 300, hidden: int = 64, layers: int = 4,
                    heads: int = 4, kv_heads: int = 2, intermediate: int = 128, max_positions: int = 1024):
    from transformers import LlamaConfig, Qwen2Config

    common = dict(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=intermediate,
                  num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads,
                  max_position_embeddings=max_positions, tie_word_embeddings=False)
    if arch == "llama":
        return LlamaConfig(**common)
    if arch == "qwen2":
        return Qwen2Config(**common)
    raise ValueError(f"unknown tiny architecture {arch!r} (llama or qwen2)")


def tiny_llm(arch: str = "llama", seed: int = 0, **kwargs):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_llm_config(arch, **kwargs))
    return model.eval()


def save_tiny_base(out_dir: str | Path, arch: str = "llama", seed: int = 0, **kwargs) -> Path:
    """A tiny base LLM + tokenizer saved as a local model folder (safetensors)."""
    out_dir = Path(out_dir)
    tokenizer = tiny_tokenizer()
    model = tiny_llm(arch, seed, vocab_size=len(tokenizer), **kwargs)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return out_dir


def tiny_whisper_config(n_mels: int = 80, d_model: int = 64, layers: int = 2, vocab_size: int = 100,
                        max_source_positions: int = 1500):
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=vocab_size, num_mel_bins=n_mels, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=2 * d_model,
        decoder_ffn_dim=2 * d_model, max_source_positions=max_source_positions, max_target_positions=64,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )


def save_tiny_whisper(out_dir: str | Path, max_source_positions: int = 100, seed: int = 0, d_model: int = 64,
                      layers: int = 2) -> Path:
    """A random tiny WhisperForConditionalGeneration + tokenizer + feature extractor config, saved locally."""
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    out_dir = Path(out_dir)
    tok = tiny_tokenizer()
    cfg = tiny_whisper_config(d_model=d_model, layers=layers, vocab_size=len(tok),
                              max_source_positions=max_source_positions)
    # The tiny BPE's specials line up with the config: 0 = <|pad|>, 1 = <|im_start|> (start), 2 = <|im_end|> (end).
    cfg.pad_token_id, cfg.bos_token_id, cfg.eos_token_id, cfg.decoder_start_token_id = 0, 1, 2, 1
    cfg.suppress_tokens, cfg.begin_suppress_tokens = [], []
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    gen = model.generation_config
    gen.pad_token_id, gen.bos_token_id, gen.eos_token_id, gen.decoder_start_token_id = 0, 1, 2, 1
    gen.suppress_tokens, gen.begin_suppress_tokens = None, None
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tok.save_pretrained(str(out_dir))
    seconds = 2 * max_source_positions * 160 / 16000
    if float(seconds).is_integer():  # the extractor only takes whole seconds
        WhisperFeatureExtractor(feature_size=cfg.num_mel_bins, chunk_length=int(seconds)).save_pretrained(str(out_dir))
    return out_dir


def save_tiny_wav2vec2(out_dir: str | Path, seed: int = 0) -> Path:
    """A random tiny wav2vec2 encoder + its feature extractor, saved locally (the generic AutoModel path)."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    out_dir = Path(out_dir)
    cfg = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                         vocab_size=32)
    torch.manual_seed(seed)
    Wav2Vec2Model(cfg).eval().save_pretrained(str(out_dir), safe_serialization=True)
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=False).save_pretrained(str(out_dir))
    return out_dir


def speech_like(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A speech-like clip: a few harmonics on a wobbling pitch, syllable-rate loudness, a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 100 + 120 * rng.random() + 25 * np.sin(2 * np.pi * (0.5 + 2 * rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    weights = rng.random(6) + 0.1
    x = sum(w * np.sin(k * phase) / k for k, w in enumerate(weights, 1))
    x = x * (0.3 + 0.7 * np.sin(2 * np.pi * (2 + 3 * rng.random()) * t) ** 2) + 0.03 * rng.standard_normal(len(t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def make_clip_folder(out_dir: str | Path, n: int, seed: int = 0, transcripts: bool = True,
                     seconds: tuple[float, float] = (0.5, 1.5)) -> Path:
    """``n`` wav clips (clip_000.wav, ...) with a .txt transcript beside each (unless ``transcripts`` is False)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        length = float(rng.uniform(*seconds))
        sf.write(str(out_dir / f"clip_{i:03d}.wav"), speech_like(length, seed * 1000 + i), 16000)
        if transcripts:
            (out_dir / f"clip_{i:03d}.txt").write_text(SAMPLE_TEXT[i % len(SAMPLE_TEXT)] + "\n")
    return out_dir


def random_pooler(d_model: int, pooling, seed: int = 0):
    """A TokenPooler (``pooling``: a PoolingConfig) whose zero-initialised convolutions get random weights, so
    tests and benchmarks see them act."""
    from .pooling import TokenPooler

    g = torch.Generator().manual_seed(seed + 7)
    pooler = TokenPooler(d_model, pooling)
    with torch.no_grad():
        for conv in (pooler.mix, pooler.context):
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.05)
    return pooler.eval()
