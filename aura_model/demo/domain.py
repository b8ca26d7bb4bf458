"""The demo world's closed domain: spoken requests with exactly one expected answer.

The listing is the ground truth every demo component is built from: the tokenizer and
the tiny LLM learn to answer ``train`` texts, espeak-ng speaks them, and the tiny
Whisper teacher and the AuRA adapter are evaluated on the spoken ``test`` split.

Public API
----------
``sentences(split)``
    ``[{"text", "answer", "family"}, ...]`` for ``split`` in ``train``/``valid``/``test``.
``family_names()``
    The request families, in a fixed order.
``number_to_words(n)``
    How numbers are spoken (0..9999).
``check_split_name(split)``, ``stable_hash(*parts)``
    The split names' check and the hash every deterministic choice draws from.

The voices that speak each split are in :mod:`aura_model.demo.voices`; the check that the
listing keeps the rules below is :func:`aura_model.demo.split_check.check_splits`.

Rules of the listing
--------------------
* Texts are lowercase ASCII words separated by single spaces (no digits, no
  punctuation): they are spoken by espeak-ng, so numbers are written as words.
  Answers are short strings; digits are allowed there ("22", "timer set for 7 minutes").
* Every request has one composition key (e.g. ``("plus", 5, 17)`` or
  ``("kitchen", "fan", "off")``). ``valid`` and ``test`` hold keys that never occur
  in ``train``, and ``valid`` and ``test`` share none, so test requests are new
  compositions of seen parts. Every word of a ``valid``/``test`` text occurs in some
  ``train`` text.
* Capitals are facts, not compositions: every (country, capital) pair occurs in
  ``train``; ``valid``/``test`` ask it with a phrasing template that ``train`` uses for
  other countries but never for that country.
* Everything is deterministic across runs, machines and Python versions: choices and
  orders come from SHA-256 of fixed strings, never from ``hash()``, ``random`` or set
  iteration order.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from typing import Callable, Iterator, NamedTuple

SPLITS = ("train", "valid", "test")

# Percent of composition keys held out for each split (the rest is train).
_HOLDOUT = {"test": 12, "valid": 10}

# How many requests each family contributes to each split (fewer if it has fewer).
_CAPS = {
    "train": {"arithmetic": 1200, "smart_home": 600, "timer": 500, "capital": 1000,
              "calendar": 600, "unit_conversion": 500},
    "valid": {family: 55 for family in ("arithmetic", "smart_home", "timer", "capital",
                                        "calendar", "unit_conversion")},
    "test": {family: 90 for family in ("arithmetic", "smart_home", "timer", "capital",
                                       "calendar", "unit_conversion")},
}


def stable_hash(*parts: object) -> int:
    """A stable 64-bit hash of ``parts`` (unlike ``hash()``, identical in every process)."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


# --------------------------------------------------------------------------- numbers

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_to_words(n: int) -> str:
    """Spell ``n`` (0..9999) the way the demo world speaks it.

    American style without "and" or hyphens: 21 -> "twenty one", 115 -> "one hundred
    fifteen", 2024 -> "two thousand twenty four", 1900 -> "one thousand nine hundred".
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 9999:
        raise ValueError(f"number_to_words supports integers 0..9999, got {n!r}")
    if n < 20:
        return _ONES[n]
    words: list[str] = []
    thousands, rest = divmod(n, 1000)
    hundreds, rest = divmod(rest, 100)
    if thousands:
        words += [_ONES[thousands], "thousand"]
    if hundreds:
        words += [_ONES[hundreds], "hundred"]
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(_TENS[tens])
        if ones:
            words.append(_ONES[ones])
    elif rest:
        words.append(_ONES[rest])
    return " ".join(words)


def _count(n: int, singular: str, plural: str) -> str:
    """``"one minute"`` / ``"seven minutes"``."""
    return f"{number_to_words(n)} {singular if n == 1 else plural}"


# --------------------------------------------------------------------------- families
#
# Each family is a data table plus a generator of candidates. A candidate is one
# (composition key, phrasing template) pair; the split of a key is fixed by a hash,
# and the listing then keeps a capped, hash-ranked subset of each split's candidates.

class _Cand(NamedTuple):
    family: str
    group: str        # sub-kind used to balance the capped sample (e.g. the operator)
    key: tuple        # the composition; valid/test keys never occur in train
    template: str     # the phrasing template's id
    split: str
    text: str
    answer: str


def _hashed_split(family: str, key: tuple) -> str:
    bucket = stable_hash("split", family, *key) % 100
    if bucket < _HOLDOUT["test"]:
        return "test"
    if bucket < _HOLDOUT["test"] + _HOLDOUT["valid"]:
        return "valid"
    return "train"


# 1. Arithmetic with spoken numbers ------------------------------------------------

ARITH_MAX = 50   # plus / minus operands are 0..ARITH_MAX (minus never goes below 0)
TIMES_MAX = 12   # times operands are 0..TIMES_MAX

_ARITH_TEMPLATES = {
    "plus": ("what is {a} plus {b}", "add {a} and {b}", "how much is {a} plus {b}",
             "what do you get if you add {a} and {b}", "what is the sum of {a} and {b}",
             "calculate {a} plus {b}"),
    "minus": ("what is {a} minus {b}", "subtract {b} from {a}", "how much is {a} minus {b}",
              "take {b} away from {a}", "calculate {a} minus {b}"),
    "times": ("what is {a} times {b}", "multiply {a} by {b}", "how much is {a} times {b}",
              "what is {a} multiplied by {b}", "calculate {a} times {b}"),
}
_SPOKEN = {number_to_words(n): n for n in range(ARITH_MAX + 1)}
_ARITH_OPS: dict[str, Callable[[int, int], int]] = {
    "plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b,
}


def _arith_pattern(template: str) -> re.Pattern:
    """``"subtract {b} from {a}"`` -> a regex with named groups a and b over spoken numbers 0..ARITH_MAX."""
    number = "|".join(sorted(_SPOKEN, key=len, reverse=True))  # longest first: "fourteen" before "four"
    body = re.escape(template).replace(r"\{a\}", "{a}").replace(r"\{b\}", "{b}")
    return re.compile("^" + body.format(a=f"(?P<a>{number})", b=f"(?P<b>{number})") + "$")


_ARITH_PATTERNS = tuple((op, t.index("{a}") < t.index("{b}"), _arith_pattern(t))
                        for op, templates in _ARITH_TEMPLATES.items() for t in templates)


def parse_arithmetic(text: str) -> tuple[str, int, int, bool] | None:
    """``(op, a, b, a_first)`` of a demo arithmetic request, or None when ``text`` is not one.

    The answer is ``arithmetic_answer(op, a, b)``; ``a_first`` says whether ``a`` is spoken before
    ``b`` ("subtract {b} from {a}" speaks b first): "subtract five from twelve" -> ("minus", 12, 5, False).
    """
    words = " ".join(text.lower().split())
    for op, a_first, pattern in _ARITH_PATTERNS:
        m = pattern.match(words)
        if m:
            return op, _SPOKEN[m["a"]], _SPOKEN[m["b"]], a_first
    return None


def arithmetic_answer(op: str, a: int, b: int) -> int:
    """``op`` ("plus", "minus", "times") applied to ``a`` and ``b``."""
    return _ARITH_OPS[op](a, b)


def _arithmetic() -> Iterator[_Cand]:
    for op, templates in _ARITH_TEMPLATES.items():
        top = TIMES_MAX if op == "times" else ARITH_MAX
        for a in range(top + 1):
            for b in range(top + 1):
                if op == "minus" and b > a:
                    continue
                # "a plus b" and "b plus a" are one composition: hold out the pair.
                key = (op, a, b) if op == "minus" else (op, min(a, b), max(a, b))
                split = _hashed_split("arithmetic", key)
                answer = str(_ARITH_OPS[op](a, b))
                for t, template in enumerate(templates):
                    text = template.format(a=number_to_words(a), b=number_to_words(b))
                    yield _Cand("arithmetic", op, key, f"{op}{t}", split, text, answer)


# 2. Smart-home commands -------------------------------------------------------------

ROOMS = ("kitchen", "bedroom", "living room", "bathroom", "office", "garage", "hallway",
         "dining room", "basement")
DEVICES = ("light", "lamp", "fan", "heater", "radio", "television", "speaker")
DIMMABLE = ("light", "lamp")
LEVELS = tuple(range(10, 100, 10))  # percent

_SWITCH_TEMPLATES = ("turn {s} the {r} {d}", "switch {s} the {r} {d}", "turn the {r} {d} {s}",
                     "please turn {s} the {d} in the {r}", "can you switch {s} the {d} in the {r}")
_LEVEL_TEMPLATES = ("set the {r} {d} to {n} percent", "dim the {r} {d} to {n} percent",
                    "set the {d} in the {r} to {n} percent", "please dim the {d} in the {r} to {n} percent")


def _smart_home() -> Iterator[_Cand]:
    for room in ROOMS:
        for device in DEVICES:
            for state in ("on", "off"):
                key = (room, device, state)
                split = _hashed_split("smart_home", key)
                answer = f"ok, the {room} {device} is {state}"
                for t, template in enumerate(_SWITCH_TEMPLATES):
                    text = template.format(s=state, r=room, d=device)
                    yield _Cand("smart_home", "switch", key, f"switch{t}", split, text, answer)
            if device not in DIMMABLE:
                continue
            for level in LEVELS:
                key = (room, device, level)
                split = _hashed_split("smart_home", key)
                answer = f"ok, the {room} {device} is at {level} percent"
                for t, template in enumerate(_LEVEL_TEMPLATES):
                    text = template.format(r=room, d=device, n=number_to_words(level))
                    yield _Cand("smart_home", "level", key, f"level{t}", split, text, answer)


# 3. Timers --------------------------------------------------------------------------

TIMER_UNITS = {"second": range(1, 61), "minute": range(1, 61), "hour": range(1, 13)}
_TIMER_TEMPLATES = ("set a timer for {c}", "start a timer for {c}", "please set a timer for {c}",
                    "can you set a timer for {c}", "start a {n} {u} timer", "timer for {c}")


def _timer() -> Iterator[_Cand]:
    for unit, numbers in TIMER_UNITS.items():
        for n in numbers:
            key = (n, unit)
            split = _hashed_split("timer", key)
            answer = f"timer set for {n} {unit if n == 1 else unit + 's'}"
            for t, template in enumerate(_TIMER_TEMPLATES):
                text = template.format(c=_count(n, unit, unit + "s"), n=number_to_words(n), u=unit)
                yield _Cand("timer", unit, key, f"timer{t}", split, text, answer)


# 4. Capitals (a fact table) ----------------------------------------------------------

CAPITALS = {
    "france": "paris", "germany": "berlin", "italy": "rome", "spain": "madrid",
    "portugal": "lisbon", "greece": "athens", "austria": "vienna", "hungary": "budapest",
    "poland": "warsaw", "norway": "oslo", "sweden": "stockholm", "finland": "helsinki",
    "denmark": "copenhagen", "ireland": "dublin", "england": "london",
    "scotland": "edinburgh", "belgium": "brussels", "russia": "moscow", "turkey": "ankara",
    "egypt": "cairo", "kenya": "nairobi", "ghana": "accra", "nigeria": "abuja",
    "morocco": "rabat", "ethiopia": "addis ababa", "japan": "tokyo", "china": "beijing",
    "india": "new delhi", "thailand": "bangkok", "vietnam": "hanoi", "indonesia": "jakarta",
    "iran": "tehran", "iraq": "baghdad", "australia": "canberra",
    "new zealand": "wellington", "canada": "ottawa", "mexico": "mexico city",
    "cuba": "havana", "peru": "lima", "chile": "santiago", "argentina": "buenos aires",
    "colombia": "bogota", "venezuela": "caracas", "brazil": "brasilia",
    "south korea": "seoul",
}
# (template, asks for the capital?) -- the last two ask the other way round.
_CAPITAL_TEMPLATES = (
    ("what is the capital of {c}", True), ("tell me the capital of {c}", True),
    ("which city is the capital of {c}", True), ("name the capital city of {c}", True),
    ("what city is the capital of {c}", True), ("do you know the capital of {c}", True),
    ("what is the capital city of {c}", True),
    ("{k} is the capital of which country", False),
    ("which country has {k} as its capital", False),
)


def _capital() -> Iterator[_Cand]:
    for country, capital in CAPITALS.items():
        # Per country: the first template in hash order is held out for test, the
        # second for valid; the other seven teach the fact in train. Both reverse
        # templates are never held out together, so train also speaks the capital's name.
        order = sorted(range(len(_CAPITAL_TEMPLATES)), key=lambda t: stable_hash("capital", country, t))
        if not _CAPITAL_TEMPLATES[order[0]][1] and not _CAPITAL_TEMPLATES[order[1]][1]:
            order[1], order[2] = order[2], order[1]
        for rank, t in enumerate(order):
            template, forward = _CAPITAL_TEMPLATES[t]
            split = "test" if rank == 0 else "valid" if rank == 1 else "train"
            text = template.format(c=country, k=capital)
            answer = capital if forward else country
            yield _Cand("capital", "capital", (country, f"capital{t}"), f"capital{t}", split,
                        text, answer)


# 5. Weekday / month arithmetic --------------------------------------------------------

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
_CALENDAR = {  # unit -> (names, offsets, after templates, before templates)
    "day": (WEEKDAYS, range(1, 11),
            ("what day comes {k} after {x}", "what day is {k} after {x}",
             "which day is {k} after {x}", "if today is {x} what day will it be in {k}"),
            ("what day comes {k} before {x}", "what day is {k} before {x}",
             "which day is {k} before {x}", "if today is {x} what day was it {k} ago")),
    "month": (MONTHS, range(1, 12),
              ("what month comes {k} after {x}", "what month is {k} after {x}",
               "which month is {k} after {x}", "if it is {x} now what month will it be in {k}"),
              ("what month comes {k} before {x}", "what month is {k} before {x}",
               "which month is {k} before {x}", "if it is {x} now what month was it {k} ago")),
}


def shift_name(names: tuple[str, ...], start: str, offset: int) -> str:
    """``shift_name(WEEKDAYS, "monday", 3) == "thursday"`` (negative offsets go back)."""
    return names[(names.index(start) + offset) % len(names)]


def _calendar() -> Iterator[_Cand]:
    for unit, (names, offsets, after, before) in _CALENDAR.items():
        for start in names:
            for offset in offsets:
                for direction, templates, sign in (("after", after, 1), ("before", before, -1)):
                    key = (unit, start, direction, offset)
                    split = _hashed_split("calendar", key)
                    answer = shift_name(names, start, sign * offset)
                    for t, template in enumerate(templates):
                        text = template.format(k=_count(offset, unit, unit + "s"), x=start)
                        yield _Cand("calendar", unit, key, f"{unit}{direction}{t}", split,
                                    text, answer)


# 6. Unit conversions ------------------------------------------------------------------

CONVERSIONS = (  # (from unit, to unit, factor); plurals add "s"
    ("meter", "centimeter", 100), ("kilometer", "meter", 1000), ("centimeter", "millimeter", 10),
    ("hour", "minute", 60), ("minute", "second", 60), ("day", "hour", 24), ("week", "day", 7),
    ("kilogram", "gram", 1000), ("year", "month", 12),
)
CONVERSION_AMOUNTS = range(1, 21)
_CONVERSION_TEMPLATES = ("how many {to} are in {c}", "how many {to} are there in {c}",
                         "convert {c} to {to}", "what is {c} in {to}", "{c} is how many {to}")


def _unit_conversion() -> Iterator[_Cand]:
    for src, dst, factor in CONVERSIONS:
        for n in CONVERSION_AMOUNTS:
            key = (src, dst, n)
            split = _hashed_split("unit_conversion", key)
            for t, template in enumerate(_CONVERSION_TEMPLATES):
                text = template.format(to=dst + "s", c=_count(n, src, src + "s"))
                yield _Cand("unit_conversion", f"{src}-{dst}", key, f"conv{t}", split, text,
                            str(n * factor))


_FAMILIES: dict[str, Callable[[], Iterator[_Cand]]] = {
    "arithmetic": _arithmetic,
    "smart_home": _smart_home,
    "timer": _timer,
    "capital": _capital,
    "calendar": _calendar,
    "unit_conversion": _unit_conversion,
}


def family_names() -> list[str]:
    """The request families, in their fixed order."""
    return list(_FAMILIES)


# --------------------------------------------------------------------------- splits

@lru_cache(maxsize=1)
def _candidates() -> tuple[_Cand, ...]:
    """Every (key, template) request of every family, before capping."""
    return tuple(c for make in _FAMILIES.values() for c in make())


def _take_balanced(cands: list[_Cand], cap: int, split: str) -> list[_Cand]:
    """Up to ``cap`` candidates, round-robin over groups, each group in hash order."""
    groups: dict[str, list[_Cand]] = {}
    for c in cands:
        groups.setdefault(c.group, []).append(c)
    ranked = [sorted(groups[g], key=lambda c: stable_hash("pick", split, c.text)) for g in sorted(groups)]
    taken: list[_Cand] = []
    i = 0
    while len(taken) < cap and any(i < len(r) for r in ranked):
        for r in ranked:
            if i < len(r) and len(taken) < cap:
                taken.append(r[i])
        i += 1
    return taken


@lru_cache(maxsize=None)
def _split_items(split: str) -> tuple[_Cand, ...]:
    chosen: list[_Cand] = []
    for family in _FAMILIES:
        pool = [c for c in _candidates() if c.family == family and c.split == split]
        chosen += _take_balanced(pool, _CAPS[split][family], split)
    chosen.sort(key=lambda c: (stable_hash("order", split, c.text), c.text))
    return tuple(chosen)


def check_split_name(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def items(split: str) -> list[dict]:
    """Like :func:`sentences`, plus the internal ``key`` (composition) and ``template``."""
    check_split_name(split)
    return [{"text": c.text, "answer": c.answer, "family": c.family, "key": c.key,
             "template": c.template} for c in _split_items(split)]


def sentences(split: str) -> list[dict]:
    """The stable listing of one split: ``[{"text", "answer", "family"}, ...]``.

    ``split`` is ``"train"``, ``"valid"`` or ``"test"``; anything else raises
    ``ValueError``. The same call returns the same list, in the same order, everywhere.
    """
    check_split_name(split)
    return [{"text": c.text, "answer": c.answer, "family": c.family} for c in _split_items(split)]
