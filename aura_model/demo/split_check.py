"""The check that the demo world's listing keeps its promises (``aura_model.demo.domain``'s "Rules of the listing"):
lowercase word texts, no duplicates, every family in every split, split sizes, no valid/test composition in train
(or in both valid and test), every valid/test word, template and capital fact seen in train.
"""

from __future__ import annotations

import re

from ..scoring import normalize_answer
from .domain import CAPITALS, SPLITS, family_names, items

_TEXT_RE = re.compile(r"[a-z]+( [a-z]+)*")
_COUNT_RANGES = {"train": (3000, 10**6), "valid": (200, 400), "test": (300, 600)}


def check_splits() -> dict[str, dict[str, int]]:
    """Verify the listing's promises; return ``{split: {family: count, "total": n}}``.

    Raises ``ValueError`` listing every violated property: text alphabet, duplicate
    texts within or across splits, a family missing from a split, split sizes, a
    valid/test composition that occurs in train (or in both valid and test), a
    valid/test word never spoken in train, a capital fact or template missing from train.
    """
    by_split = {s: items(s) for s in SPLITS}
    families = family_names()
    problems = _listing_problems(by_split) + _leak_problems(by_split) + _coverage_problems(by_split)
    if problems:
        raise ValueError("demo domain split check failed:\n" + "\n".join(problems))
    counts: dict[str, dict[str, int]] = {}
    for split, rows in by_split.items():
        counts[split] = {f: sum(r["family"] == f for r in rows) for f in families}
        counts[split]["total"] = len(rows)
    return counts


def _listing_problems(by_split: dict[str, list[dict]]) -> list[str]:
    """Texts that are not lowercase words or repeat, empty answers, split sizes out of range, missing families."""
    problems: list[str] = []
    seen: dict[str, str] = {}
    for split, rows in by_split.items():
        for row in rows:
            if not _TEXT_RE.fullmatch(row["text"]):
                problems.append(f"{split}: text not lowercase words: {row['text']!r}")
            if row["text"] in seen:
                problems.append(f"duplicate text in {seen[row['text']]} and {split}: {row['text']!r}")
            seen[row["text"]] = split
            if not row["answer"] or normalize_answer(row["answer"]) == "":
                problems.append(f"{split}: empty answer for {row['text']!r}")
        lo, hi = _COUNT_RANGES[split]
        if not lo <= len(rows) <= hi:
            problems.append(f"{split}: {len(rows)} sentences, expected {lo}..{hi}")
        missing = set(family_names()) - {r["family"] for r in rows}
        if missing:
            problems.append(f"{split}: families missing: {sorted(missing)}")
    return problems


def _leak_problems(by_split: dict[str, list[dict]]) -> list[str]:
    """Valid/test compositions that occur in train, or in both valid and test."""
    def keys(split: str) -> set:
        return {(r["family"], r["key"]) for r in by_split[split]}

    problems = []
    train_keys = keys("train")
    for split in ("valid", "test"):
        leaked = keys(split) & train_keys
        if leaked:
            problems.append(f"{split}: {len(leaked)} compositions also in train, e.g. {sorted(leaked)[:3]}")
    both = keys("valid") & keys("test")
    if both:
        problems.append(f"{len(both)} compositions in both valid and test, e.g. {sorted(both)[:3]}")
    return problems


def _coverage_problems(by_split: dict[str, list[dict]]) -> list[str]:
    """Valid/test words, templates and capital facts that train never has, and capital facts missing from train."""
    problems = []
    train_words = {w for r in by_split["train"] for w in r["text"].split()}
    train_templates = {r["template"] for r in by_split["train"]}
    train_facts = {_capital_fact(r) for r in by_split["train"] if r["family"] == "capital"}
    for split in ("valid", "test"):
        for r in by_split[split]:
            unseen = set(r["text"].split()) - train_words
            if unseen:
                problems.append(f"{split}: words never in train {sorted(unseen)} in {r['text']!r}")
            if r["template"] not in train_templates:
                problems.append(f"{split}: template {r['template']} never in train")
            if r["family"] == "capital" and _capital_fact(r) not in train_facts:
                problems.append(f"{split}: capital fact {_capital_fact(r)} never in train")
    for country, capital in CAPITALS.items():
        if (country, capital) not in train_facts:
            problems.append(f"train: capital fact {(country, capital)} missing")
    return problems


def _capital_fact(row: dict) -> tuple[str, str]:
    country = row["key"][0]
    return country, CAPITALS[country]
