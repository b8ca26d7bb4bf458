"""What kind of mistake is a wrong spoken-arithmetic answer? Reads `aura eval` output, runs no model.

For every wrong, numeric answer to a demo arithmetic request, asks which misheard request it would
be the right answer to: the same request with one operand replaced by a number one spoken word
away (the same tens word and another unit word, "forty one" -> "forty four", or the same unit word
and another tens word, "forty one" -> "thirty one"; below 20 the number stays in its decade,
"four" -> "six", "fourteen" -> "sixteen"). The same tally on the wrong predictions shuffled between
the requests is the chance level: a model that hears most words and misses one scores far above it, a
model that guesses does not.

    aura eval --manifest .cache/demo-build/data/test/manifest.jsonl --mode aura > test.jsonl
    python research/arith_errors.py .cache/demo-build/data/test/manifest.jsonl test.jsonl

Measured on the shipped bundle (test split, 90 arithmetic clips, 77 wrong): 38 % of the wrong
answers fit one operand right and the other one word off (shuffled: 13 %), mostly a unit word, and
in the first spoken operand about twice as often as in the second (24 against 13 fits).
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aura_model.demo import domain  # noqa: E402


def one_word_off(x: int, y: int) -> str | None:
    """How ``x`` differs from ``y`` by one spoken word: "unit", "tens", or None (equal, or more words)."""
    if x == y:
        return None
    if x // 10 == y // 10:
        return "unit"
    if x >= 20 and y >= 20 and x % 10 == y % 10:
        return "tens"
    return None


def misheard_fits(op: str, a: int, b: int, a_first: bool, value: int) -> Counter:
    """Which one-word mishearings of the request ``op(a, b)`` have ``value`` as their answer, counted by
    (spoken position of the misheard operand, kind of word off)."""
    fits: Counter = Counter()
    for x in range(domain.ARITH_MAX + 1):
        for is_a, heard, pair in ((True, a, (x, b)), (False, b, (a, x))):
            kind = one_word_off(x, heard)
            if kind and domain.arithmetic_answer(op, *pair) == value:
                fits[("first" if is_a == a_first else "second", kind)] += 1
    return fits


def tally(requests: list[tuple], predictions: list[str]) -> dict:
    numeric = fit = 0
    kinds: Counter = Counter()
    errors = []
    for (op, a, b, a_first), pred in zip(requests, predictions):
        try:
            value = int(pred.strip())
        except ValueError:
            continue
        numeric += 1
        errors.append(abs(value - domain.arithmetic_answer(op, a, b)))
        fits = misheard_fits(op, a, b, a_first, value)
        fit += bool(fits)
        kinds.update(set(fits))
    return {"numeric": numeric, "one_word_off": fit, "share": fit / max(numeric, 1),
            "median_abs_error": statistics.median(errors) if errors else None,
            "by_kind": {f"{s} operand, {k} word": n for (s, k), n in sorted(kinds.items())}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("manifest", help="the manifest `aura eval` read (its lines are matched by index)")
    ap.add_argument("predictions", help="the JSON lines `aura eval` printed")
    ap.add_argument("--seed", type=int, default=0, help="seed of the shuffled (chance) baseline")
    args = ap.parse_args()
    manifest = [json.loads(line) for line in Path(args.manifest).open() if line.strip()]
    rows = [json.loads(line) for line in Path(args.predictions).open() if line.strip()]
    wrong_requests, wrong_preds, n_arith = [], [], 0
    for r in rows:
        if r.get("summary"):
            continue
        parsed = domain.parse_arithmetic(manifest[r["index"]].get("text", ""))
        if parsed is None:
            continue
        n_arith += 1
        if not r["correct"]:
            wrong_requests.append(parsed)
            wrong_preds.append(r["prediction"])
    if not n_arith:
        raise SystemExit(f"no demo arithmetic requests in {args.manifest} (its lines need the 'text' field)")
    shuffled = wrong_preds[:]
    random.Random(args.seed).shuffle(shuffled)
    result = {"arithmetic": n_arith, "wrong": len(wrong_preds),
              "predictions": tally(wrong_requests, wrong_preds), "shuffled": tally(wrong_requests, shuffled)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
