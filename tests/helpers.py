"""Builders shared by tests: tiny bundles on disk, synthetic clips, and a reporting assert_close."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from aura_model import backends
from aura_model.bundle import load_llm, load_tokenizer, save_bundle
from aura_model.config import ModelConfig, RuntimeConfig
from aura_model.embedding import AudioEmbedding
from aura_model.model import AuraModel, attach_lora
from aura_model.testing import random_pooler, save_tiny_base


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5, what: str = ""):
    """torch.testing.assert_close, with max/mean absolute difference in the message."""
    diff = (actual.float() - expected.float()).abs()
    msg = f"{what} max abs diff {diff.max().item():.3g}, mean {diff.mean().item():.3g}"
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol, msg=msg)


def clip(seconds: float, seed: int = 0, sr: int = 16000) -> np.ndarray:
    """A speech-like test clip: a few harmonics with a wobbling pitch plus noise, in [-0.5, 0.5]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    f0 = 120 + 40 * rng.random() + 20 * np.sin(2 * np.pi * (1 + rng.random()) * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2)
    x = x + 0.05 * rng.standard_normal(len(t))
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sr: int = 16000) -> Path:
    sf.write(str(path), samples, sr)
    return path


def randomize_lora(model: AuraModel, seed: int = 1, scale: float = 0.2) -> None:
    """PEFT starts LoRA B at zero (a no-op); give it weights so tests see what the adapter does."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.llm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


def build_model(base_dir: Path, cfg: ModelConfig | None = None, runtime: RuntimeConfig | None = None, seed: int = 0):
    """Tiny base + fresh random LoRA + random AudioEmbedding, as the trainer would start."""
    cfg = cfg or ModelConfig()
    resolved = backends.resolve(runtime or RuntimeConfig(device="cpu", quantization="none"))
    llm = load_llm(base_dir, resolved)
    d_model = llm.get_input_embeddings().weight.shape[1]
    torch.manual_seed(seed)
    embedding = AudioEmbedding(cfg.audio.n_mels, d_model, cfg.embedding).eval()
    pooler = random_pooler(d_model, cfg.pooling, seed) if cfg.pooling.enabled else None
    model = AuraModel(attach_lora(llm, cfg.lora), embedding, cfg.prompt.audio_attention, None, pooler,
                      cfg.pooling.layers).eval()
    randomize_lora(model, seed + 1)
    return model, load_tokenizer(base_dir), cfg


def make_bundle(tmp: Path, arch: str = "llama", include_base: bool = True, **base_kwargs) -> tuple[Path, Path]:
    """A tiny base folder and a bundle for it; returns (bundle_dir, base_dir)."""
    base_dir = save_tiny_base(tmp / f"base-{arch}", arch, **base_kwargs)
    model, tokenizer, cfg = build_model(base_dir)
    bundle = save_bundle(tmp / f"bundle-{arch}", model, tokenizer, cfg, base_id=f"tiny-{arch}",
                         include_base=base_dir if include_base else None, teacher="tiny-whisper")
    return bundle, base_dir
