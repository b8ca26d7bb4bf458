"""Memory footprint of the base LLM in bf16 vs 4-bit NF4, and the size of what AuRA trains.

Builds a random Llama-architecture LLM (default 8 layers x 1024 hidden, the smallest size the
issue asks about), loads it twice in one run (bf16 and 4-bit NF4 through bitsandbytes, on the
CPU here or CUDA when present), attaches the AuRA LoRA + AudioEmbedding, and prints a table.

    python benchmarks/bench_footprint.py [--layers 8] [--hidden 1024] [--vocab 32000]

Targets (issue 2): 4-bit footprint <= 0.35x bf16 for the quantized layers; trainable <= 2% of base.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aura_model import backends  # noqa: E402
from aura_model.bundle import load_llm  # noqa: E402
from aura_model.config import ModelConfig, RuntimeConfig  # noqa: E402
from aura_model.embedding import AudioEmbedding  # noqa: E402
from aura_model.model import attach_lora  # noqa: E402
from aura_model.testing import tiny_llm_config  # noqa: E402


def linear_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """(bytes, parameters) of the decoder's Linear layers: what quantization replaces."""
    total_bytes = total_params = 0
    for name, module in model.named_modules():
        if ".layers." not in name or not hasattr(module, "weight") or module.weight is None:
            continue
        w = module.weight
        if type(module).__name__ == "Linear4bit":
            qs = w.quant_state
            extra = qs.absmax.nbytes + qs.code.nbytes
            if qs.nested:
                extra += qs.state2.absmax.nbytes + qs.state2.code.nbytes
            total_bytes += w.data.nbytes + extra
            total_params += qs.shape.numel()
        elif isinstance(module, torch.nn.Linear):
            total_bytes += w.nbytes
            total_params += w.numel()
    return total_bytes, total_params


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, default=32000)
    args = ap.parse_args()
    if not backends.bitsandbytes_available():
        sys.exit("bitsandbytes is not installed: pip install bitsandbytes")

    from transformers import AutoModelForCausalLM

    cfg = tiny_llm_config("llama", vocab_size=args.vocab, hidden=args.hidden, layers=args.layers,
                          heads=args.hidden // 64, kv_heads=max(1, args.hidden // 256), intermediate=int(args.hidden * 2.75))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).save_pretrained(tmp)
        for quant in ("none", "4bit"):
            t0 = time.perf_counter()
            resolved = backends.resolve(RuntimeConfig(device=device, quantization=quant, compute_dtype="bfloat16"))
            llm = load_llm(tmp, resolved)
            load_s = time.perf_counter() - t0
            base_params = sum(p.numel() for p in llm.parameters()) if quant == "none" else rows[0]["params"]
            lin_bytes, lin_params = linear_bytes(llm)
            rows.append(dict(quant=quant, params=base_params, footprint=llm.get_memory_footprint(),
                             linear_bytes=lin_bytes, linear_params=lin_params, load_s=load_s))
            if quant == "4bit":
                mcfg = ModelConfig()
                peft_model = attach_lora(llm, mcfg.lora)
                lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
                emb = sum(p.numel() for p in AudioEmbedding(mcfg.audio.n_mels, args.hidden, mcfg.embedding).parameters())
            del llm

    bf16, q4 = rows
    print(f"\nBase LLM: Llama, {args.layers} layers x {args.hidden} hidden, vocab {args.vocab}, device {device}")
    print(f"{'':28}{'bf16':>14}{'4-bit NF4':>14}{'ratio':>9}")
    print(f"{'parameters':28}{bf16['params'] / 1e6:>13.1f}M{'(same)':>14}")
    print(f"{'whole-model footprint':28}{bf16['footprint'] / 2**20:>12.1f}MiB{q4['footprint'] / 2**20:>11.1f}MiB"
          f"{q4['footprint'] / bf16['footprint']:>9.3f}")
    print(f"{'quantized layers only':28}{bf16['linear_bytes'] / 2**20:>12.1f}MiB{q4['linear_bytes'] / 2**20:>11.1f}MiB"
          f"{q4['linear_bytes'] / bf16['linear_bytes']:>9.3f}   (target <= 0.35)")
    print(f"{'load time':28}{bf16['load_s']:>13.2f}s{q4['load_s']:>13.2f}s")
    trainable = lora + emb
    print(f"\nTrainable: LoRA {lora / 1e6:.2f}M + AudioEmbedding {emb / 1e6:.2f}M = {trainable / 1e6:.2f}M "
          f"= {100 * trainable / bf16['params']:.2f}% of the base   (target <= 2%)")
    print("(embedding and LM head stay bf16 in both: bitsandbytes quantizes the decoder's Linear layers)")


if __name__ == "__main__":
    main()
