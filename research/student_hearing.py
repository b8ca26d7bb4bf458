"""What does the student hear? The Whisper teacher's own decoder reads the student's audio span.

The layer-wise term projects the student's states at the pair that ends at the teacher's top layer with a
training-only head. This reads the head's output on each clip with the teacher's frozen decoder (greedy), as
if it were the teacher's encoder output, and scores the transcript it writes against the true one. The teacher's
own top states, pooled to the student's rate (the targets the student is trained on), are read the same way,
side by side. Given ``aura eval`` output for the same manifest, it then splits AuRA's answers by whether the
student's span held the exact transcript: if answers stay wrong where the span was heard right, the loss is in
the LLM's reading of the span, not in the hearing.

The heads are not in the bundle; they are in a training checkpoint (``<output>.checkpoints/step-...``). A run
makes one when stopped with SIGTERM or with ``--train.checkpoint_every N``.

    python research/student_hearing.py --bundle OUT --checkpoint OUT.checkpoints/step-00010000 \
        --teacher .cache/demo-build/teacher --manifest .cache/demo-build/data/test/manifest.jsonl \
        [--eval OUT.test.jsonl] [--limit 200]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from aura_model import audio as audio_io
from aura_model.assistant import Assistant
from aura_model.distill import pool_time
from aura_model.embedding import conv_frames
from aura_model.train import checkpoint as ckpt
from aura_model.demo.asr import wer
from aura_model.transcribe import greedy_decode_states, input_frames, whisper_features


def read_states(model, tokenizer, states: torch.Tensor) -> str:
    """Greedy transcript of (T, D) states read by the Whisper ``model``'s decoder."""
    ids = greedy_decode_states(model, states[None])[0]
    return " ".join(tokenizer.decode(ids, skip_special_tokens=True).split())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--checkpoint", required=True, help="a training checkpoint folder of that run (holds the heads)")
    ap.add_argument("--teacher", required=True, help="the Whisper teacher folder the run distilled from")
    ap.add_argument("--manifest", required=True)
    ap.add_argument("--eval", help="aura eval output (JSON lines) for the same manifest, in the same order")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    from transformers import AutoTokenizer, WhisperForConditionalGeneration

    torch.set_num_threads(2)
    teacher = WhisperForConditionalGeneration.from_pretrained(args.teacher).eval()
    t_tok = AutoTokenizer.from_pretrained(args.teacher)
    n_top = int(teacher.config.encoder_layers)
    state = ckpt.read_state(Path(args.checkpoint))
    layer_map = [tuple(p) for p in state["layer_map"]]
    pairs = [i for i, (_, t) in enumerate(layer_map) if t == n_top]
    if not pairs:
        raise SystemExit(f"no pair of the run's layer map {layer_map} ends at the teacher's top layer {n_top}")
    k = max(pairs, key=lambda i: layer_map[i][0])
    s_layer = layer_map[k][0]
    weights = ckpt.load_trainable(Path(args.checkpoint))
    head = torch.nn.Linear(*reversed(weights[f"heads.heads.{k}.weight"].shape))
    head.load_state_dict({"weight": weights[f"heads.heads.{k}.weight"], "bias": weights[f"heads.heads.{k}.bias"]})
    assistant = Assistant.open(args.bundle)
    stack = assistant.config.embedding.stack
    rows = [json.loads(line) for line in open(args.manifest)]
    evals = [json.loads(line) for line in open(args.eval)][: len(rows)] if args.eval else []
    if args.limit:
        rows, evals = rows[: args.limit], evals[: args.limit]
    base = Path(args.manifest).parent
    hyps: dict[str, list[str]] = {"student": [], "teacher": []}  # what the decoder wrote, per clip
    families: dict[str, list[int]] = {}  # family -> [clips, student exact, teacher exact]
    split: dict[tuple[str, bool], list[int]] = {}  # (family, heard exactly) -> [clips, AuRA answers right]
    for i, row in enumerate(rows):
        path = str(base / row["audio"])
        ref = row["text"].split()
        wave = audio_io.load_audio(path)
        p = assistant.prepare([wave])
        e = p.encoded
        with torch.no_grad():
            out = assistant.model(e.input_ids, e.attention_mask, e.position_ids, e.audio_spans, p.features,
                                  p.frame_lengths, output_hidden_states=True)
            (start, n), = e.audio_spans[0]
            student = head(out.hidden_states[s_layer][0, start:start + n].float())
            enc = teacher.model.encoder(input_features=whisper_features([wave], input_frames(teacher))).last_hidden_state
            valid = int(conv_frames(audio_io.num_frames(len(wave))))
            pooled, _ = pool_time(enc[:, :valid], torch.ones(1, valid, dtype=torch.bool), stack)
        heard = {"student": read_states(teacher, t_tok, student), "teacher": read_states(teacher, t_tok, pooled[0])}
        fam = families.setdefault(row.get("family", "?"), [0, 0, 0])
        fam[0] += 1
        for j, who in enumerate(("student", "teacher")):
            hyps[who].append(heard[who])
            fam[1 + j] += heard[who].split() == ref
        if evals:
            for key in ((row.get("family", "?"), heard["student"].split() == ref),
                        ("all", heard["student"].split() == ref)):
                cell = split.setdefault(key, [0, 0])
                cell[0] += 1
                cell[1] += bool(evals[i]["correct"])
    n = len(rows)
    print(f"{n} clips; pair {list(layer_map[k])} (student hidden_states[{s_layer}] -> head -> teacher decoder)")
    refs = [row["text"] for row in rows]
    for who, heard_all in hyps.items():
        exact = sum(h.split() == r.split() for h, r in zip(heard_all, refs))
        print(f"  {who:8s} WER {100 * wer(refs, heard_all):5.1f} %  exact transcript {100 * exact / n:5.1f} %")
    print("  per family, exact transcript (student / teacher pooled):")
    for fam, (c, s, t) in sorted(families.items()):
        print(f"    {fam:16s} {c:4d} clips  {100 * s / c:5.1f} % / {100 * t / c:5.1f} %")
    if evals:
        print("  AuRA answers right, where the student's span was heard exactly / otherwise:")
        for fam in ["all"] + sorted(families):
            cells = [split.get((fam, ok), [0, 0]) for ok in (True, False)]
            print(f"    {fam:16s} " + "  ".join(f"{r}/{c} ({100 * r / max(c, 1):5.1f} %)" for c, r in cells))


if __name__ == "__main__":
    main()
