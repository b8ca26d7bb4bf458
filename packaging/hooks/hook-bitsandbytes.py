"""Replaces pyinstaller-hooks-contrib's hook for bitsandbytes (user hooks win): of its native libraries, one per
CUDA, ROCm and XPU release (about 120 MB), only the CPU one and the one this build's torch selects are collected."""

import torch
from PyInstaller.utils.hooks import collect_dynamic_libs

BACKENDS = ["cpu"] + (["cuda" + torch.version.cuda.replace(".", "")] if torch.version.cuda else [])
binaries = collect_dynamic_libs("bitsandbytes", search_patterns=[f"libbitsandbytes_{b}.*" for b in BACKENDS])
module_collection_mode = "pyz+py"  # as upstream: bitsandbytes reads its own source (torch.library custom ops)
