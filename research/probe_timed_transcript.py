"""Can a demo LLM read its transcript laid out in time on a clip's audio-token grid?

    python research/probe_timed_transcript.py --manifest .cache/demo-build/data/test/manifest.jsonl
                                                [--model assets/default_bundle/base] [--stack 4] [--n N]

For each spoken clip of the manifest (its ``words`` field: when each word is spoken, written by
``aura_model.demo.synth``), the LLM reads, in place of the audio span, as many tokens as the clip has
audio tokens (12.5 per second at stack 4). Three layouts, exact-match accuracy per family:

* ``as written``: the plain transcript (the text upper bound);
* ``timed``: each word's tokens on the last audio tokens the word covers, the pad token everywhere else
  (silence, and the first part of each word);
* ``stretched``: each word's tokens repeated over all the audio tokens the word covers.

Every token is attended (the pads too) and takes one position, as audio tokens do. Measured on the test split
(495 clips): the shipped LLM reads the plain transcript at 98.2 %, the timed one at 5.7 % and the stretched one
at 6.1 %: spreading a request over a clip's length breaks it either way (compare ``probe_positions.py``). An LLM
continued for 2000 steps on half requests with 1-8 pads after most tokens (``LLMTrainConfig(init_from=...,
stretch_fraction=0.5, stretch_max=1, blank_rate=0.9, blank_max=8, steps=2000, lr=5e-4)``) reads the timed layout
at 85.5 % but the plain transcript at 95.6 %; distilled onto (3000 steps, with and without a term matching the
base's states on the timed transcript) it scored no better on the valid split than the shipped LLM (research/NOTES.md).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch

from aura_model.bundle import load_base_only
from aura_model.config import AudioConfig, GenerationSettings
from aura_model.embedding import num_audio_tokens
from aura_model.evaluate import is_correct
from aura_model.processor import AuraProcessor


def layout(word_ids: list[list[int]], times: list[tuple[float, float]], n_tokens: int, token_seconds: float,
           blank_id: int, stretched: bool = False) -> list[int]:
    """``n_tokens`` ids: each word's ids on the last audio tokens of its (start, end), in order, ``blank_id``
    elsewhere; with ``stretched`` a word's ids fill every audio token it covers instead.

    Audio token t covers [t, t + 1) * token_seconds and belongs to a word when its centre lies in the word's span;
    a word too short to hold a centre gets the token where it starts. Ids past the last token are dropped.
    """
    out = [blank_id] * n_tokens
    free = 0
    for ids, (start, end) in zip(word_ids, times):
        inside = [t for t in range(n_tokens) if start <= (t + 0.5) * token_seconds < end]
        if stretched and inside:
            for j, t in enumerate(inside):
                out[t] = ids[min(len(ids) - 1, j * len(ids) // len(inside))]
            continue
        last = inside[-1] if inside else min(n_tokens - 1, int(start / token_seconds))
        first = max(free, last - len(ids) + 1)
        for j, tok in enumerate(ids):
            if first + j < n_tokens:
                out[first + j] = tok
        free = first + len(ids)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", required=True, help="a demo manifest.jsonl whose rows carry 'words'")
    parser.add_argument("--model", default="assets/default_bundle/base", help="a demo LLM folder")
    parser.add_argument("--stack", type=int, default=4, help="the AudioEmbedding's frame stacking")
    parser.add_argument("--n", type=int, default=None, help="score only the first N clips")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [json.loads(line) for line in Path(args.manifest).read_text().splitlines() if line.strip()][: args.n]
    if not rows or any(not r.get("words") for r in rows):
        raise SystemExit(f"{args.manifest}: every row needs 'words' (rebuild the demo data with aura demo build)")
    audio = AudioConfig()
    token_seconds = audio.hop_length * 2 * args.stack / audio.sample_rate  # stride-2 conv stem, then stack frames
    loaded = load_base_only(args.model)
    proc = AuraProcessor(loaded.tokenizer, loaded.config.prompt)
    head, tail = (proc.text_ids(p) for p in
                  proc.render(proc.messages(user_text=proc.prompt.placeholder)).split(proc.prompt.placeholder))
    eos = [loaded.tokenizer.eos_token_id]
    gen = GenerationSettings(max_new_tokens=16)
    families = sorted({r["family"] for r in rows})
    print(f"{len(rows)} clips of {args.manifest}\n")
    print("| request | accuracy | " + " | ".join(families) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in families) + " |")
    for label in ("as written", "timed", "stretched"):
        hits = collections.defaultdict(list)
        for r in rows:
            words = r["words"]
            if label == "as written":
                request = proc.text_ids(r["text"])
            else:
                frames = int(round(r["duration_s"] * audio.sample_rate)) // audio.hop_length
                request = layout([proc.text_ids(w if i == 0 else " " + w) for i, (w, _, _) in enumerate(words)],
                                 [(s, e) for _, s, e in words], int(num_audio_tokens(frames, args.stack)),
                                 token_seconds, proc.pad_id, stretched=label == "stretched")
            ids = torch.tensor([head + request + tail])
            out = loaded.model.generate_ids(ids, torch.ones_like(ids), gen=gen, eos_ids=eos, pad_id=proc.pad_id)
            answer = proc.decode([t for t in out[0].tolist() if t not in eos and t != proc.pad_id])
            hits[r["family"]].append(is_correct(answer, r["answer"]))
        total = [h for v in hits.values() for h in v]
        print(f"| {label} | {100 * sum(total) / len(total):.1f}% | "
              + " | ".join(f"{100 * sum(hits[f]) / len(hits[f]):.0f}" for f in families) + " |", flush=True)


if __name__ == "__main__":
    main()
