"""Tiny random models for tests, benchmarks and smoke runs (no downloads).

They have the real architectures (Llama, Qwen2, Whisper) at toy sizes, so every code
path that runs on a real checkpoint runs on them too.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .demo.tokenizer import train_chat_tokenizer

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
