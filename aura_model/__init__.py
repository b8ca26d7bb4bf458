"""AuRA: speech straight into a LoRA-adapted LLM (see docs/DESIGN.md)."""

import os as _os
import sys as _sys

# No kernels downloaded from the Hugging Face Hub, ever (backends.no_hub_kernels says why). Done at
# import because it must precede transformers' own import, and `python -m aura_model.train` imports
# the trainer, and with it transformers, before any function of ours runs.
_os.environ.setdefault("USE_HUB_KERNELS", "NO")  # transformers 5 kernelizes every from_pretrained unless told not to
_sys.modules.setdefault("kernels", None)  # and imports `kernels` at import; bitsandbytes fetches with it on AVX512-BF16
