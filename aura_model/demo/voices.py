"""The espeak-ng voices that speak the demo world, per split, and the voice, rate and pitch of each item.

Every choice is drawn from ``domain.stable_hash`` of fixed strings: the same item gets the same voice on every
machine. Test voices appear in no other split (see ``VOICES``).
"""

from __future__ import annotations

from .domain import check_split_name, stable_hash

# espeak-ng voice = accent + "+" + variant. Each listed one was checked to synthesise
# with espeak-ng 1.51 and to sound different from its plain accent. ("en-gb" silently
# ignores variants, so British English is "en".) Test voices appear in no other split:
# test has an accent no other split has (en-us-nyc) and variants no other split has
# (m5, m7, f5); valid likewise (accent en-gb-x-gbcwmd, variants m6, f4).
_TRAIN_ACCENTS = ("en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-gb-x-gbclan", "en-029")
_TRAIN_VARIANTS = ("", "m1", "m2", "m3", "m4", "f1", "f2", "f3", "klatt")


def _voice(accent: str, variant: str) -> str:
    return f"{accent}+{variant}" if variant else accent


VOICES: dict[str, list[str]] = {
    "train": [_voice(a, v) for a in _TRAIN_ACCENTS for v in _TRAIN_VARIANTS],
    "valid": [_voice(a, v) for a in ("en-us", "en", "en-gb-x-gbcwmd") for v in ("m6", "f4")],
    "test": [_voice(a, v) for a in ("en-us", "en", "en-gb-scotland", "en-us-nyc")
             for v in ("m5", "m7", "f5")],
}
RATE_WPM = (130, 200)  # inclusive range of espeak-ng -s
PITCH = (30, 70)       # inclusive range of espeak-ng -p


def synthesis_params(split: str, index: int, rendition: int = 0) -> dict:
    """Voice, rate (words per minute) and pitch for item ``index`` of ``split``.

    Deterministic per (split, index, rendition); the voice comes from ``VOICES[split]``.
    Rendition 0 is the item's first recording; a later rendition is the same request spoken
    again with its own voice, rate and pitch drawn from the same split's ranges.
    """
    check_split_name(split)
    for name, value in (("index", index), ("rendition", rendition)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    key = (split, index) if rendition == 0 else (split, index, rendition)
    return voice_params(VOICES[split], *key)


def voice_params(voices: list[str], *key: object) -> dict:
    """Voice (one of ``voices``), rate and pitch drawn deterministically from ``key``."""
    return {
        "voice": voices[stable_hash("voice", *key) % len(voices)],
        "rate_wpm": RATE_WPM[0] + stable_hash("rate", *key) % (RATE_WPM[1] - RATE_WPM[0] + 1),
        "pitch": PITCH[0] + stable_hash("pitch", *key) % (PITCH[1] - PITCH[0] + 1),
    }


def espeak_command(text: str, wav_path: str, voice: str, rate_wpm: int, pitch: int,
                   executable: str = "espeak-ng") -> list[str]:
    """The espeak-ng argv that writes ``text`` to ``wav_path`` with these parameters."""
    return [executable, "-v", voice, "-s", str(rate_wpm), "-p", str(pitch), "-w", wav_path, text]
