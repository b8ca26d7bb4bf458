"""The bundle's LoRA at inference, without importing PEFT.

Importing ``peft`` costs about as much as importing torch (it imports bitsandbytes and, through
it, torch's compiler stack) and is paid at every start of the app and of ``aura chat``. An
adapter that ``aura train`` writes is a plain LoRA: for each adapted linear layer,

    y = W x + (alpha / r) * B (A x)        (alpha / sqrt(r) with rsLoRA)

so inference applies it with a few lines of PyTorch, reading PEFT's own files
(``adapter_config.json`` + ``adapter_model.safetensors``; key
``base_model.model.<module>.lora_A.weight``). Which modules carry LoRA is read from the weight
keys themselves, so ``target_modules`` and ``layers_to_transform`` need no re-implementation.
Anything PEFT can express that this does not (DoRA, biases, per-module ranks, extra trainable
modules) is reported by :func:`unsupported` and loaded through PEFT instead. Training always
uses PEFT.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from .errors import AuraError

KEY_PREFIX = "base_model.model."
PLAIN_DEFAULTS = {  # adapter_config.json entries that must hold these values for the plain path
    "peft_type": "LORA", "use_dora": False, "bias": "none", "fan_in_fan_out": False, "modules_to_save": None,
    "rank_pattern": {}, "alpha_pattern": {}, "lora_bias": False, "layer_replication": None,
    "trainable_token_indices": None, "use_qalora": False, "target_parameters": None,
    "alora_invocation_tokens": None,
}


def unsupported(adapter_config: dict[str, Any]) -> str | None:
    """Why this adapter needs PEFT (a setting the plain path does not apply), or None."""
    for key, plain in PLAIN_DEFAULTS.items():
        value = adapter_config.get(key, plain)
        if value != plain and not (plain in ({}, None) and not value):
            return f"{key}={value!r}"
    return None


class Switch:
    """One on/off flag shared by every LoRA layer of a model (off = the plain base model)."""

    def __init__(self) -> None:
        self.on = True


class LoraLinear(nn.Module):
    """A frozen linear layer (plain, or bitsandbytes 4/8-bit) plus its low-rank update."""

    def __init__(self, base: nn.Module, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float, switch: Switch):
        super().__init__()
        self.base = base
        self.lora_a = nn.Parameter(lora_a, requires_grad=False)  # (r, in)
        self.lora_b = nn.Parameter(lora_b, requires_grad=False)  # (out, r)
        self.scaling = scaling
        self.switch = switch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if not self.switch.on:
            return out
        update = (x.to(self.lora_a.dtype) @ self.lora_a.T) @ self.lora_b.T  # as PEFT: compute in LoRA's dtype
        return out + (update * self.scaling).to(out.dtype)


class PlainLora:
    """The LoRA layers put into a model; ``disable_adapter()`` is the same context PEFT offers."""

    def __init__(self, config: dict[str, Any], layers: dict[str, LoraLinear], switch: Switch):
        self.config = config  # adapter_config.json as read
        self.layers = layers  # module name in the LLM -> its LoraLinear
        self.switch = switch

    @contextlib.contextmanager
    def disable_adapter(self) -> Iterator[None]:
        was = self.switch.on
        self.switch.on = False
        try:
            yield
        finally:
            self.switch.on = was

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights under PEFT's key names, as ``adapter_model.safetensors`` holds them."""
        out = {}
        for name, layer in self.layers.items():
            out[f"{KEY_PREFIX}{name}.lora_A.weight"] = layer.lora_a.detach().to("cpu").contiguous()
            out[f"{KEY_PREFIX}{name}.lora_B.weight"] = layer.lora_b.detach().to("cpu").contiguous()
        return out


def read_adapter_config(folder: Path) -> dict[str, Any]:
    path = folder / "adapter_config.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AuraError(f"{path} is unreadable: {exc}") from exc


def pairs_by_module(state: dict[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{module name: (A, B)}`` from PEFT's keys; refuses keys that are not LoRA A/B pairs."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        if not key.startswith(KEY_PREFIX) or not key.endswith((".lora_A.weight", ".lora_B.weight")):
            raise AuraError(f"unexpected tensor {key!r} in the adapter (not a LoRA A/B weight)")
        module, part = key[len(KEY_PREFIX):].rsplit(".", 2)[0], key.rsplit(".", 2)[1]
        found.setdefault(module, {})[part] = tensor
    missing = [m for m, parts in found.items() if set(parts) != {"lora_A", "lora_B"}]
    if missing:
        raise AuraError(f"the adapter has half a LoRA pair for {missing[0]!r}")
    return {m: (parts["lora_A"], parts["lora_B"]) for m, parts in found.items()}


def linear_shape(module: nn.Module) -> tuple[int, int] | None:
    """(in_features, out_features) of a linear layer, including bitsandbytes' quantized ones."""
    if isinstance(module, nn.Linear) or hasattr(module, "in_features") and hasattr(module, "out_features"):
        return int(module.in_features), int(module.out_features)
    return None


def apply_lora(llm: nn.Module, config: dict[str, Any], state: dict[str, torch.Tensor],
               dtype: torch.dtype, device: torch.device) -> PlainLora:
    """Put the adapter's LoRA into ``llm`` (in place); refuses weights that do not fit its layers."""
    switch = Switch()
    layers: dict[str, LoraLinear] = {}
    for name, (a, b) in sorted(pairs_by_module(state).items()):
        try:
            base = llm.get_submodule(name)
        except AttributeError:
            raise AuraError(f"the adapter adapts {name!r}, which this base model does not have") from None
        shape = linear_shape(base)
        r = a.shape[0]
        if shape is None or a.shape != (r, shape[0]) or b.shape != (shape[1], r):
            raise AuraError(f"the adapter's LoRA for {name!r} ({tuple(a.shape)}, {tuple(b.shape)}) does not fit "
                            f"that layer ({shape})")
        alpha = float(config.get("lora_alpha", r))
        scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
        layer = LoraLinear(base, a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype), scaling, switch)
        parent_name, _, child = name.rpartition(".")
        setattr(llm.get_submodule(parent_name) if parent_name else llm, child, layer)
        layers[name] = layer
    if not layers:
        raise AuraError("the adapter holds no LoRA weights")
    return PlainLora(config, layers, switch)
