"""How much a demo LLM's text accuracy depends on the context before the request.

    python research/probe_llm_context.py .cache/demo-build/llm [--n 120]

Prints exact-match accuracy on the first N valid requests with no system turn, a one-word
system turn and a 24-word one. A chat LLM should not care; a tiny LLM trained on single
turns does (98% -> 83% -> 25% measured), which is why the demo LLM trains with history turns.
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from aura_model.demo import domain
from aura_model.scoring import normalize_answer

PREFIXES = {"none": "", "one word": "answer",
            "24 words": "the kitchen light the office fan the garage radio the hallway lamp the bedroom heater what is"}


def accuracy(model, tok, rows, prefix: str) -> float:
    ok = 0
    for r in rows:
        msgs = ([{"role": "system", "content": prefix}] if prefix else []) + [{"role": "user", "content": r["text"]}]
        ids = torch.tensor([tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True, return_dict=False)])
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        answer = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        ok += normalize_answer(answer) == normalize_answer(r["answer"])
    return ok / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a demo LLM folder (e.g. .cache/demo-build/llm or assets/default_bundle/base)")
    parser.add_argument("--n", type=int, default=120, help="valid requests to score")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    rows = domain.sentences("valid")[: args.n]
    print(f"{'context':<10} accuracy")
    for name, prefix in PREFIXES.items():
        print(f"{name:<10} {100 * accuracy(model, tok, rows, prefix):.1f}%")


if __name__ == "__main__":
    main()
