"""Phoneme spellings of the demo's requests: how the tiny LLM learns to read sub-word units.

A real LLM has read text in every spelling, and can make sense of pronunciations written out. The
demo LLM, trained from scratch on a few thousand requests, knows only whole words, so an audio span
(about one position per 80 ms, i.e. roughly one per speech sound) is foreign to it. Part of its
training therefore shows the requests *spelled as phonemes* -- espeak-ng's own pronunciation of each
request, one token per phoneme, without word boundaries -- so that the LLM's lower layers learn to
assemble words from a stream of sound units. The adapter then has units it can map speech onto.

Phonemes come from ``espeak-ng -q -x --sep=_`` (its ASCII phoneme mnemonics, one request per line),
with stress marks dropped. Each phoneme is written as one character of Unicode's private use area
(:data:`PHONEME_BASE` + its rank in :data:`INVENTORY`), which the demo tokenizer keeps as one token.
The inventory is fixed (sorted), so a spelling means the same on every machine.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache

from ..errors import AuraError

PHONEME_BASE = 0xE000  # first private-use code point; phoneme i is chr(PHONEME_BASE + i)

# espeak-ng's English phoneme mnemonics over every demo request in the train, valid and test accents, stress
# marks removed (70 symbols); a phoneme outside it (none in the demo) is dropped.
INVENTORY = tuple(sorted("""
0 3 3: : ; @ @2 @5 @L A: A@ D E I I# I2 IR N O O2 O: O@ OI S T U V VR Z a a# aI aI2 aI3 aI@ aU aa b d dZ e@ eI f g h i i: i@ i@3 j k l m n o@ oU p r r- s t t# t2 tS t[ u: v w w# z
""".split()))
_INDEX = {p: i for i, p in enumerate(INVENTORY)}
_STRESS = re.compile(r"[',%=]")


def phoneme_char(phoneme: str) -> str:
    """The one character that stands for ``phoneme`` (a member of :data:`INVENTORY`)."""
    return chr(PHONEME_BASE + _INDEX[phoneme])


def all_phoneme_chars() -> list[str]:
    return [chr(PHONEME_BASE + i) for i in range(len(INVENTORY))]


def _parse(line: str) -> list[str]:
    """One line of ``espeak-ng -x --sep=_`` -> its phonemes (stress dropped, unknown ones dropped)."""
    out = []
    for word in line.split():
        for ph in _STRESS.sub("", word).split("_"):
            if ph in _INDEX:
                out.append(ph)
    return out


@lru_cache(maxsize=16)
def _spell_all(texts: tuple[str, ...], accent: str, executable: str) -> tuple[str, ...]:
    if shutil.which(executable) is None:
        raise AuraError(f"{executable} not found: the demo LLM's phoneme spellings need espeak-ng "
                        "(Debian/Ubuntu: apt-get install espeak-ng)")
    proc = subprocess.run([executable, "-q", "-x", "--sep=_", "-v", accent], input="\n".join(texts) + "\n",
                          capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    if proc.returncode != 0 or len(lines) != len(texts):
        raise AuraError(f"espeak-ng -x ({accent}) gave {len(lines)} spellings for {len(texts)} requests "
                        f"(exit {proc.returncode}): {proc.stderr.strip()[:200]}")
    return tuple("".join(phoneme_char(p) for p in _parse(line)) for line in lines)


def spell(texts: list[str], accent: str = "en-us", executable: str = "espeak-ng") -> list[str]:
    """Each request text as a string of phoneme characters (no spaces), in ``accent``'s pronunciation."""
    return list(_spell_all(tuple(texts), accent, executable))
