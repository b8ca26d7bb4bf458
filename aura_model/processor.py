"""Chat prompts with audio placeholders -> token ids, attention masks and audio spans.

The user turn carries the placeholder text (``<|audio|>`` by default) once per clip.
The rendered chat template is split at each placeholder; the text pieces are tokenized
on their own and each placeholder becomes exactly T copies of one existing token id,
T = the clip's number of audio tokens. The model later overwrites the embeddings of
that span with the AudioEmbedding output. The vocabulary is never resized.

Batches are LEFT-padded (decoder-only generation continues at the right edge);
``position_ids`` count only real tokens so a padded clip sees the same positions as
when it is alone; inside an audio span they advance by ``PromptConfig.audio_position_step``
(:func:`position_row`), so they are float when that step is fractional.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from .config import PromptConfig
from .errors import AuraError

Message = dict[str, Any]  # {"role": "system"|"user"|"assistant", "content": str}


def position_row(length: int, spans: Sequence[tuple[int, int]], step: float = 1.0) -> torch.Tensor:
    """RoPE positions of one unpadded row of ``length`` ids whose audio spans are ``spans`` [(start, n)].

    Each text token advances the position by 1 and each audio token by ``step``: (length,) long 0..length-1
    when step is 1 (or there is no audio), else float32.
    """
    if step == 1 or not spans:
        return torch.arange(length)
    advance = torch.ones(length, dtype=torch.float32)
    for start, n in spans:
        advance[start:start + n] = step
    return torch.cat([advance.new_zeros(1), advance[:-1].cumsum(0)]) if length else advance


@dataclass
class Encoded:
    """A tokenized batch ready for AuraModel."""

    input_ids: torch.Tensor  # (B, L) long, left-padded with pad_id
    attention_mask: torch.Tensor  # (B, L) long, 1 on real tokens (audio span included)
    position_ids: torch.Tensor  # (B, L), 0.. over real tokens, 0 on padding (float if audio_position_step < 1)
    audio_spans: list[list[tuple[int, int]]] = field(default_factory=list)  # per row: (start, length) of each clip, in clip order

    def to(self, device: torch.device | str) -> "Encoded":
        return Encoded(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device), self.audio_spans)


def left_pad(rows: Sequence[Sequence[int]], spans: Sequence[Sequence[tuple[int, int]]], pad_id: int,
             audio_position_step: float = 1.0) -> Encoded:
    """Unpadded id rows (with their audio spans) -> one left-padded batch; spans shifted by the padding, positions
    by :func:`position_row` over the real tokens only."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    row_positions = [position_row(len(r), row_spans, audio_position_step) for r, row_spans in zip(rows, spans)]
    fractional = any(p.is_floating_point() for p in row_positions)  # a typed row among spoken ones stays whole
    positions = torch.zeros((len(rows), width), dtype=torch.float32 if fractional else torch.long)
    shifted: list[list[tuple[int, int]]] = []
    for b, (row, row_spans) in enumerate(zip(rows, spans)):
        offset = width - len(row)
        input_ids[b, offset:] = torch.tensor(list(row), dtype=torch.long)
        attention[b, offset:] = 1
        positions[b, offset:] = row_positions[b]
        shifted.append([(start + offset, n) for start, n in row_spans])
    return Encoded(input_ids, attention, positions, shifted)


class AuraProcessor:
    """Builds prompts for a tokenizer with a chat template."""

    def __init__(self, tokenizer, prompt: PromptConfig | None = None):
        self.tokenizer = tokenizer
        self.prompt = prompt or PromptConfig()
        if not getattr(tokenizer, "chat_template", None):
            name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
            raise AuraError(
                f"tokenizer {name!r} has no chat template; AuRA needs a chat (instruct) model "
                "or a tokenizer_config.json with a 'chat_template'"
            )
        self.placeholder_id = self._pick_placeholder_id(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.placeholder_id

    @staticmethod
    def _pick_placeholder_id(tokenizer) -> int:
        # Any existing id works (its embedding is overwritten); prefer one the model never attends to as text.
        for tid in (tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.eos_token_id):
            if tid is not None:
                return int(tid)
        return 0

    # ------------------------------------------------------------------ prompts
    def messages(self, user_text: str | None = None, n_audio: int = 0, history: Sequence[Message] = (),
                 system_prompt: str | None = None) -> list[Message]:
        """The message list of one request: system turn, earlier turns, then the user turn."""
        system = self.prompt.system_prompt if system_prompt is None else system_prompt
        msgs: list[Message] = [{"role": "system", "content": system}] if system else []
        msgs += list(history)
        parts = []
        if n_audio:
            if self.prompt.audio_instruction:
                parts.append(self.prompt.audio_instruction)
            parts.append(" ".join([self.prompt.placeholder] * n_audio))
        if user_text:
            parts.append(user_text)
        if not parts:
            raise AuraError("a request needs audio, text or both")
        msgs.append({"role": "user", "content": " ".join(parts) if len(parts) > 1 else parts[0]})
        return msgs

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=add_generation_prompt)

    # ------------------------------------------------------------------ ids
    def text_ids(self, text: str) -> list[int]:
        """Ids of plain ``text`` in the student's tokenizer (e.g. a transcript)."""
        # The template already wrote any BOS it wants as text, so add no special tokens here.
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def encode_one(self, rendered: str, audio_tokens: Sequence[int]) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids of one rendered prompt, with each placeholder expanded to its clip's token count."""
        pieces = rendered.split(self.prompt.placeholder)
        if len(pieces) - 1 != len(audio_tokens):
            raise AuraError(
                f"prompt has {len(pieces) - 1} audio placeholder(s) {self.prompt.placeholder!r} "
                f"but {len(audio_tokens)} clip(s) were given"
            )
        ids: list[int] = []
        spans: list[tuple[int, int]] = []
        for i, piece in enumerate(pieces):
            ids += self.text_ids(piece)
            if i < len(audio_tokens):
                n = int(audio_tokens[i])
                if n < 1:
                    raise AuraError(f"clip {i} yields no audio tokens (too short)")
                spans.append((len(ids), n))
                ids += [self.placeholder_id] * n
        return ids, spans

    def encode(self, rendered: Sequence[str], audio_tokens: Sequence[Sequence[int]] | None = None) -> Encoded:
        """Tokenize a batch of rendered prompts; ``audio_tokens[b]`` lists the token count of each clip of row b."""
        audio_tokens = audio_tokens or [[] for _ in rendered]
        rows = [self.encode_one(r, a) for r, a in zip(rendered, audio_tokens, strict=True)]
        return left_pad([ids for ids, _ in rows], [spans for _, spans in rows], self.pad_id,
                        self.prompt.audio_position_step)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)
