"""The demo world's closed domain: listing, held-out compositions, voices, scoring."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from aura_model.demo import domain, voices
from aura_model.demo.domain import (
    CAPITALS,
    SPLITS,
    family_names,
    items,
    number_to_words,
    sentences,
)
from aura_model.demo.split_check import check_splits
from aura_model.demo.voices import VOICES, synthesis_params
from aura_model.scoring import normalize_answer

REPO = Path(__file__).resolve().parents[1]
ESPEAK = shutil.which("espeak-ng") or ("/usr/bin/espeak-ng" if os.path.exists("/usr/bin/espeak-ng") else None)
needs_espeak = pytest.mark.skipif(ESPEAK is None, reason="espeak-ng not installed")


def _digest() -> str:
    blob = json.dumps({s: sentences(s) for s in SPLITS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


# ----------------------------------------------------------------------- listing


def test_listing_is_deterministic_within_a_process():
    first = {s: sentences(s) for s in SPLITS}
    domain._split_items.cache_clear()
    domain._candidates.cache_clear()
    assert {s: sentences(s) for s in SPLITS} == first


def test_listing_is_identical_across_processes_and_hash_seeds():
    code = (
        "import hashlib, json\n"
        "from aura_model.demo.domain import sentences, SPLITS\n"
        "blob = json.dumps({s: sentences(s) for s in SPLITS}, sort_keys=True)\n"
        "print(hashlib.sha256(blob.encode()).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed, PYTHONPATH=str(REPO))
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True,
                             capture_output=True, text=True, timeout=60)
        digests.add(out.stdout.strip())
    assert digests == {_digest()}


def test_unknown_split_is_rejected_by_name():
    for bad in ("training", "", "TEST"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            sentences(bad)
        with pytest.raises(ValueError):
            items(bad)


def test_public_rows_have_exactly_text_answer_family():
    for split in SPLITS:
        rows = sentences(split)
        assert rows and all(set(r) == {"text", "answer", "family"} for r in rows)
        assert all(isinstance(r["answer"], str) and r["answer"] for r in rows)
        # items() is the same listing with the internal fields added
        assert [{k: r[k] for k in ("text", "answer", "family")} for r in items(split)] == rows


def test_at_least_five_families_each_in_every_split():
    names = family_names()
    assert len(names) >= 5 and len(set(names)) == len(names)
    for split in SPLITS:
        present = {r["family"] for r in sentences(split)}
        assert present == set(names), split
        for family in names:
            assert sum(r["family"] == family for r in sentences(split)) >= 20, (split, family)


def test_split_sizes():
    assert len(sentences("train")) >= 3000
    assert 200 <= len(sentences("valid")) <= 400
    assert 300 <= len(sentences("test")) <= 600


def test_no_duplicate_texts_within_or_across_splits():
    texts = [r["text"] for s in SPLITS for r in sentences(s)]
    assert len(texts) == len(set(texts))


def test_texts_are_lowercase_words_only():
    pattern = re.compile(r"[a-z]+( [a-z]+)*")
    for split in SPLITS:
        for r in sentences(split):
            assert pattern.fullmatch(r["text"]), r["text"]


def test_several_phrasings_per_family_in_train():
    for family in family_names():
        templates = {r["template"] for r in items("train") if r["family"] == family}
        assert len(templates) >= 4, family


def test_valid_and_test_compositions_never_occur_in_train():
    keys = {s: {(r["family"], r["key"]) for r in items(s)} for s in SPLITS}
    assert not keys["test"] & keys["train"]
    assert not keys["valid"] & keys["train"]
    assert not keys["valid"] & keys["test"]
    # the held-out arithmetic pairs are unordered: "five plus seventeen" in test means
    # neither "five plus seventeen" nor "seventeen plus five" was trained on
    train_pairs = {r["key"] for r in items("train") if r["family"] == "arithmetic"}
    for r in items("test"):
        if r["family"] == "arithmetic" and r["key"][0] != "minus":
            op, a, b = r["key"]
            assert (op, a, b) not in train_pairs and (op, b, a) not in train_pairs


def test_heldout_words_and_templates_are_all_seen_in_train():
    train_words = {w for r in sentences("train") for w in r["text"].split()}
    train_templates = {r["template"] for r in items("train")}
    for split in ("valid", "test"):
        for r in items(split):
            assert set(r["text"].split()) <= train_words, r["text"]
            assert r["template"] in train_templates, r


def test_every_capital_fact_is_in_train_and_test_asks_it_differently():
    assert len(CAPITALS) >= 30
    train = [r for r in items("train") if r["family"] == "capital"]
    facts = {(r["key"][0], CAPITALS[r["key"][0]]) for r in train}
    assert facts == set(CAPITALS.items())
    for country, capital in CAPITALS.items():
        # the capital's name is spoken in some train text and answered in another
        assert any(r["text"].endswith(" " + country) and r["answer"] == capital for r in train)
        assert any(capital in r["text"] for r in train), capital
    train_pairs = {(r["key"][0], r["template"]) for r in train}
    test_capitals = [r for r in items("test") if r["family"] == "capital"]
    assert test_capitals
    for r in test_capitals:
        assert (r["key"][0], r["template"]) not in train_pairs
        assert r["answer"] in (r["key"][0], CAPITALS[r["key"][0]])


def test_check_splits_reports_the_counts():
    counts = check_splits()
    for split in SPLITS:
        assert counts[split]["total"] == len(sentences(split))
        assert sum(v for k, v in counts[split].items() if k != "total") == counts[split]["total"]


def test_listing_builds_the_candidates_once_per_process():
    """The listing is cheap after its first use: every split reads one cached set of candidates
    (the build time is printed, not asserted: a clock does not belong in a pass/fail test)."""
    import time

    domain._split_items.cache_clear()
    domain._candidates.cache_clear()
    start = time.perf_counter()
    for split in SPLITS:
        sentences(split)
    print(f"listing all splits from scratch: {time.perf_counter() - start:.3f} s")
    for split in SPLITS:
        sentences(split)
    assert domain._candidates.cache_info().misses == 1
    assert domain._split_items.cache_info().misses == len(SPLITS)


# ----------------------------------------------------------------------- answers


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (21, "twenty one"),
    (99, "ninety nine"), (100, "one hundred"), (115, "one hundred fifteen"),
    (1000, "one thousand"), (1900, "one thousand nine hundred"), (2024, "two thousand twenty four"),
    (3005, "three thousand five"), (9999, "nine thousand nine hundred ninety nine"),
])
def test_number_to_words_examples(n, words):
    assert number_to_words(n) == words


def test_number_to_words_is_injective_and_spoken_only():
    spelled = [number_to_words(n) for n in range(10000)]
    assert len(set(spelled)) == 10000
    assert all(re.fullmatch(r"[a-z]+( [a-z]+)*", s) for s in spelled)
    for bad in (-1, 10000, 2.5, True, "3"):
        with pytest.raises(ValueError):
            number_to_words(bad)


@pytest.mark.parametrize("text, answer", [
    ("what is seventeen plus five", "22"),
    ("subtract five from twelve", "7"),
    ("what is seven times eight", "56"),
    ("turn off the kitchen fan", "ok, the kitchen fan is off"),
    ("dim the bedroom light to forty percent", "ok, the bedroom light is at 40 percent"),
    ("set a timer for seven minutes", "timer set for 7 minutes"),
    ("start a one hour timer", "timer set for 1 hour"),
    ("what is the capital of france", "paris"),
    ("which country has buenos aires as its capital", "argentina"),
    ("what day comes three days after monday", "thursday"),
    ("what day is two days before monday", "saturday"),
    ("what month is two months after may", "july"),
    ("what month comes three months before february", "november"),
    ("how many centimeters are in four meters", "400"),
    ("convert one week to days", "7"),
])
def test_hand_checked_answers(text, answer):
    matches = [c for c in domain._candidates() if c.text == text]
    assert [c.answer for c in matches] == [answer]


def test_listed_answers_match_their_compositions():
    ops = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b, "times": lambda a, b: a * b}
    for split in SPLITS:
        for r in items(split):
            if r["family"] == "arithmetic":
                op, a, b = r["key"]
                assert int(r["answer"]) == ops[op](a, b) >= 0
                words = f" {r['text']} "
                assert f" {number_to_words(a)} " in words and f" {number_to_words(b)} " in words
            elif r["family"] == "timer":
                n, unit = r["key"]
                assert r["answer"] == f"timer set for {n} {unit}{'s' if n != 1 else ''}"
                assert number_to_words(n) in r["text"]
            elif r["family"] == "calendar":
                unit, start, direction, offset = r["key"]
                names = domain.WEEKDAYS if unit == "day" else domain.MONTHS
                step = offset if direction == "after" else -offset
                assert r["answer"] == names[(names.index(start) + step) % len(names)]


@pytest.mark.parametrize("text, parsed", [
    ("what is forty one plus sixteen", ("plus", 41, 16, True)),
    ("subtract five from twelve", ("minus", 12, 5, False)),
    ("take zero away from fifty", ("minus", 50, 0, False)),
    ("  Multiply  seven by eight ", ("times", 7, 8, True)),
    ("what is forty plus", None),
    ("what is sixty one plus two", None),  # 61 is beyond the demo's operands
    ("turn off the kitchen fan", None),
])
def test_parse_arithmetic_examples(text, parsed):
    assert domain.parse_arithmetic(text) == parsed


def test_parse_arithmetic_inverts_every_listed_request():
    for split in SPLITS:
        for r in items(split):
            parsed = domain.parse_arithmetic(r["text"])
            if r["family"] != "arithmetic":
                assert parsed is None, r["text"]
                continue
            op, a, b, _ = parsed
            assert str(domain.arithmetic_answer(op, a, b)) == r["answer"]
            assert r["key"] == ((op, a, b) if op == "minus" else (op, min(a, b), max(a, b)))


# ----------------------------------------------------------------------- scoring


@pytest.mark.parametrize("raw, normalized", [
    ("Paris", "paris"),
    ("  OK, the kitchen fan is off. ", "ok the kitchen fan is off"),
    ("22.", "22"),
    ("3.5", "3.5"),
    ("1,000", "1000"),
    ("Timer set for 7 minutes!", "timer set for 7 minutes"),
    ("new-delhi", "new delhi"),
    ("what's\tthat", "whats that"),
    ("", ""),
])
def test_normalize_answer_examples(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_normalize_answer_is_idempotent_on_listed_answers():
    for split in SPLITS:
        for r in sentences(split):
            once = normalize_answer(r["answer"])
            assert once and normalize_answer(once) == once


# ----------------------------------------------------------------------- voices


def test_test_voices_are_used_by_no_other_split():
    assert set(VOICES) == set(SPLITS)
    assert all(VOICES[s] and len(set(VOICES[s])) == len(VOICES[s]) for s in SPLITS)
    assert not set(VOICES["test"]) & (set(VOICES["train"]) | set(VOICES["valid"]))
    assert not set(VOICES["valid"]) & set(VOICES["train"])


def test_synthesis_params_are_deterministic_and_in_range():
    for split in SPLITS:
        params = [synthesis_params(split, i) for i in range(len(sentences(split)))]
        assert params == [synthesis_params(split, i) for i in range(len(params))]
        assert {p["voice"] for p in params} == set(VOICES[split])
        assert all(130 <= p["rate_wpm"] <= 200 and 30 <= p["pitch"] <= 70 for p in params)
        assert len({p["rate_wpm"] for p in params}) > 20 and len({p["pitch"] for p in params}) > 20
    with pytest.raises(ValueError, match="'dev'"):
        synthesis_params("dev", 0)
    with pytest.raises(ValueError):
        synthesis_params("test", -1)
    with pytest.raises(ValueError, match="rendition"):
        synthesis_params("train", 0, -1)


def test_later_renditions_draw_new_voices_from_the_same_split():
    n = 300
    first = [synthesis_params("train", i) for i in range(n)]
    assert first == [synthesis_params("train", i, 0) for i in range(n)]  # rendition 0 is the original recording
    for r in (1, 2, 3):
        again = [synthesis_params("train", i, r) for i in range(n)]
        assert {p["voice"] for p in again} <= set(VOICES["train"])
        assert sum(a == b for a, b in zip(first, again)) < n // 20  # a new voice/rate/pitch for almost every item


@needs_espeak
def test_every_voice_synthesises_and_sounds_distinct(tmp_path):
    # espeak-ng silently ignores an unknown variant (and variants of "en-gb"), so check
    # that each listed voice really produces its own audio.
    text = "what is the capital of france and what day comes after monday"
    seen = {}
    for split in SPLITS:
        for voice in VOICES[split]:
            wav = tmp_path / "v.wav"
            subprocess.run([ESPEAK, "-v", voice, "-w", str(wav), text], check=True,
                           capture_output=True, timeout=30)
            digest = hashlib.sha256(wav.read_bytes()).hexdigest()
            assert digest not in seen, (voice, seen.get(digest))
            seen[digest] = voice


@needs_espeak
def test_espeak_synthesises_test_items_with_their_params(tmp_path):
    for index, row in enumerate(sentences("test")[:3]):
        params = synthesis_params("test", index)
        wav = tmp_path / f"{index}.wav"
        cmd = voices.espeak_command(row["text"], str(wav), executable=ESPEAK, **params)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        data = wav.read_bytes()
        assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
        assert len(data) > 44 + 22050 * 2 // 2, (row["text"], len(data))  # > 0.5 s of audio
