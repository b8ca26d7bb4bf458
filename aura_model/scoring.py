"""Answer scoring: how a prediction is compared with the expected answer (exact match after normalisation).

Part of the library, not of the demo world: ``aura eval`` scores any manifest with it, and the
demo recipe's reports use the same rule.
"""

from __future__ import annotations

import re
import unicodedata


def normalize_answer(s: str) -> str:
    """Normalise an answer for exact-match comparison.

    Steps: Unicode NFKC; lowercase; commas between digit groups dropped ("1,000" ->
    "1000"); apostrophes dropped ("what's" -> "whats"); a "." kept only between two
    digits ("3.5"); every other character that is not a letter or digit becomes a
    space; runs of whitespace collapse to one space; leading/trailing space is stripped.
    So "OK, the kitchen fan is off." -> "ok the kitchen fan is off" and " 22. " -> "22".
    A prediction is correct when ``normalize_answer(prediction) ==
    normalize_answer(expected)``.
    """
    s = unicodedata.normalize("NFKC", s).lower()
    s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)
    s = s.replace("'", "").replace("\u2019", "")
    out = []
    for i, ch in enumerate(s):
        if ch.isalnum():
            out.append(ch)
        elif ch == "." and 0 < i < len(s) - 1 and s[i - 1].isdigit() and s[i + 1].isdigit():
            out.append(ch)
        else:
            out.append(" ")
    return " ".join("".join(out).split())


def is_correct(prediction: str, answer: str) -> bool:
    """Exact match after :func:`normalize_answer`."""
    return normalize_answer(prediction) == normalize_answer(answer)
