"""The KV cache goes from one decoding step to the next under the name this transformers uses for it."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import pytest
import torch
from transformers import WhisperForConditionalGeneration
from transformers.utils import ModelOutput

from aura_model.kv_cache import next_step_cache
from aura_model.testing import tiny_llm, tiny_whisper_config


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_llm_step_gets_its_cache_by_a_name_its_forward_declares(arch):
    llm = tiny_llm(arch).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        out = llm(input_ids=ids, use_cache=True)
        kwargs = next_step_cache(out)
        (name, cache), = kwargs.items()
        assert name in inspect.signature(type(llm).forward).parameters  # not a deprecated alias caught by **kwargs
        assert cache is not None and cache.get_seq_length() == 4
        step = llm(input_ids=torch.tensor([[9]]), use_cache=True, **kwargs)
        full = llm(input_ids=torch.tensor([[5, 6, 7, 8, 9]]))
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], atol=1e-5, rtol=1e-5)


def test_whisper_decoder_step_gets_its_cache_by_a_name_its_forward_declares():
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(tiny_whisper_config()).eval()
    states = (torch.randn(1, 10, model.config.d_model),)
    with torch.no_grad():
        out = model(encoder_outputs=states, decoder_input_ids=torch.tensor([[1, 2]]), use_cache=True)
        kwargs = next_step_cache(out)
        assert next(iter(kwargs)) in inspect.signature(type(model).forward).parameters
        step = model(encoder_outputs=states, decoder_input_ids=torch.tensor([[3]]), use_cache=True, **kwargs)
        full = model(encoder_outputs=states, decoder_input_ids=torch.tensor([[1, 2, 3]]))
    torch.testing.assert_close(step.logits[:, -1], full.logits[:, -1], atol=1e-5, rtol=1e-5)


def test_an_output_with_the_older_field_name_passes_it_under_that_name():
    @dataclass
    class OldOutput(ModelOutput):
        logits: torch.Tensor | None = None
        past_key_values: tuple | None = None

    marker = ("kv",)
    assert next_step_cache(OldOutput(logits=torch.zeros(1), past_key_values=marker)) == {"past_key_values": marker}
