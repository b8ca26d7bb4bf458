"""AuraModel: a causal LLM (+ LoRA) whose input embeddings take audio on the placeholder spans.

Math and decoding only; loading and saving live in ``bundle.py``.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from .config import GenerationSettings, LoraSettings
from .embedding import AudioEmbedding
from .kv_cache import next_step_cache
from .pooling import Pooled, TokenPooler, length_mask

StopFlag = Callable[[], bool] | threading.Event | None


def attach_lora(llm: nn.Module, lora: LoraSettings):
    """Wrap a base causal LM in a fresh, trainable PEFT LoRA (B initialised to zero: starts as the base)."""
    from peft import LoraConfig, get_peft_model

    extra = {}
    if lora.layers is not None:
        lora.check_layers(int(llm.config.num_hidden_layers))
        extra["layers_to_transform"] = [n - 1 for n in lora.layers]  # peft counts from 0
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
        target_modules=lora.modules, bias="none", task_type="CAUSAL_LM", **extra,
    )
    return get_peft_model(llm, config)


def _is_stopped(stop: StopFlag) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def sample_next(logits: torch.Tensor, gen: GenerationSettings, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) logits -> (B,) next ids: argmax at temperature 0, else temperature + nucleus sampling."""
    if gen.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / gen.temperature, dim=-1)
    if gen.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < gen.top_p  # always keeps the most likely token
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def span_attention_mask(attention_mask: torch.Tensor, audio_spans: Sequence[Sequence[tuple[int, int]]],
                        dtype: torch.dtype) -> torch.Tensor:
    """(B, L) padding mask + audio spans -> (B, 1, L, L) additive mask: causal, except that the tokens of one
    audio span all see each other (the clip is read as a whole, like the teacher's encoder reads it).

    Padding keys are masked; every query keeps its own position, so a padding row stays finite.
    """
    b, length = attention_mask.shape
    dev = attention_mask.device
    pos = torch.arange(length, device=dev)
    allowed = (pos[None, :] <= pos[:, None]).expand(b, length, length).clone()  # (B, query, key)
    for row, spans in enumerate(audio_spans):
        for start, n in spans:
            allowed[row, start:start + n, start:start + n] = True
    allowed &= attention_mask.bool()[:, None, :]
    allowed |= torch.eye(length, dtype=torch.bool, device=dev)[None]
    mask = torch.zeros((b, 1, length, length), dtype=dtype, device=dev)
    return mask.masked_fill(~allowed[:, None], torch.finfo(dtype).min)


def decoder_of(llm: nn.Module) -> nn.Module:
    """The decoder stack (embeddings, layers, rotary embedding, norm) of a causal LM, PEFT-wrapped or not."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    inner = getattr(base, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "rotary_emb"):
        raise ValueError(f"token-rate AuRA needs a Llama-style decoder (model.layers, model.rotary_emb); "
                         f"{type(base).__name__} has none")
    return inner


def run_layers(llm: nn.Module, hidden: torch.Tensor, mask: torch.Tensor, n_layers: int) -> list[torch.Tensor]:
    """``hidden`` (B, T, d) through the first ``n_layers`` decoder layers under the additive ``mask`` (B, 1, T, T),
    positions 0..T-1 and no cache. Returns [hidden, layer 1 output, ..., layer n output]."""
    inner = decoder_of(llm)
    positions = torch.arange(hidden.shape[1], device=hidden.device)[None].expand(hidden.shape[0], -1)
    rotary = inner.rotary_emb(hidden, position_ids=positions)
    states = [hidden]
    for layer in inner.layers[:n_layers]:
        out = layer(states[-1], attention_mask=mask, position_ids=positions, position_embeddings=rotary)
        states.append(out[0] if isinstance(out, tuple) else out)
    return states


class AuraModel(nn.Module):
    """LLM (optionally a PeftModel carrying the AuRA LoRA) + AudioEmbedding.

    ``audio_attention`` (PromptConfig.audio_attention): "bidirectional" lets the tokens of each audio span attend to
    the whole span; "causal" keeps the LLM's own mask everywhere.
    """

    def __init__(self, llm: nn.Module, embedding: AudioEmbedding, audio_attention: str = "causal", lora=None,
                 pooler: TokenPooler | None = None, hearing_layers: int = 0):
        super().__init__()
        self.llm = llm
        self.embedding = embedding
        self.bidirectional_audio = audio_attention == "bidirectional"
        self.lora = lora  # a lora.PlainLora put into llm at load time (no PEFT), or None (PEFT, or no adapter)
        # token-rate AuRA (PoolingConfig): the first hearing_layers layers hear the clip alone, the pooler makes
        # one input vector per text token, and the base LLM (adapter off) reads them; None = frame-rate AuRA
        self.pooler = pooler
        self.hearing_layers = hearing_layers if pooler is not None else 0
        self._adapter_off = 0  # depth of nested adapter_disabled() contexts

    # ------------------------------------------------------------------ properties
    @property
    def has_adapter(self) -> bool:
        return self.lora is not None or hasattr(self.llm, "disable_adapter")

    @property
    def token_rate(self) -> bool:
        return self.pooler is not None

    @property
    def device(self) -> torch.device:
        return self.llm.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    @contextlib.contextmanager
    def adapter_disabled(self):
        """Context in which the LLM behaves as the plain base model (no LoRA); contexts may nest."""
        if self._adapter_off or not self.has_adapter:
            self._adapter_off += 1
            try:
                yield
            finally:
                self._adapter_off -= 1
            return
        inner = self.lora.disable_adapter() if self.lora is not None else self.llm.disable_adapter()
        self._adapter_off += 1
        try:
            with inner:
                yield
        finally:
            self._adapter_off -= 1

    def _reader(self):
        """Where the LLM reads the prompt: the base LLM for token-rate AuRA (the LoRA only hears), else as set."""
        return self.adapter_disabled() if self.token_rate else contextlib.nullcontext()

    # ------------------------------------------------------------------ embeddings
    def embed_audio(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_mels, F) log-mel -> (B, T, d_llm) audio tokens and (B,) valid token counts."""
        features = features.to(self.embedding.conv1.weight.device)
        if frame_lengths is not None:
            frame_lengths = frame_lengths.to(features.device)
        return self.embedding(features, frame_lengths)

    def input_embeddings(self, input_ids: torch.Tensor, audio_spans: Sequence[Sequence[tuple[int, int]]] | None = None,
                         audio_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings with audio written over each placeholder span.

        input_ids: (B, L); audio_spans[b] = [(start, length), ...] in clip order; audio_embeds: (N_clips, T, d)
        with clips numbered row by row, span by span. Returns (B, L, d) in the LLM's dtype.
        """
        embeds = self.llm.get_input_embeddings()(input_ids.to(self.device))  # (B, L, d)
        if not audio_spans or audio_embeds is None:
            return embeds
        embeds = embeds.clone()
        clip = 0
        for b, spans in enumerate(audio_spans):
            for start, length in spans:
                if clip >= audio_embeds.shape[0] or length > audio_embeds.shape[1]:
                    raise ValueError(f"audio span ({start}, {length}) of row {b} has no matching clip embedding")
                embeds[b, start:start + length] = audio_embeds[clip, :length].to(embeds.dtype)
                clip += 1
        if clip != audio_embeds.shape[0]:
            raise ValueError(f"{audio_embeds.shape[0]} clip embeddings for {clip} audio spans")
        return embeds

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor | None = None,
                audio_spans=None, features: torch.Tensor | None = None, frame_lengths: torch.Tensor | None = None,
                audio_embeds: torch.Tensor | None = None, **llm_kwargs):
        """One LLM forward pass with audio spliced in. Pass either features (+ frame_lengths) or audio_embeds.

        Token-rate AuRA takes ``audio_embeds`` only (the pooled tokens of :meth:`hear`, whose counts the prompt's
        spans were built with) and reads them with the base LLM, causally, like text.
        """
        if self.token_rate and audio_spans and any(audio_spans) and audio_embeds is None:
            raise ValueError("token-rate AuRA needs the pooled tokens (hear()) as audio_embeds, not features")
        if audio_embeds is None and features is not None:
            audio_embeds, _ = self.embed_audio(features, frame_lengths)
        embeds = self.input_embeddings(input_ids, audio_spans, audio_embeds)
        dev = embeds.device
        attention_mask = attention_mask.to(dev)
        if self.bidirectional_audio and not self.token_rate and audio_spans and any(audio_spans):
            attention_mask = span_attention_mask(attention_mask, audio_spans, embeds.dtype)
        with self._reader():
            return self.llm(
                inputs_embeds=embeds, attention_mask=attention_mask,
                position_ids=None if position_ids is None else position_ids.to(dev), **llm_kwargs,
            )

    # ------------------------------------------------------------------ token rate: hearing and pooling
    def hear_states(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None
                    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Pass 1: each clip alone through the AudioEmbedding and the first ``hearing_layers`` decoder layers
        (LoRA on). Returns the states [embedding output, layer 1, ..., layer k], each (B, T, d), and (B,) lengths."""
        embeds, lengths = self.embed_audio(features, frame_lengths)  # (B, T, d)
        embeds = embeds.to(self.dtype)
        valid = length_mask(lengths, embeds.shape[1]).long()
        spans = [[(0, int(n))] for n in lengths.tolist()] if self.bidirectional_audio else []
        mask = span_attention_mask(valid, spans, embeds.dtype)
        return run_layers(self.llm, embeds, mask, self.hearing_layers), lengths

    def hear(self, features: torch.Tensor, frame_lengths: torch.Tensor | None = None,
             counts: torch.Tensor | None = None) -> Pooled:
        """Token-rate AuRA: clips -> about one input vector per text token (``counts`` forces how many)."""
        states, lengths = self.hear_states(features, frame_lengths)
        return self.pool(states[-1], lengths, counts)

    def pool(self, states: torch.Tensor, lengths: torch.Tensor, counts: torch.Tensor | None = None) -> Pooled:
        """The pooler on the last hearing states, in its own dtype (the LLM may compute in bf16, the pooler in fp32)."""
        return self.pooler(states.to(self.pooler.weight.weight.dtype), lengths, counts)

    # ------------------------------------------------------------------ decoding
    def _decode_steps(self, input_ids, attention_mask, position_ids, audio_spans, features, frame_lengths,
                      gen: GenerationSettings, audio_embeds: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
        """Prefill, then yield the (B,) next ids one step at a time, up to ``gen.max_new_tokens``, with a KV cache.

        Each step is computed only when the consumer asks for it, so a consumer that stops pulling costs nothing
        more. Positions continue by 1 from each row's last prompt position (``position_ids``, default: counting the
        real tokens), so fractional audio positions carry through.
        """
        generator = None
        if gen.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(gen.seed)
        dev = self.device
        attention_mask = attention_mask.to(dev)
        if position_ids is None:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        position = position_ids.to(dev)[:, -1:]
        # only the last position's logits are read: at a real vocabulary they are a quarter of a prefill's work
        out = self.forward(input_ids, attention_mask, position_ids, audio_spans, features, frame_lengths, audio_embeds,
                           use_cache=True, logits_to_keep=1)
        for step in range(gen.max_new_tokens):
            next_id = sample_next(out.logits[:, -1, :], gen, generator)  # (B,)
            yield next_id
            if step + 1 == gen.max_new_tokens:
                return
            attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=1)
            position = position + 1
            with self._reader():
                out = self.llm(input_ids=next_id[:, None].to(dev), attention_mask=attention_mask, position_ids=position,
                               use_cache=True, **next_step_cache(out))

    @torch.no_grad()
    def generate_ids(self, input_ids, attention_mask, audio_spans=None, features=None, frame_lengths=None,
                     gen: GenerationSettings | None = None, eos_ids: Sequence[int] = (), pad_id: int = 0,
                     position_ids: torch.Tensor | None = None, audio_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Batched, non-streaming decoding with a KV cache. Returns (B, new_len) ids.

        A row that has produced an eos id keeps it and is padded with ``pad_id`` from then on; decoding ends when
        every row has, or after ``gen.max_new_tokens``.
        """
        gen = gen or GenerationSettings()
        eos = torch.tensor(sorted(set(int(e) for e in eos_ids)), dtype=torch.long, device=self.device)
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=self.device)
        new: list[torch.Tensor] = []
        for next_id in self._decode_steps(input_ids, attention_mask, position_ids, audio_spans, features,
                                          frame_lengths, gen, audio_embeds):
            next_id = torch.where(done, torch.full_like(next_id, pad_id), next_id)
            new.append(next_id)
            done = done | torch.isin(next_id, eos)
            if bool(done.all()):
                break
        if not new:
            return input_ids.new_zeros((input_ids.shape[0], 0))
        return torch.stack(new, dim=1)

    @torch.no_grad()
    def stream_ids(self, input_ids, attention_mask, position_ids=None, audio_spans=None, features=None,
                   frame_lengths=None, gen: GenerationSettings | None = None, eos_ids: Sequence[int] = (),
                   stop: StopFlag = None, audio_embeds: torch.Tensor | None = None) -> Iterator[int]:
        """Decode one request token by token with a KV cache; yields ids; ``stop`` ends it between tokens.

        The first id is yielded right after the prefill, so its time is the time to first token.
        """
        gen = gen or GenerationSettings()
        if input_ids.shape[0] != 1:
            raise ValueError("stream_ids decodes one request at a time")
        if _is_stopped(stop):
            return
        eos = set(int(e) for e in eos_ids)
        for next_id in self._decode_steps(input_ids, attention_mask, position_ids, audio_spans, features,
                                          frame_lengths, gen, audio_embeds):
            token = int(next_id.item())
            if token in eos:
                return
            yield token
            if _is_stopped(stop):
                return


class TextStreamDecoder:
    """Turns a stream of token ids into text pieces whose concatenation is the decoded whole.

    Decodes the ids so far each time and emits the new suffix; holds back while the text
    ends in an incomplete UTF-8 sequence (U+FFFD), as transformers' TextStreamer does.
    Decoding must not clean up spaces, so that the text of a prefix is a prefix of the text.
    """

    def __init__(self, decode: Callable[[list[int]], str]):
        self.decode = decode
        self.ids: list[int] = []
        self.emitted = ""

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        text = self.decode(self.ids)
        if text.endswith("\ufffd"):
            return ""
        return self._advance(text)

    def finish(self) -> str:
        return self._advance(self.decode(self.ids)) if self.ids else ""

    def _advance(self, text: str) -> str:
        if not text.startswith(self.emitted):
            return ""  # the tokenizer rewrote an emitted tail (rare); wait until the text is prefix-stable again
        piece = text[len(self.emitted):]
        self.emitted = text
        return piece


def eos_token_ids(tokenizer, llm) -> list[int]:
    """Every id that ends an answer: the tokenizer's eos and the LLM's generation_config eos (int or list)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    eos = getattr(getattr(llm, "generation_config", None), "eos_token_id", None)
    if isinstance(eos, int):
        ids.add(eos)
    elif eos:
        ids.update(int(e) for e in eos)
    return sorted(ids)
