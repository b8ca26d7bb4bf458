"""Shared test setup: no network, no real display, deterministic torch."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

from pulse import pulse_device  # noqa: E402,F401  (a fixture for every test file: a private PulseAudio null sink)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def main_thread_gc(qapp):
    """Cyclic garbage collected on the main thread only, as the app does (app/main_thread_gc.py)."""
    from app.main_thread_gc import MainThreadGarbageCollector

    collector = MainThreadGarbageCollector()
    yield collector
    collector.stop()
