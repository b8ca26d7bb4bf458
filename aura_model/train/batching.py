"""Micro-batches: clips -> log-mel, teacher targets, and the two token sequences of each clip.

For each clip the student reads ``prompt(audio placeholder) + response`` and the base LLM
(adapter disabled) reads ``prompt(transcript) + response``: the same user turn with the
placeholder replaced by the transcript, then the same response ids (teacher forcing). Both
batches are LEFT-padded like the processor's, so every response sits at the right edge: with
``logits_to_keep = R + 1`` (R = longest response in the batch), ``logits[:, :-1]`` holds, in both
sequences, the positions predicting the response tokens, right-aligned in ``(B, R)``. That is
the position-by-position alignment the response KL needs, whatever the prompt lengths.

Data order: each epoch is a permutation of the training items seeded by (seed, epoch), padded
by wrapping around to a multiple of the number of processes and dealt round-robin, so every
process gets the same number of batches and a run can restart at any (epoch, batch) exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import audio as audio_io
from ..config import ModelConfig
from ..embedding import num_audio_tokens
from ..errors import AuraError
from ..processor import AuraProcessor, left_pad
from .cache import Cache
from .data import Item, Source


@dataclass
class Tokens:
    """A left-padded batch of token rows."""

    input_ids: torch.Tensor  # (B, L) long
    attention_mask: torch.Tensor  # (B, L) long
    position_ids: torch.Tensor  # (B, L), counting real tokens only (audio tokens by the prompt's audio_position_step)
    audio_spans: list[list[tuple[int, int]]]  # per row, [(start, length)] of its clip (empty for text rows)

    def to(self, device) -> "Tokens":
        return Tokens(self.input_ids.to(device), self.attention_mask.to(device), self.position_ids.to(device),
                      self.audio_spans)


@dataclass
class Batch:
    """Everything one micro-batch needs on the student side."""

    keys: list[str]
    features: torch.Tensor  # (B, n_mels, F) student log-mel
    frame_lengths: torch.Tensor  # (B,)
    audio_tokens: list[int]  # T_b, the student's audio tokens per clip
    student: Tokens  # audio prompt (+ response)
    base: Tokens | None = None  # transcript prompt + response, for the KL (None when KL is off)
    prompt_only: Tokens | None = None  # audio prompt alone (for greedy answers in evaluation)
    teacher: dict[int, torch.Tensor] = field(default_factory=dict)  # teacher layer -> (B, T, D) float32
    layer_mask: torch.Tensor | None = None  # (B, T) bool: real student tokens AND real teacher positions
    responses: torch.Tensor | None = None  # (B, R) long, right-aligned response ids (0 where masked)
    response_mask: torch.Tensor | None = None  # (B, R) bool
    response_lists: list[list[int]] = field(default_factory=list)
    ctc_targets: list[list[int]] = field(default_factory=list)  # per clip, the student-tokenizer ids the CTC term
    #   spells (the item's ctc_text, else its transcript); empty when the CTC term is off
    decode_targets: list[list[int]] = field(default_factory=list)  # per clip, the teacher decoder's ids of its
    #   transcript (start to end token) for the teacher-decoder term; empty when that term is off
    shared_suffix: torch.Tensor | None = None  # (B, S) bool, right-aligned: the last positions of a row that
    #   follow its audio span and hold the same ids in the student and the base row (the text-state loss's span)

    @property
    def size(self) -> int:
        return len(self.keys)

    def to(self, device) -> "Batch":
        def mv(x):
            return None if x is None else x.to(device)

        return Batch(self.keys, self.features.to(device), self.frame_lengths.to(device), self.audio_tokens,
                     self.student.to(device), None if self.base is None else self.base.to(device),
                     None if self.prompt_only is None else self.prompt_only.to(device),
                     {t: s.to(device) for t, s in self.teacher.items()}, mv(self.layer_mask), mv(self.responses),
                     mv(self.response_mask), self.response_lists, self.ctc_targets, self.decode_targets,
                     mv(self.shared_suffix))


def pad_left(rows: Sequence[Sequence[int]], spans: Sequence[Sequence[tuple[int, int]]], pad_id: int,
             audio_position_step: float = 1.0) -> Tokens:
    e = left_pad(rows, spans, pad_id, audio_position_step)
    return Tokens(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans)


def text_messages(processor: AuraProcessor, transcript: str, instruction: str = ""):
    """The audio turn with its placeholder replaced by the transcript: what the base LLM reads."""
    msgs = processor.messages(instruction or None, n_audio=1)
    msgs[-1] = dict(msgs[-1], content=msgs[-1]["content"].replace(processor.prompt.placeholder, transcript))
    return msgs


def text_prompt_ids(processor: AuraProcessor, transcript: str, instruction: str = "") -> list[int]:
    ids, _ = processor.encode_one(processor.render(text_messages(processor, transcript, instruction)), [])
    return ids


class Collator:
    """Items -> Batch. Runs in DataLoader workers when train.num_workers > 0 (no torch RNG used)."""

    def __init__(self, source: Source, processor: AuraProcessor, model_cfg: ModelConfig, cache: Cache,
                 teacher_layers: Sequence[int], want_response: bool, want_base: bool, want_prompt_only: bool = False,
                 want_ctc: bool = False, decode_ids: Callable[[str], list[int]] | None = None):
        self.source = source
        self.processor = processor
        self.cfg = model_cfg
        self.cache = cache
        self.teacher_layers = sorted(set(teacher_layers))
        self.want_response = want_response
        self.want_base = want_base
        self.want_prompt_only = want_prompt_only
        self.want_ctc = want_ctc
        self.decode_ids = decode_ids  # transcript -> teacher decoder ids (None: the decoder term is off)
        self._audio_prompts: dict[str, str] = {}  # instruction -> rendered audio turn

    def __call__(self, items: list[Item]) -> Batch:
        waves = []
        for it in items:
            try:
                waves.append(self.source.load(it, self.cfg.audio))
            except AuraError as exc:  # validated at the start; a file changed on disk since
                raise AuraError(f"{it.key} became unreadable during training: {exc}") from exc
        feats, frame_lengths = audio_io.features_for(waves, self.cfg.audio)
        n_tok = [int(n) for n in num_audio_tokens(frame_lengths, self.cfg.embedding.stack).tolist()]
        batch = Batch([it.key for it in items], feats, frame_lengths, n_tok,
                      student=self._student_tokens(items, n_tok, with_response=self.want_response))
        if self.teacher_layers:
            self._teacher(batch, items, n_tok)
        if self.want_response:
            self._responses(batch, items)
            if self.want_base:
                rows = [text_prompt_ids(self.processor, it.transcript or "", it.instruction) + list(it.response or [])
                        for it in items]
                batch.base = pad_left(rows, transcript_spans(batch.student, rows), self.processor.pad_id)
                batch.shared_suffix = shared_suffix_mask(batch.student, rows)
        if self.want_prompt_only:
            batch.prompt_only = self._student_tokens(items, n_tok, with_response=False)
        if self.want_ctc:
            batch.ctc_targets = [self.processor.text_ids(it.ctc_text if it.ctc_text is not None else
                                                         it.transcript or "") for it in items]
        if self.decode_ids is not None:
            batch.decode_targets = [self.decode_ids(it.transcript or "") for it in items]
        return batch

    def audio_prompt(self, instruction: str = "") -> str:
        """The rendered user turn: one audio placeholder, then the item's instruction if any."""
        if instruction not in self._audio_prompts:
            self._audio_prompts[instruction] = self.processor.render(self.processor.messages(instruction or None, n_audio=1))
        return self._audio_prompts[instruction]

    def _student_tokens(self, items: list[Item], n_tok: list[int], with_response: bool) -> Tokens:
        rows, spans = [], []
        for it, n in zip(items, n_tok):
            ids, row_spans = self.processor.encode_one(self.audio_prompt(it.instruction), [n])
            if with_response:
                ids = ids + list(it.response or [])
            rows.append(ids)
            spans.append(row_spans)
        return pad_left(rows, spans, self.processor.pad_id, self.processor.prompt.audio_position_step)

    def _teacher(self, batch: Batch, items: list[Item], n_tok: list[int]) -> None:
        t_max = max(n_tok)
        per_layer: dict[int, list[torch.Tensor]] = {t: [] for t in self.teacher_layers}
        mask = torch.zeros(len(items), t_max, dtype=torch.bool)
        for b, it in enumerate(items):
            states = self.cache.load_teacher_layers(it.teacher_keys)
            if states is None:
                raise AuraError(f"teacher states of {it.key} vanished from the cache ({self.cache.root}) during training")
            length = min(n_tok[b], *(states[t].shape[0] for t in self.teacher_layers))
            mask[b, :length] = True
            for t in self.teacher_layers:
                s = states[t][:length].float()
                per_layer[t].append(torch.nn.functional.pad(s, (0, 0, 0, t_max - length)))
        batch.teacher = {t: torch.stack(v) for t, v in per_layer.items()}  # (B, T, D)
        batch.layer_mask = mask

    def _responses(self, batch: Batch, items: list[Item]) -> None:
        lists = [list(it.response or []) for it in items]
        r_max = max(len(r) for r in lists)
        resp = torch.zeros(len(items), r_max, dtype=torch.long)
        mask = torch.zeros(len(items), r_max, dtype=torch.bool)
        for b, r in enumerate(lists):
            if r:
                resp[b, r_max - len(r):] = torch.tensor(r, dtype=torch.long)
                mask[b, r_max - len(r):] = True
        batch.responses, batch.response_mask, batch.response_lists = resp, mask, lists


def transcript_spans(student: Tokens, base_rows: Sequence[Sequence[int]]) -> list[list[tuple[int, int]]]:
    """Per base row (unpadded), [(start, length)] of the transcript tokens: what stands where the student
    row has its audio span. Both rows share the tokens before and after it; [] where they do not."""
    spans = []
    width = student.input_ids.shape[1]
    for b, (row_spans, base) in enumerate(zip(student.audio_spans, base_rows)):
        start, n = row_spans[-1]
        real = int(student.attention_mask[b].sum())
        offset = width - real  # left padding of the student row
        before, after = start - offset, width - (start + n)  # tokens before / after the audio span
        length = len(base) - before - after
        ids = student.input_ids[b].tolist()
        same = (length > 0 and list(base[:before]) == ids[offset:start]
                and list(base[len(base) - after:]) == ids[start + n:])
        spans.append([(before, length)] if same else [])
    return spans


def shared_suffix_mask(student: Tokens, base_rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """(B, S) bool, right-aligned: True on the last positions of each student row that come after its audio
    span and carry the same ids as the end of its base (transcript) row. S = the longest such suffix.

    The two prompts differ only inside the user turn, so this is normally everything after the audio; a
    tokenizer that merged the transcript's last word with what follows would shorten it, never misalign it.
    """
    lengths = []
    for b, (spans, base) in enumerate(zip(student.audio_spans, base_rows)):
        start, n = spans[-1]
        after = student.input_ids[b, start + n:].tolist()
        k = 0
        while k < min(len(after), len(base)) and after[-1 - k] == base[-1 - k]:
            k += 1
        lengths.append(k)
    s = max(lengths, default=0)
    mask = torch.zeros(len(lengths), s, dtype=torch.bool)
    for b, k in enumerate(lengths):
        if k:
            mask[b, s - k:] = True
    return mask


def epoch_batches(n_items: int, epoch: int, seed: int, batch_size: int, world: int, rank: int) -> list[list[int]]:
    """This process's batches (item indices) for one epoch; the same count on every process."""
    order = np.random.default_rng([seed, epoch]).permutation(n_items).tolist()
    per_rank = math.ceil(n_items / world)
    order = (order * (1 + per_rank * world // max(1, n_items)))[: per_rank * world]  # wrap around
    mine = order[rank::world]
    return [mine[i:i + batch_size] for i in range(0, per_rank, batch_size)]


def batches_per_epoch(n_items: int, batch_size: int, world: int) -> int:
    return math.ceil(math.ceil(n_items / world) / batch_size)


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items: list[Item]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]


def loader(items: list[Item], batches: list[list[int]], collate: Collator, num_workers: int) -> Any:
    """An iterator of Batch for the given index batches, in order."""
    if num_workers <= 0:
        return (collate([items[i] for i in idx]) for idx in batches)
    # Its own generator: creating the loader must not draw from the global RNG (exact resume).
    return iter(torch.utils.data.DataLoader(ListDataset(items), batch_sampler=batches, collate_fn=collate,
                                            num_workers=num_workers, generator=torch.Generator().manual_seed(0)))
