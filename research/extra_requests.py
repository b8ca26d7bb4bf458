"""Speak the train-side requests that the demo listing leaves out, once each: a training folder with more
distinct requests than `aura demo sentences --split train` holds, for data-scale experiments.

The listing caps each family's train split (`domain._CAPS`); the compositions past the cap are still train-side
(none is a valid or test composition), so adding them never leaks a held-out pair. Every left-out calendar,
smart-home, timer and unit-conversion request is taken, and ``--arithmetic N`` of the 16 766 left-out arithmetic
requests (drawn with ``random.Random(0)``; 0 = all). Each is spoken once by a training voice with the recipe's
rates, pitches, levels and noise (its own seeds). Writes ``OUT/extra/wavs/*.wav`` and ``OUT/extra/metadata.jsonl``,
and links ``OUT/orig`` to the listed train split, so ``--data OUT`` trains on both:

    python research/extra_requests.py /tmp/more --train .cache/demo-build/data/train --arithmetic 4000
    python -m aura_model.train --data /tmp/more --dataset.follow_links_outside true ...   # orig/ is a link out

`python research/replay.py research/experiments/extra-4000-r32.yaml` does both steps and scores the result.
Measured with the shipped recipe (10 000 steps, research/NOTES.md): 4000 arithmetic (20 147 clips) took held-out
arithmetic from 18 % to 37 %, the test split 50.3 % -> 51.3 %.
All of them (`--arithmetic 0`, 32 913 clips) at the same steps underfit: test 33.9 %, arithmetic 9 %.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aura_model.demo import domain, synth, voices  # noqa: E402


def left_out(arithmetic: int) -> list:
    """The train-side candidates the listing does not hold; ``arithmetic`` of the arithmetic ones (0 = all)."""
    listed = {c.text for c in domain._split_items("train")}
    by_family: dict[str, list] = {}
    for c in domain._candidates():
        if c.split == "train" and c.text not in listed:
            by_family.setdefault(c.family, []).append(c)
    rng = random.Random(0)
    chosen = []
    for family in sorted(by_family):
        pool = by_family[family]
        take = arithmetic if family == "arithmetic" and 0 < arithmetic < len(pool) else len(pool)
        chosen += rng.sample(pool, take) if take < len(pool) else pool
    return chosen


def plan(c, i: int, cfg: synth.SynthConfig) -> dict:
    """The clip recipe of extra request ``i``: a training voice, rate, pitch, pads, level and noise."""
    return dict(text=c.text, answer=c.answer, family=c.family, split="train", index=i, rendition=0,
                **voices.voice_params(voices.VOICES["train"], "extra", i),
                **synth.clip_params(np.random.default_rng(synth._seed("extra", i)), synth._seed("noise-extra", i), cfg))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="training folder to write (OUT/extra, and OUT/orig with --train)")
    ap.add_argument("--train", type=Path, help="the demo build's train split, linked as OUT/orig")
    ap.add_argument("--arithmetic", type=int, default=4000, help="left-out arithmetic requests to take (0 = all)")
    ap.add_argument("--jobs", type=int, default=2, help="espeak-ng processes at once")
    args = ap.parse_args()
    cfg = synth.SynthConfig()
    chosen = left_out(args.arithmetic)
    print("extra requests:", dict(Counter(c.family for c in chosen)), file=sys.stderr)
    extra = args.out / "extra"
    (extra / "wavs").mkdir(parents=True, exist_ok=True)
    plans = [plan(c, i, cfg) for i, c in enumerate(chosen)]
    name = lambda p: f"wavs/extra_{p['index']:05d}.wav"  # noqa: E731
    exe = synth.espeak_executable()
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda p: synth._synthesize_one(p, extra / name(p), Path(tmp), cfg, exe), plans))
    with open(extra / "metadata.jsonl", "w", encoding="utf-8") as f:
        for p in plans:
            f.write(json.dumps({"file_name": name(p), "transcription": p["text"], "answer": p["answer"],
                                "family": p["family"]}) + "\n")
    if args.train is not None:
        link = args.out / "orig"
        if link.is_symlink():
            link.unlink()
        os.symlink(args.train.resolve(), link)
    print(f"wrote {len(plans)} clips to {extra}", file=sys.stderr)


if __name__ == "__main__":
    main()
