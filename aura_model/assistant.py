"""The request API the CLI and the GUI share: audio and/or text in, answer text out (streamed or whole)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from . import audio as audio_io
from .bundle import Loaded, load_base_only, load_bundle
from .config import GenerationSettings, RuntimeConfig
from .embedding import num_audio_tokens
from .errors import AuraError
from .model import StopFlag, TextStreamDecoder, eos_token_ids
from .processor import AuraProcessor, Encoded, Message

AudioInput = str | Path | np.ndarray  # a file, or 16 kHz mono float32 samples (see audio.prepare_waveform)


@dataclass
class Prepared:
    """One request, tokenized and featurized."""

    encoded: Encoded
    features: torch.Tensor | None  # (B, n_mels, F) log-mel, None for text-only
    frame_lengths: torch.Tensor | None  # (B,)
    audio_embeds: torch.Tensor | None = None  # token-rate AuRA: (clips, N, d) pooled tokens the spans were built for


class Assistant:
    """A loaded model plus its processor."""

    def __init__(self, loaded: Loaded):
        self.loaded = loaded
        self.model = loaded.model
        self.config = loaded.config
        self.processor = AuraProcessor(loaded.tokenizer, loaded.config.prompt)
        self.eos_ids = eos_token_ids(loaded.tokenizer, loaded.model.llm)

    @classmethod
    def open(cls, bundle: str | Path | None = None, base: str | None = None, runtime: RuntimeConfig | None = None,
             trust_remote_code: bool = False) -> "Assistant":
        """A bundle (optionally onto another copy of its base), or a plain base model for typed chat."""
        if bundle is not None:
            return cls(load_bundle(bundle, runtime, base, trust_remote_code))
        if base is not None:
            return cls(load_base_only(base, runtime, trust_remote_code))
        raise AuraError("no model given: pass a bundle (--bundle DIR) or a base model (--base MODEL)")

    @property
    def can_hear(self) -> bool:
        """False for a plain base model: it has no trained adapter to understand audio."""
        return self.loaded.bundle_dir is not None

    # ------------------------------------------------------------------ preparing
    def waveform(self, audio: AudioInput) -> np.ndarray:
        if isinstance(audio, np.ndarray):
            return audio_io.prepare_waveform(audio, self.config.audio.sample_rate, self.config.audio)
        return audio_io.load_audio(audio, self.config.audio)

    def prepare(self, audios: Sequence[AudioInput | None], texts: Sequence[str | None] | None = None,
                history: Sequence[Message] = (), system_prompt: str | None = None) -> Prepared:
        """A batch of requests, row b = audios[b] (or None) and texts[b] (or None)."""
        texts = list(texts) if texts is not None else [None] * len(audios)
        if len(texts) != len(audios):
            raise ValueError("audios and texts must have the same length")
        has_audio = [a is not None for a in audios]
        if any(has_audio) and not self.can_hear:
            raise AuraError("this is a plain base model without an AuRA adapter: it can read typed text, not audio; "
                            "load a bundle to talk to it")
        waves = [self.waveform(a) for a in audios if a is not None]
        features = frame_lengths = pooled = None
        tokens: list[list[int]] = [[] for _ in audios]
        if waves:
            features, frame_lengths = audio_io.features_for(waves, self.config.audio)
            if self.model.token_rate:  # pass 1 decides how many input vectors each clip becomes
                with torch.no_grad():
                    pooled = self.model.hear(features, frame_lengths)
                counts = pooled.counts.tolist()
            else:
                counts = num_audio_tokens(frame_lengths, self.config.embedding.stack).tolist()
            it = iter(counts)
            tokens = [[next(it)] if h else [] for h in has_audio]
        rendered = [
            self.processor.render(self.processor.messages(t, int(h), history, system_prompt))
            for t, h in zip(texts, has_audio)
        ]
        encoded = self.processor.encode(rendered, tokens)
        if pooled is not None:
            return Prepared(encoded, None, None, pooled.tokens)
        return Prepared(encoded, features, frame_lengths)

    # ------------------------------------------------------------------ answering
    def stream(self, audio: AudioInput | None = None, text: str | None = None, gen: GenerationSettings | None = None,
               stop: StopFlag = None, history: Sequence[Message] = (), system_prompt: str | None = None) -> Iterator[str]:
        """Text pieces of the answer as they are decoded; ``stop`` (an Event or callable) ends it early."""
        prepared = self.prepare([audio], [text], history, system_prompt)
        decoder = TextStreamDecoder(self.processor.decode)
        enc = prepared.encoded
        with self._llm_for(audio is not None):
            for token in self.model.stream_ids(enc.input_ids, enc.attention_mask, enc.position_ids, enc.audio_spans,
                                               prepared.features, prepared.frame_lengths, gen, self.eos_ids, stop,
                                               prepared.audio_embeds):
                piece = decoder.push(token)
                if piece:
                    yield piece
        tail = decoder.finish()
        if tail:
            yield tail

    def answer(self, audio: AudioInput | None = None, text: str | None = None, gen: GenerationSettings | None = None,
               history: Sequence[Message] = (), system_prompt: str | None = None) -> str:
        """The whole answer at once (transformers' generate; batched decoding path)."""
        return self.answer_batch([audio], [text], gen, history, system_prompt)[0]

    def answer_batch(self, audios: Sequence[AudioInput | None], texts: Sequence[str | None] | None = None,
                     gen: GenerationSettings | None = None, history: Sequence[Message] = (),
                     system_prompt: str | None = None) -> list[str]:
        has_audio = [a is not None for a in audios]
        if any(has_audio) and not all(has_audio):  # typed and spoken requests run on different weights
            texts = list(texts) if texts is not None else [None] * len(audios)
            answers: list[str] = [""] * len(audios)
            for group in (True, False):
                rows = [i for i, h in enumerate(has_audio) if h == group]
                for i, a in zip(rows, self.answer_batch([audios[i] for i in rows], [texts[i] for i in rows], gen,
                                                        history, system_prompt)):
                    answers[i] = a
            return answers
        prepared = self.prepare(audios, texts, history, system_prompt)
        enc = prepared.encoded
        with self._llm_for(any(has_audio)):
            out = self.model.generate_ids(enc.input_ids, enc.attention_mask, enc.audio_spans, prepared.features,
                                          prepared.frame_lengths, gen, self.eos_ids, self.processor.pad_id,
                                          enc.position_ids, prepared.audio_embeds)
        return [self.processor.decode(self._strip_eos(row.tolist())) for row in out]

    def _llm_for(self, spoken: bool):
        """The adapter serves spoken turns; a typed turn runs on the plain base LLM, which is what reads text best
        (the adapter was distilled on audio only and may shift text answers)."""
        return contextlib.nullcontext() if spoken else self.model.adapter_disabled()

    def _strip_eos(self, ids: list[int]) -> list[int]:
        for i, t in enumerate(ids):
            if t in self.eos_ids:
                return ids[:i]
        return ids

    def timed_stream(self, audio: AudioInput | None = None, text: str | None = None,
                     gen: GenerationSettings | None = None, stop: StopFlag = None) -> Iterator[tuple[str, float]]:
        """Like stream(), each piece paired with seconds since the call (the first one is time to first token)."""
        t0 = time.perf_counter()
        for piece in self.stream(audio, text, gen, stop):
            yield piece, time.perf_counter() - t0

    def describe(self) -> dict:
        """What the status bar and `aura chat --verbose` show."""
        from . import backends

        r = self.loaded.resolved
        return {
            "device": backends.device_name(r.device),
            "quantization": r.quantization,
            "dtype": str(r.dtype).replace("torch.", ""),
            "base": self.loaded.base_ref,
            "bundle": str(self.loaded.bundle_dir) if self.loaded.bundle_dir else None,
            "memory_bytes": backends.memory_in_use(r.device),
            "notices": list(r.notices),
        }
