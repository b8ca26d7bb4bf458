"""Stand-in for `run` until the demo model ships: the whole CLI path on a tiny untrained model.

Builds (once) a tiny random Llama + LoRA + AudioEmbedding bundle under .cache/smoke, speaks a
request with espeak-ng, and runs `aura chat --audio` on it. The answer is noise: the model is untrained.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "smoke"


def build_bundle() -> Path:
    from aura_model import backends
    from aura_model.bundle import load_llm, load_tokenizer, save_bundle
    from aura_model.config import ModelConfig, RuntimeConfig
    from aura_model.embedding import AudioEmbedding
    from aura_model.model import AuraModel, attach_lora
    from aura_model.testing import save_tiny_base

    bundle = CACHE / "bundle"
    if (bundle / "aura_config.json").is_file():
        return bundle
    base = save_tiny_base(CACHE / "base", "llama")
    cfg = ModelConfig()
    llm = load_llm(base, backends.resolve(RuntimeConfig(device="cpu", quantization="none")))
    model = AuraModel(attach_lora(llm, cfg.lora), AudioEmbedding(cfg.audio.n_mels, llm.config.hidden_size, cfg.embedding))
    return save_bundle(bundle, model, load_tokenizer(base), cfg, base_id="tiny-untrained-llama", include_base=base)


def sample_wav() -> Path:
    wav = CACHE / "request.wav"
    if not wav.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        if shutil.which("espeak-ng") is None:
            sys.exit("run: espeak-ng is missing (apt-get install espeak-ng)")
        subprocess.run(["espeak-ng", "-w", str(wav), "what is seventeen plus five"], check=True)
    return wav


def main() -> int:
    from app.cli import main as aura
    from aura_model.backends import quiet_libraries

    quiet_libraries()

    bundle = build_bundle()
    wav = sample_wav()
    print(f"$ aura chat --bundle {bundle.relative_to(ROOT)} --audio {wav.relative_to(ROOT)} --stats", file=sys.stderr)
    return aura(["chat", "--bundle", str(bundle), "--audio", str(wav), "--max-new-tokens", "24", "--stats", *sys.argv[1:]])


if __name__ == "__main__":
    raise SystemExit(main())
