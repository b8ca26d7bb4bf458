"""Device, dtype and quantization choice. bitsandbytes is imported lazily, only when used.

A CPU-only or macOS install without bitsandbytes imports and runs everything unquantized.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from dataclasses import dataclass, field

import torch

from .config import RuntimeConfig
from .errors import AuraError


# Loggers of optional kernel machinery that warn at import although nothing is wrong: bitsandbytes, on CPUs with
# AVX512-BF16, that a Hub kernel could not be fetched ("Failed to load CPU gemm_4bit_forward ..."; it falls back to its
# own), and the Hub `kernels` package transformers loads, in offline mode ("Skipping publisher trust check for
# 'kernels-community/quantization-bitsandbytes' because Hugging Face Hub is in offline mode.").
NOISY_KERNEL_LOGGERS = ("bitsandbytes", "kernels")


def quiet_kernel_warnings() -> None:
    """Keep those import-time warnings off the user's terminal and training logs; errors still show."""
    for name in NOISY_KERNEL_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def no_hub_kernels() -> None:
    """No kernels downloaded from the Hugging Face Hub in this process: call before transformers is imported.

    transformers 5 imports the ``kernels`` package at import (about a second) and, unless
    ``USE_HUB_KERNELS`` says no, "kernelizes" every model it loads with layers fetched from the Hub;
    on CPUs with AVX512-BF16, bitsandbytes fetches a 4-bit kernel from the Hub at import. AuRA asks
    for none of it: with the variable set and the package marked missing, all three use their own
    code: no network call, no delay. ``import aura_model`` does this already; it is a function for
    programs that import transformers first (a process that imported ``kernels`` keeps it).
    """
    import sys

    os.environ.setdefault("USE_HUB_KERNELS", "NO")
    sys.modules.setdefault("kernels", None)


def quiet_libraries() -> None:
    """Library chatter (transformers' warnings and progress bars, optional-kernel notices) off the terminal.

    For the user-facing entry points (``aura``, ``aura-gui``, scripts, benchmarks); ``--debug``
    skips it. Errors still show.
    """
    import warnings

    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    quiet_kernel_warnings()  # optional kernels that bitsandbytes and transformers look for warn at import
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass


@functools.lru_cache(maxsize=1)
def bitsandbytes_available() -> bool:
    """True when bitsandbytes is installed and imports (it can be installed but broken)."""
    if importlib.util.find_spec("bitsandbytes") is None:
        return False
    try:
        import bitsandbytes  # noqa: F401
    except Exception:  # a broken native library must not take the app down
        return False
    return True


def cuda_available() -> bool:
    return torch.cuda.is_available()


@dataclass
class Resolved:
    """A RuntimeConfig after looking at the machine."""

    device: torch.device  # where the LLM and the embedding run
    quantization: str  # 4bit | 8bit | none
    dtype: torch.dtype  # compute dtype of the unquantized parts
    notices: list[str] = field(default_factory=list)  # things the user should be told (fallbacks)


def resolve(runtime: RuntimeConfig | None = None) -> Resolved:
    """Pick device, quantization and dtype; fall back (with a notice) rather than fail where sensible."""
    runtime = runtime or RuntimeConfig()
    notices: list[str] = []
    spec = runtime.device
    if spec == "auto":
        spec = "cuda" if cuda_available() else "cpu"
    elif spec.startswith("cuda") and not cuda_available():
        notices.append(f"CUDA is not available on this machine; running on the CPU instead of {runtime.device}")
        spec = "cpu"
    device = torch.device(spec)
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise AuraError(f"device {spec} does not exist: this machine has {torch.cuda.device_count()} CUDA GPU(s)")

    quant = runtime.quantization
    if quant == "auto":
        quant = "4bit" if device.type == "cuda" else "none"
        if quant == "4bit" and not bitsandbytes_available():
            notices.append("bitsandbytes is not installed; loading the LLM unquantized (pip install bitsandbytes)")
            quant = "none"
    elif quant in ("4bit", "8bit") and not bitsandbytes_available():
        raise AuraError(f"quantization {quant} needs bitsandbytes: pip install bitsandbytes (or choose quantization none)")

    if runtime.compute_dtype != "auto":
        dtype = getattr(torch, runtime.compute_dtype)
    elif device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.float32
    return Resolved(device, quant, dtype, notices)


def quantization_config(resolved: Resolved):
    """A transformers BitsAndBytesConfig for the resolved mode, or None."""
    if resolved.quantization == "none":
        return None
    from transformers import BitsAndBytesConfig

    if resolved.quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",  # NF4 + double quantization: QLoRA's recipe
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=resolved.dtype,
        )
    return BitsAndBytesConfig(load_in_8bit=True)


def device_name(device: torch.device) -> str:
    """What the status bar shows: the GPU's name or 'CPU'."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores)"


def memory_in_use(device: torch.device) -> int:
    """Bytes in use: allocated VRAM on CUDA, this process's resident memory otherwise."""
    if device.type == "cuda":
        return int(torch.cuda.memory_allocated(device))
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
