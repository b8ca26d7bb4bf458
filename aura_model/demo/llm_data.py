"""The demo LLM's training data: the world-knowledge pairs, the train requests, and chat examples as token ids.

:func:`knowledge_corpus` is the stand-in for a base LLM's pre-training (see :mod:`.lm`); :func:`train_requests`
the train split's requests (the listing, or every phrasing of its compositions); :func:`encode_example` one chat
turn with the loss on the answer only; :func:`with_history` earlier turns before it; :func:`stretch_request` the
request's tokens repeated and blanked (a text stand-in for audio's frame rate); :func:`pad_batch` right-padded
tensors.
"""

from __future__ import annotations

import torch

from . import domain


def _count(n: int, unit: str) -> str:
    return f"{domain.number_to_words(n)} {unit if n == 1 else unit + 's'}"


def knowledge_corpus() -> list[tuple[str, str]]:
    """World knowledge as ~5.5k terse (query, answer) pairs: the stand-in for an LLM's pre-training.

    A real base LLM knows that six times seven is 42, what is three days after friday, that
    20 days are 480 hours and that moscow is the capital of russia, before it ever sees a
    request. The demo LLM gets that knowledge from this corpus, generated from the domain's
    *tables and ranges* (every operand pair, amount, offset and country), independently of
    the train/valid/test listing, and phrased as bare keys ("six times seven" -> "42",
    "capital of france" -> "paris"), never in the request templates of the listing. The
    valid/test *requests* stay unseen; what they test is answering a new request about a
    known fact. Without it the train requests cannot determine held-out facts: no train
    request implies 6 x 7 = 42, and the reverse of a capital is asked once per country.
    Each capital has two reverse keys, one naming the city last and one naming it first.
    """
    w = domain.number_to_words
    out = [(w(n), str(n)) for n in range(0, 101)]
    for unit in ("second", "minute", "hour", "day", "week", "month", "year"):
        out += [(_count(n, unit), f"{n} {unit if n == 1 else unit + 's'}") for n in range(1, 61)]
    for a in range(domain.ARITH_MAX + 1):
        for b in range(domain.ARITH_MAX + 1):
            out.append((f"{w(a)} plus {w(b)}", str(a + b)))
            if b <= a:
                out.append((f"{w(a)} minus {w(b)}", str(a - b)))
    for a in range(domain.TIMES_MAX + 1):
        for b in range(domain.TIMES_MAX + 1):
            out.append((f"{w(a)} times {w(b)}", str(a * b)))
    for src, dst, factor in domain.CONVERSIONS:
        for n in domain.CONVERSION_AMOUNTS:
            out.append((f"{_count(n, src)} in {dst}s", str(n * factor)))
    for names, unit, offsets in ((domain.WEEKDAYS, "day", range(1, 15)), (domain.MONTHS, "month", range(1, 13))):
        for start in names:
            for k in offsets:
                out.append((f"{_count(k, unit)} after {start}", domain.shift_name(names, start, k)))
                out.append((f"{_count(k, unit)} before {start}", domain.shift_name(names, start, -k)))
    for country, capital in domain.CAPITALS.items():
        out.append((f"capital of {country}", capital))
        out.append((f"country with capital {capital}", country))
        # City-first too: "{city} is the capital of which country" reads the city before the
        # question; with only the city-last key the LLM guessed a frequent country for it.
        out.append((f"{capital}, capital of", country))
    return out


def train_requests(pool: str = "compositions") -> list[dict]:
    """The requests the LLM is trained on: ``[{"text", "answer", "family"}, ...]``, train split only.

    ``"listing"`` is ``domain.sentences("train")``. ``"compositions"`` adds every other phrasing
    of the train split's compositions that the listing left out by its per-family caps: the same
    compositions, keys and templates, none from valid/test (``domain._candidates`` filtered to
    ``split == "train"``; the listing is a capped subset of exactly these).
    """
    rows = domain.sentences("train")
    if pool == "listing":
        return rows
    seen = {r["text"] for r in rows}
    extra = sorted((c for c in domain._candidates() if c.split == "train" and c.text not in seen),
                   key=lambda c: (c.family, c.text))
    return rows + [{"text": c.text, "answer": c.answer, "family": c.family} for c in extra]


def prompt_ids(tokenizer, text: str) -> list[int]:
    """The chat prompt for one request, ending with the assistant header (what generation continues)."""
    return list(tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                              add_generation_prompt=True, return_dict=False))


def encode_example(tokenizer, text: str, answer: str) -> tuple[list[int], list[int]]:
    """(input ids, labels) of one chat example; labels are -100 except on ``answer<|im_end|>``."""
    prompt = prompt_ids(tokenizer, text)
    target = tokenizer.encode(answer, add_special_tokens=False) + [tokenizer.eos_token_id]
    return prompt + target, [-100] * len(prompt) + target


def with_history(examples: list[tuple[list[int], list[int]]], example: tuple[list[int], list[int]], history: list[int],
                 newline_id: int, score_history: bool = False) -> tuple[list[int], list[int]]:
    """``example`` (ids, labels) preceded by the earlier turns ``history`` (indices into ``examples``).

    A finished turn is its prompt + answer + ``<|im_end|>`` then ``\\n``, exactly what the ChatML
    template writes, so the concatenation equals tokenizing the whole conversation. The earlier
    answers are scored too with ``score_history`` (as chat fine-tuning scores every assistant turn).
    """
    ids: list[int] = []
    labels: list[int] = []
    for h in history:
        hx, hy = examples[h]
        ids += hx + [newline_id]
        labels += (hy if score_history else [-100] * len(hx)) + [-100]
    x, y = example
    return ids + x, labels + y


def content_bounds(tokenizer) -> tuple[int, int]:
    """(prefix, suffix) token counts of the chat template around a user turn's content."""
    empty = prompt_ids(tokenizer, "")
    prefix = empty.index(tokenizer.eos_token_id)  # the user turn's <|im_end|> follows its content
    return prefix, len(empty) - prefix


def stretch_request(example: tuple[list[int], list[int]], bounds: tuple[int, int], blank_id: int, max_copies: int,
                    blank_rate: float, gen: torch.Generator, drop_rate: float = 0.0,
                    blank_max: int = 1) -> tuple[list[int], list[int]]:
    """The example with its request tokens repeated 1..max_copies times each (dropped with ``drop_rate``)
    and 1..blank_max blanks after some (and 0..blank_max before the first when blank_max > 1)."""
    x, y = example
    prompt_len = next((i for i, v in enumerate(y) if v != -100), len(y))
    start, end = bounds[0], prompt_len - bounds[1]

    def blanks(low: int) -> list[int]:
        return [blank_id] * (int(torch.randint(low, blank_max + 1, (), generator=gen)) if blank_max > 1 else 1)

    content: list[int] = blanks(0) if blank_max > 1 else []
    for tok in x[start:end]:
        if drop_rate and float(torch.rand((), generator=gen)) < drop_rate:
            continue
        content += [tok] * int(torch.randint(1, max_copies + 1, (), generator=gen))
        if float(torch.rand((), generator=gen)) < blank_rate:
            content += blanks(1)
    new_x = x[:start] + content + x[end:]
    return new_x, [-100] * (len(new_x) - (len(x) - prompt_len)) + y[prompt_len:]


def pad_batch(examples: list[tuple[list[int], list[int]]],
              pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (N, L) ids, labels, attention mask for all examples."""
    L = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), L), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), L), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), L), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return ids, labels, mask
