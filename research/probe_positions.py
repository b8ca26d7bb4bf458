"""How much a demo LLM's text accuracy depends on how far apart the request's tokens sit (RoPE positions).

    python research/probe_positions.py [--model assets/default_bundle/base] [--split test] [--spread 1 2 4 0.5 0.25]
                                         [--repeat 1 2 4]

Reads each request of the split as text, with the same tokens, but places the request's
tokens ``spread`` positions apart (the chat template around it keeps whole steps), and
prints exact-match accuracy per family. A clip's audio span holds about 4-5 audio tokens
per transcript token, so at one position per audio token the LLM meets the words of a
request about 4-5x farther apart than in any text it was trained on; the demo LLM then
answers 9.5 % of test requests instead of 97.4 % (measured on the shipped base).
research/NOTES.md measures two remedies: packed audio positions (``--prompt.audio_position_step``)
and an LLM trained on stretched requests (``LLMTrainConfig.stretch_fraction``).

``--repeat r`` instead writes each request token r times in a row (one position each): the
shape of an audio span, where one word lasts several tokens.
"""

from __future__ import annotations

import argparse
import collections

import torch

from aura_model.bundle import load_base_only
from aura_model.config import GenerationSettings
from aura_model.demo import domain
from aura_model.evaluate import is_correct
from aura_model.processor import AuraProcessor, position_row


def spread_prompt(proc, text: str, spread: float, repeat: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, L) ids of the chat prompt for ``text`` (each request token ``repeat`` times) and (1, L) positions with
    the request's tokens ``spread`` apart."""
    rendered = proc.render(proc.messages(user_text=proc.prompt.placeholder))
    before, after = rendered.split(proc.prompt.placeholder)
    head, tail = proc.text_ids(before), proc.text_ids(after)
    request = [t for t in proc.text_ids(text) for _ in range(repeat)]
    ids = head + request + tail
    positions = position_row(len(ids), [(len(head), len(request))], spread)  # the request as a span of step `spread`
    return torch.tensor([ids]), positions[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="assets/default_bundle/base", help="a demo LLM folder")
    parser.add_argument("--split", default="test", choices=domain.SPLITS)
    parser.add_argument("--spread", type=float, nargs="+", default=[1, 2, 4, 0.5, 0.25],
                        help="positions between consecutive request tokens")
    parser.add_argument("--repeat", type=int, nargs="*", default=[],
                        help="also score requests with each token written r times (one position each)")
    parser.add_argument("--n", type=int, default=None, help="score only the first N requests")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_base_only(args.model)
    proc = AuraProcessor(loaded.tokenizer, loaded.config.prompt)
    eos = [loaded.tokenizer.eos_token_id]
    gen = GenerationSettings(max_new_tokens=16)
    rows = domain.sentences(args.split)[: args.n]
    families = sorted({r["family"] for r in rows})
    print("| request tokens | accuracy | " + " | ".join(families) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in families) + " |")
    for label, spread, repeat in ([(f"{k:g} positions apart" if k != 1 else "as written", k, 1) for k in args.spread]
                                  + [(f"each written {r}x", 1.0, r) for r in args.repeat]):
        hits = collections.defaultdict(list)
        for r in rows:
            ids, positions = spread_prompt(proc, r["text"], spread, repeat)
            out = loaded.model.generate_ids(ids, torch.ones_like(ids), gen=gen, eos_ids=eos, pad_id=proc.pad_id,
                                            position_ids=positions)
            answer = proc.decode([t for t in out[0].tolist() if t not in eos and t != proc.pad_id])
            hits[r["family"]].append(is_correct(answer, r["answer"]))
        total = [h for v in hits.values() for h in v]
        print(f"| {label} | {100 * sum(total) / len(total):.1f}% | "
              + " | ".join(f"{100 * sum(hits[f]) / len(hits[f]):.0f}" for f in families) + " |", flush=True)

if __name__ == "__main__":
    main()
