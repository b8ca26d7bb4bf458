"""Does the answer position know the operands? A linear probe on the demo's arithmetic requests.

For spoken arithmetic requests of the demo's train split, takes the hidden states at the last prompt
position (where the first answer token is predicted) of every layer, twice in one run: AuRA hearing
the clip (adapter on) and the base LLM reading the true transcript (adapter off). A ridge classifier
per layer then predicts the first and the second spoken operand (0-ARITH_MAX). It is fitted on the clips of
4 sentences in 5 and scored on the clips of the others (no sentence on both sides).

If text states carry an operand and audio states do not, the adapter loses it before the LLM can
compute with it. Needs the demo build's spoken train split (``aura demo build`` writes it).

    python research/probe_operands.py [--bundle assets/default_bundle] \
        [--data .cache/demo-build/data/train] [--limit 2400] [--where answer|request]

``--where request`` probes the request's own states instead (the audio span, or the transcript's
tokens: the mean of its first and of its second half, side by side): whether an operand is heard at
all, as opposed to reaching the answer position.

Measured on the shipped bundle (2400 clips, 484 held out; best layer): text a 0.54 / b 0.50,
audio a 0.37 / b 0.55. The second operand reaches the answer position as well as from text; the
first does not. ``--where request`` on the same bundle: text a 0.74 / b 0.56, audio a 0.62 / b 0.64,
so the first operand is mostly heard in the span and lost on its way to the answer position.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
import torch

from aura_model.assistant import Assistant
from aura_model.demo import domain
from aura_model.demo.llm_data import content_bounds


def spoken_operands(text: str) -> list[int]:
    """The two operands of an arithmetic request in the order spoken ("subtract three from nine" -> [3, 9])."""
    parsed = domain.parse_arithmetic(text)
    if parsed is None:
        return []
    _, a, b, a_first = parsed
    return [a, b] if a_first else [b, a]


def request_span(assistant: Assistant, e, audio: str | None) -> tuple[int, int]:
    """(start, end) of the request inside the prompt: the audio span, or the transcript's tokens."""
    if audio is not None:
        (start, n), = e.audio_spans[0]
        return start, start + n
    prefix, suffix = content_bounds(assistant.loaded.tokenizer)
    return prefix, e.input_ids.shape[1] - suffix


def last_states(assistant: Assistant, audio: str | None, text: str | None, where: str = "answer") -> np.ndarray:
    """(layers + 1, d) hidden states at the last prompt position (``where="answer"``), or (layers + 1, 2d) the mean
    states of the first and of the second half of the request (``"request"``); audio with the adapter, text without.
    """
    p = assistant.prepare([audio], None if audio else [text])
    e = p.encoded
    with torch.no_grad(), (assistant.model.adapter_disabled() if audio is None else contextlib.nullcontext()):
        out = assistant.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans, p.features,
                              p.frame_lengths, output_hidden_states=True)
    if where == "answer":
        return torch.stack([h[0, -1] for h in out.hidden_states]).float().numpy()
    start, end = request_span(assistant, e, audio)
    mid = (start + end + 1) // 2
    return torch.stack([torch.cat([h[0, start:mid].mean(0), h[0, mid:end].mean(0)])
                        for h in out.hidden_states]).float().numpy()


def probe_accuracy(x: np.ndarray, y: np.ndarray, held_out: np.ndarray, classes: int = domain.ARITH_MAX + 1,
                   ridge: float = 10.0) -> float:
    """Ridge one-vs-rest classifier fitted on ~held_out rows, accuracy on held_out rows."""
    mu, sd = x[~held_out].mean(0), x[~held_out].std(0) + 1e-6
    x = np.hstack([(x - mu) / sd, np.ones((len(x), 1))])
    a = x[~held_out]
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ np.eye(classes)[y[~held_out]])
    return float(((x[held_out] @ w).argmax(1) == y[held_out]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default="assets/default_bundle")
    ap.add_argument("--data", default=".cache/demo-build/data/train")
    ap.add_argument("--limit", type=int, default=2400)
    ap.add_argument("--where", choices=("answer", "request"), default="answer",
                    help="answer: the last prompt position; request: the request's own states (mean of each half)")
    args = ap.parse_args()
    data = Path(args.data)
    rows = [json.loads(line) for line in (data / "manifest.jsonl").open()]
    pairs = [(r, spoken_operands(r["text"])) for r in rows if r["family"] == "arithmetic"]
    pairs = [(r, n) for r, n in pairs if len(n) == 2][:args.limit]
    rows = [r for r, _ in pairs]
    if not rows:
        raise SystemExit(f"no arithmetic clips in {data / 'manifest.jsonl'}; run `aura demo build` first")
    torch.set_num_threads(1)
    assistant = Assistant.open(args.bundle)
    states = {"text": np.stack([last_states(assistant, None, r["text"], args.where) for r in rows]),
              "audio": np.stack([last_states(assistant, str(data / r["audio"]), None, args.where) for r in rows])}
    y = np.array([n for _, n in pairs])
    held_out = np.array([r["index"] % 5 == 0 for r in rows])
    print(f"{len(rows)} clips, {int(held_out.sum())} of held-out sentences; probe accuracy per hidden_states index")
    print("| input | " + " | ".join(f"layer {i}: a / b" for i in range(states['text'].shape[1])) + " |")
    for mode, x in states.items():
        cells = [f"{probe_accuracy(x[:, i], y[:, 0], held_out):.2f} / {probe_accuracy(x[:, i], y[:, 1], held_out):.2f}"
                 for i in range(x.shape[1])]
        print(f"| {mode} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
