"""Falsifier for the token-rate interface (design issue: "pool the span to token rate inside the LLM").

Question: the shipped student *hears* the request (its audio span carries the words) but answers few of the
exactly-heard arithmetic/calendar requests. Is the interface between the lower (distilled) layers and the upper
layers the bottleneck -- about 4.6 frame-rate vectors per text token, in the teacher's space -- or is it something
else? We test it on the shipped adapter without any training code:

1. Student pass: the bundle's AuraModel (LoRA on) reads the spoken request exactly as ``aura eval --mode aura``
   does (same prompt, same placeholder span, bidirectional attention inside the span); we keep
   ``hidden_states[k]`` over the whole prompt, k = the top student layer of the layer map (2 for the default).
2. Pooling: the span's T states (12.5/s) are pooled to one vector per *transcript token*: each manifest row
   carries per-word timings relative to the wav; a word's interval is split evenly over its tokens (the base
   tokenizer's tokens of the transcript, offsets decide which word a token belongs to); a token gets the mean of
   the span states whose receptive-field centre (token j: ``(2*hop/sr) * (stack*j + (stack-1)/2)`` s, i.e.
   0.08 j + 0.03 s) falls in its interval, or the nearest state if none does. Count and boundaries come from the
   manifest: an ORACLE segmentation (the issue prescribes it for this falsifier).
3. Targets: the base LLM with the adapter disabled reads the same chat prompt with the true transcript as
   text; ``hidden_states[k]`` at the transcript tokens.
4. Ridge: closed-form ridge (with bias) pooled -> target on a seeded sample of ``--train-clips`` training clips;
   lambda chosen on a held-out 10 % of those clips (by clip); R^2 and cosine reported on that held-out slice; the
   map is refitted on all of them. A second map sees the pooled vectors of the previous and next tokens too
   (``ridge+ctx``).
5. Splice + decode (test split): the upper layers k+1..L read [student's own layer-k states of the prefix (before
   the span), the N spliced vectors, the student's own layer-k states of the suffix (end of user turn +
   assistant header)] at positions 0..len-1 with a causal mask -- as if the request had been typed -- so no
   transcript leaks except through the spliced vectors themselves. Greedy decoding without a KV cache in the
   upper part: each generated token's layer-k state comes from the student's normal (cached) lower pass over
   the audio prompt + the tokens so far; the upper stack is recomputed over the spliced sequence + those states
   and the last position's logits give the next token. Upper layers run with the LoRA on (as the student) and,
   as a second variant, off (the plain base LLM's upper layers).

Rows, part 1 -- the issue's recipe ("k-splice"; each with the upper LoRA on / off):
- ``no-splice``: the span states passed through unchanged (original positions, bidirectional span): must
  reproduce the normal AuRA answers (agreement with ``Assistant.stream`` is reported) -- checks the upper pass.
- ``oracle``: the ridge target itself (base LLM text-mode layer-k states of the transcript) spliced in: the
  ceiling of any map into that space under this recipe.
- ``pooled``: the pooled student states spliced in without any map.
- ``ridge``: the ridge-mapped pooled states (the issue's falsifier row); ``ridge+ctx``: ridge from
  [previous, own, next] pooled states.
- ``text-path``: everything (prefix, transcript, suffix, generated tokens) from the base LLM in text mode
  through the same split upper pass, adapter off: must reproduce the text upper bound -- checks the splice path.

The k-splice oracle does NOT reach the text upper bound (it answers about as badly as AuRA): the suffix and the
generated tokens' layer-k states come from the student's LoRA-adapted lower layers, which the base upper layers
cannot read, and the LoRA-adapted upper layers cannot read text-mode transcript states. So part 2 keeps the issue's
question but removes that confound, still without any transcript leak:

Rows, part 2 -- "base-splice": the BASE LLM (adapter off in every layer) reads the typed prompt's prefix and suffix
ids and its own generated tokens as text; the N transcript slots carry no token: their residual stream is SET to
mapped vectors at the input of layers 1..k+1 (layer 0 = the embeddings, ..., layer k), one map per layer, every map
fed only by the student's layer-k span states and the oracle segmentation. Above k the slots run on freely.
- ``oracle``: the true text-mode states (must equal the text upper bound: checks this path);
- ``ridge`` / ``ridge+ctx``: as above (mean-pooled features);
- ``ridge rich``: still closed-form ridge, but the features keep the order inside a token: the states
  interpolated at 1/6, 1/2, 5/6 of the token's interval, plus the pooled states of tokens i-2..i+2;
- ``mlp rich``: a one-hidden-layer MLP probe (512 units, 40 epochs, MSE) on the same features: how much of the
  targets a small nonlinear readout (what a trained pooler would be) gets;
- ``mlp rich, snapped to tokens``: its layer-0 output replaced by the nearest token's embedding (a discrete,
  per-token "ASR" with oracle segmentation), read as typed text;
- ``mlp timing-only (control)``: the same MLP fed only segmentation features (durations, token counts, places),
  no audio content: what the oracle word timings alone leak.

"Exactly heard": the clips whose teacher transcript (greedy, the cascade's ASR) equals the manifest text after
``normalize_answer``. For arithmetic and calendar we report how many of those each row answers.

Decision rule of the issue: if exactly-heard arithmetic with the ridge splice stays at 20/79 or below (or the
same share, ~25 %, of another count), the interface is not the bottleneck. See research/token_rate.md for the
result and verdict.

Reproduce (from the repository root; 2 CPU cores shared, torch pinned to 1 thread; about 12 min)::

    HF_HUB_OFFLINE=1 .venv/bin/python research/token_rate_falsifier.py \
        --bundle assets/default_bundle --data .cache/demo-build/data --train-clips 3000 \
        --out /tmp/token_rate.json

Writes the table to stdout and everything (fits, per-clip predictions of every row) to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aura_model.assistant import Assistant  # noqa: E402
from aura_model.config import GenerationSettings, RuntimeConfig  # noqa: E402
from aura_model.model import span_attention_mask  # noqa: E402
from aura_model.scoring import is_correct, normalize_answer  # noqa: E402

FAMILIES = ("arithmetic", "calendar", "capital", "smart_home", "timer", "unit_conversion")
HEARD_FAMILIES = ("arithmetic", "calendar")


# ---------------------------------------------------------------------- data
def read_rows(manifest: Path) -> list[dict]:
    from aura_model.demo.synth import read_manifest

    return read_manifest(manifest)


# ---------------------------------------------------------------------- the split model
@dataclass
class StudentPass:
    """One spoken request read by the student: its prompt, span and layer-k states."""

    input_ids: torch.Tensor  # (1, L)
    attention_mask: torch.Tensor  # (1, L)
    position_ids: torch.Tensor  # (1, L)
    spans: list  # [[(start, T)]]
    features: torch.Tensor
    frame_lengths: torch.Tensor
    states: torch.Tensor  # (L, d) hidden_states[k]
    logits: torch.Tensor  # (V,) last position, normal model

    @property
    def start(self) -> int:
        return self.spans[0][0][0]

    @property
    def n_audio(self) -> int:
        return self.spans[0][0][1]


class Split:
    """The bundle's LLM cut after layer k: lower = the normal model (with cache), upper = layers k+1..L + head."""

    def __init__(self, assistant: Assistant, k: int):
        self.a = assistant
        self.model = assistant.model.eval()
        self.proc = assistant.processor
        self.k = k
        peft = self.model.llm
        base = peft.get_base_model() if hasattr(peft, "get_base_model") else peft
        self.inner = base.model  # LlamaModel
        self.lm_head = base.lm_head
        self.layers = self.inner.layers
        self.n_layers = len(self.layers)
        if not 1 <= k < self.n_layers:
            raise ValueError(f"layer k={k} must be in 1..{self.n_layers - 1}")
        self.eos = set(assistant.eos_ids)
        self.placeholder = self.proc.prompt.placeholder

    # -------------------------------------------------------------- lower (student / base, with cache)
    @torch.no_grad()
    def student(self, wave: np.ndarray) -> StudentPass:
        prep = self.a.prepare([wave])
        enc = prep.encoded
        out = self.model(enc.input_ids, enc.attention_mask, enc.position_ids, enc.audio_spans, prep.features,
                         prep.frame_lengths, output_hidden_states=True)
        return StudentPass(enc.input_ids, enc.attention_mask, enc.position_ids, enc.audio_spans, prep.features,
                           prep.frame_lengths, out.hidden_states[self.k][0], out.logits[0, -1])

    @torch.no_grad()
    def text_states(self, text: str) -> tuple[tuple[torch.Tensor, ...], list[int], int, int]:
        """Base LLM (adapter off) reading ``text`` as the typed request: its hidden states (each (L, d); [0] = the
        input embeddings, [j] = the output of layer j), its ids, and the transcript's (start, n) in them."""
        rendered = self.proc.render(self.proc.messages(text, 0))
        ids = self.proc.text_ids(rendered)
        pre = self.proc.text_ids(rendered.split(text)[0])
        tids = self.proc.text_ids(text)
        if ids[:len(pre)] != pre or ids[len(pre):len(pre) + len(tids)] != tids:
            raise ValueError(f"text-mode ids of {text!r} do not split as prefix + transcript + suffix")
        with self.model.adapter_disabled():
            out = self.model.llm(input_ids=torch.tensor([ids]), output_hidden_states=True)
        return tuple(h[0] for h in out.hidden_states), ids, len(pre), len(tids)

    @torch.no_grad()
    def decode_base_replaced(self, prefix_ids: list[int], mids: list[torch.Tensor], suffix_ids: list[int],
                             max_new: int) -> list[int]:
        """Greedy decode with the BASE LLM (adapter off in every layer) over [prefix, N slots, suffix, generated],
        where the N slots' residual stream is set to ``mids[j]`` (N, d) at the input of layer j+1 for j = 0..k
        (mids[0] replaces the token embeddings). Text positions run as typed text; no KV cache (recomputed)."""
        emb = self.model.llm.get_input_embeddings()
        n_mid = mids[0].shape[0]
        a = len(prefix_ids)
        gen: list[int] = []
        with self.model.adapter_disabled():
            for _ in range(max_new):
                ids_after = suffix_ids + gen
                x = torch.cat([emb(torch.tensor(prefix_ids)), mids[0], emb(torch.tensor(ids_after))])[None]
                n = x.shape[1]
                pos = torch.arange(n)[None]
                mask = self.mask_for(n, None)
                pe = self.inner.rotary_emb(x, position_ids=pos)
                for j, layer in enumerate(self.layers, 1):
                    x = layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)
                    if j < len(mids):
                        x = x.clone()
                        x[0, a:a + n_mid] = mids[j]
                tok = int(self.lm_head(self.inner.norm(x)[:, -1])[0].argmax())
                if tok in self.eos:
                    break
                gen.append(tok)
        return gen

    def lower_stream(self, sp: StudentPass | None, text_ids: list[int] | None = None):
        """Generator: send a token id, get its layer-k state (1, d) from the lower model's cached pass.

        Student mode (``sp``): the AuraModel over the audio prompt, adapter on. Text mode (``text_ids``): the base
        LLM over the typed prompt, adapter off."""
        if sp is not None:
            out = self.model(sp.input_ids, sp.attention_mask, sp.position_ids, sp.spans, sp.features,
                             sp.frame_lengths, use_cache=True)
            mask = sp.attention_mask
            pos = sp.position_ids[:, -1:]
            ctx = contextlib.nullcontext
        else:
            ctx = self.model.adapter_disabled
            with ctx():
                out = self.model.llm(input_ids=torch.tensor([text_ids]), use_cache=True)
            mask = torch.ones((1, len(text_ids)), dtype=torch.long)
            pos = torch.tensor([[len(text_ids) - 1]])
        cache = {k: v for k, v in out.items() if k in ("cache", "past_key_values")}
        token = yield None
        while True:
            mask = torch.cat([mask, mask.new_ones((1, 1))], dim=1)
            pos = pos + 1
            with ctx():
                out = self.model.llm(input_ids=torch.tensor([[token]]), attention_mask=mask, position_ids=pos,
                                     use_cache=True, output_hidden_states=True, **cache)
            cache = {k: v for k, v in out.items() if k in ("cache", "past_key_values")}
            token = yield out.hidden_states[self.k][0, -1:]

    # -------------------------------------------------------------- upper (layers k+1..L)
    @torch.no_grad()
    def upper_logits(self, h: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, adapter: bool) -> torch.Tensor:
        """h (L, d) layer-k states -> (V,) next-token logits at the last position."""
        ctx = contextlib.nullcontext() if adapter else self.model.adapter_disabled()
        with ctx:
            x = h[None]
            pos = positions[None]
            pe = self.inner.rotary_emb(x, position_ids=pos)
            for layer in self.layers[self.k:]:
                x = layer(x, attention_mask=mask, position_ids=pos, position_embeddings=pe)
            x = self.inner.norm(x)
            return self.lm_head(x[:, -1])[0]

    @staticmethod
    def mask_for(length: int, bidir: tuple[int, int] | None) -> torch.Tensor:
        ones = torch.ones((1, length), dtype=torch.long)
        return span_attention_mask(ones, [[bidir]] if bidir else [[]], torch.float32)

    @torch.no_grad()
    def decode(self, seq: torch.Tensor, lower, bidir: tuple[int, int] | None, adapter: bool,
               max_new: int) -> list[int]:
        """Greedy decode: upper pass over ``seq`` (+ generated tokens' lower states), no cache in the upper part."""
        next(lower)
        ids: list[int] = []
        for _ in range(max_new):
            n = seq.shape[0]
            logits = self.upper_logits(seq, torch.arange(n), self.mask_for(n, bidir), adapter)
            tok = int(logits.argmax())
            if tok in self.eos:
                break
            ids.append(tok)
            if len(ids) == max_new:
                break
            seq = torch.cat([seq, lower.send(tok)], dim=0)
        lower.close()
        return ids


# ---------------------------------------------------------------------- pooling and per-token features
@dataclass
class Segmentation:
    """Where each transcript token is in the clip (from the manifest's word timings: an ORACLE segmentation)."""

    intervals: list[tuple[float, float]]  # (start_s, end_s) per token
    word_of: list[int]  # index of each token's word


def token_segmentation(proc, text: str, words: list) -> Segmentation:
    """A word's interval split evenly over that word's tokens (the base tokenizer's tokens of ``text``)."""
    split = text.split()
    if len(words) != len(split) or any(w[0] != s for w, s in zip(words, split)):
        raise ValueError(f"word timings do not match the words of {text!r}")
    spans, pos = [], 0
    for w in split:
        pos = text.index(w, pos)
        spans.append((pos, pos + len(w)))
        pos += len(w)
    enc = proc.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] != proc.text_ids(text):
        raise ValueError("offset tokenization differs from text_ids")
    owner = []
    for a, b in enc["offset_mapping"]:
        last = max(a, b - 1)  # a token's last character decides its word (offsets include a leading space)
        wi = next((i for i, (s, e) in enumerate(spans) if s <= last < e), None)
        if wi is None:  # a pure-space token: give it to the next word
            wi = next((i for i, (s, _) in enumerate(spans) if s >= a), len(spans) - 1)
        owner.append(wi)
    out = []
    for i, wi in enumerate(owner):
        m, r = owner.count(wi), owner[:i].count(wi)
        s, e = float(words[wi][1]), float(words[wi][2])
        out.append((s + (e - s) * r / m, s + (e - s) * (r + 1) / m))
    return Segmentation(out, owner)


@dataclass
class Clock:
    """Audio token j of the span is centred at ``centre0 + dt * j`` seconds of the wav."""

    centre0: float
    dt: float

    def centres(self, n: int) -> torch.Tensor:
        return self.centre0 + self.dt * torch.arange(n, dtype=torch.float64)


def pool(span: torch.Tensor, intervals: list[tuple[float, float]], clock: Clock) -> torch.Tensor:
    """span (T, d) states -> (N, d): mean of the states whose centre falls in each interval (else the nearest)."""
    centres = clock.centres(span.shape[0])
    rows = []
    for s, e in intervals:
        inside = (centres >= s) & (centres < e)
        rows.append(span[inside].mean(0) if bool(inside.any()) else span[int((centres - (s + e) / 2).abs().argmin())])
    return torch.stack(rows)


def sample_at(span: torch.Tensor, t: float, clock: Clock) -> torch.Tensor:
    """The span's state at time ``t``, linearly interpolated between the two nearest centres (clamped)."""
    x = (t - clock.centre0) / clock.dt
    x = min(max(x, 0.0), span.shape[0] - 1.0)
    i = min(int(x), span.shape[0] - 2) if span.shape[0] > 1 else 0
    f = x - i
    return span[i] if span.shape[0] == 1 else span[i] * (1 - f) + span[i + 1] * f


def neighbours(x: torch.Tensor, reach: int) -> torch.Tensor:
    """(N, d) -> (N, (2 reach + 1) d): [x[i-reach], ..., x[i], ..., x[i+reach]] (zeros past the ends)."""
    z = torch.zeros((reach, x.shape[1]), dtype=x.dtype)
    padded = torch.cat([z, x, z])
    n = x.shape[0]
    return torch.cat([padded[o:o + n] for o in range(2 * reach + 1)], dim=1)


FEATURES = ("pooled", "ctx", "rich", "timing")


def token_features(kind: str, span: torch.Tensor, seg: Segmentation, clock: Clock) -> torch.Tensor:
    """Per-token input of a map, (N, D). Only the student's span states and the (oracle) segmentation are used.

    - pooled: the mean of the token's states (D = d), the issue's map input;
    - ctx: pooled of the previous, own and next token (3d);
    - rich: pooled of tokens i-2..i+2 plus the state interpolated at 1/6, 1/2 and 5/6 of the token's own
      interval (8d): a mean loses the order of the 4-5 states inside a token;
    - timing: NO audio content, only what the segmentation itself tells (durations, token counts, places):
      the control for what the oracle timings alone leak.
    """
    if kind == "timing":
        n = len(seg.intervals)
        dur = torch.tensor([e - s for s, e in seg.intervals], dtype=torch.float32)
        wdur = torch.tensor([seg.intervals[max(j for j in range(n) if seg.word_of[j] == w)][1]
                             - seg.intervals[min(j for j in range(n) if seg.word_of[j] == w)][0]
                             for w in seg.word_of], dtype=torch.float32)
        m = torch.tensor([seg.word_of.count(w) for w in seg.word_of], dtype=torch.float32)
        r = torch.tensor([seg.word_of[:i].count(w) for i, w in enumerate(seg.word_of)], dtype=torch.float32)
        i = torch.arange(n, dtype=torch.float32)
        own = torch.stack([dur, wdur, m, r, i, i / max(1, n - 1), torch.full((n,), float(n)),
                           torch.full((n,), float(max(seg.word_of) + 1)), torch.tensor(seg.word_of, dtype=torch.float32)], 1)
        return torch.cat([own, neighbours(torch.stack([dur, wdur, m], 1), 2)], 1)
    pooled = pool(span, seg.intervals, clock)
    if kind == "pooled":
        return pooled
    if kind == "ctx":
        return neighbours(pooled, 1)
    inner = torch.stack([torch.cat([sample_at(span, s + (e - s) * q, clock) for q in (1 / 6, 1 / 2, 5 / 6)])
                         for s, e in seg.intervals])
    return torch.cat([neighbours(pooled, 2), inner], 1)


# ---------------------------------------------------------------------- maps
class Ridge:
    """Closed-form ridge with an (unpenalised) bias: y = (x - mx) W + my."""

    def __init__(self, w: torch.Tensor, b: torch.Tensor, mx: torch.Tensor):
        self.w, self.b, self.mx = w, b, mx

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ((x.double() - self.mx) @ self.w + self.b).float()

    @staticmethod
    def fit(x: torch.Tensor, y: torch.Tensor, lam: float) -> "Ridge":
        x, y = x.double(), y.double()
        mx, my = x.mean(0), y.mean(0)
        xc = x - mx
        a = xc.T @ xc
        w = torch.linalg.solve(a + lam * torch.eye(a.shape[0], dtype=a.dtype), xc.T @ (y - my))
        return Ridge(w, my, mx)


def fit_quality(pred: torch.Tensor, y: torch.Tensor, y_mean: torch.Tensor) -> dict:
    """R^2 over all dimensions (1 - SSE / SST around the training mean), mean cosine, and the mean predictor's."""
    pred, y = pred.double(), y.double()
    sse = float(((pred - y) ** 2).sum())
    sst = float(((y - y_mean.double()) ** 2).sum())
    cos = torch.nn.functional.cosine_similarity(pred, y, dim=-1)
    base = torch.nn.functional.cosine_similarity(y_mean.double().expand_as(y), y, dim=-1)
    return {"r2": 1 - sse / sst, "cosine": float(cos.mean()), "cosine_of_mean_predictor": float(base.mean()),
            "n_tokens": int(y.shape[0])}


ALPHAS = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # lambda = alpha * mean eigenvalue of X^T X


def choose_ridge(x: torch.Tensor, y: torch.Tensor, clip_of: torch.Tensor, seed: int, name: str) -> tuple[Ridge, dict]:
    """Pick lambda on a held-out 10 % of the clips (by clip), report that fit, refit on all clips."""
    clips = sorted(set(clip_of.tolist()))
    held = set(random.Random(seed).sample(clips, max(1, len(clips) // 10)))
    is_held = torch.tensor([int(c) in held for c in clip_of.tolist()])
    xt, yt, xh, yh = x[~is_held], y[~is_held], x[is_held], y[is_held]

    def scale(v: torch.Tensor) -> float:
        return float(((v.double() - v.double().mean(0)) ** 2).sum()) / v.shape[1]

    tried = []
    for alpha in ALPHAS:
        q = fit_quality(Ridge.fit(xt, yt, alpha * scale(xt))(xh), yh, yt.mean(0))
        q["alpha"] = alpha
        tried.append(q)
    best = max(tried, key=lambda q: q["r2"])
    report = {"map": name, "held_out_clips": len(held), "fit_clips": len(clips) - len(held), "tried": tried,
              "chosen_alpha": best["alpha"],
              "held_out": {k: best[k] for k in ("r2", "cosine", "cosine_of_mean_predictor", "n_tokens")}}
    return Ridge.fit(x, y, best["alpha"] * scale(x)), report


class MLPMap:
    """A one-hidden-layer probe (D -> 512 -> (k+1) d), MSE on standardised targets of all layers 0..k at once."""

    def __init__(self, x: torch.Tensor, ys: list[torch.Tensor], seed: int, epochs: int = 40):
        torch.manual_seed(seed)
        y = torch.cat(ys, 1).float()
        self.d = ys[0].shape[1]
        self.mx, self.sx = x.mean(0), x.std(0) + 1e-6
        self.my, self.sy = y.mean(0), y.std(0) + 1e-6
        self.net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 512), torch.nn.GELU(), torch.nn.Dropout(0.1),
                                       torch.nn.Linear(512, y.shape[1]))
        opt = torch.optim.AdamW(self.net.parameters(), 1e-3, weight_decay=1e-2)
        xn, yn = (x.float() - self.mx) / self.sx, (y - self.my) / self.sy
        g = torch.Generator().manual_seed(seed)
        for _ in range(epochs):
            self.net.train()
            perm = torch.randperm(len(xn), generator=g)
            for b in range(0, len(xn), 256):
                i = perm[b:b + 256]
                loss = ((self.net(xn[i]) - yn[i]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net.eval()

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.net((x.float() - self.mx) / self.sx) * self.sy + self.my
        return [out[:, j * self.d:(j + 1) * self.d] for j in range(out.shape[1] // self.d)]


def nearest_tokens(pred0: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """(N, d) mapped layer-0 vectors -> (N,) ids of the nearest (cosine) rows of the embedding matrix."""
    return (torch.nn.functional.normalize(pred0.float(), dim=-1)
            @ torch.nn.functional.normalize(emb.float(), dim=-1).T).argmax(-1)


# ---------------------------------------------------------------------- main
# Maps: name -> (feature kind, model). Ridge maps are closed form, one per target layer; MLP maps one net.
MAPS = {"ridge": ("pooled", "ridge"), "ridge+ctx": ("ctx", "ridge"), "ridge rich": ("rich", "ridge"),
        "mlp rich": ("rich", "mlp"), "mlp timing-only (control)": ("timing", "mlp")}
K_SPLICE = ["no-splice", "oracle", "pooled", "ridge", "ridge+ctx"]  # the recipe: one splice at layer k
BASE_SPLICE = ["oracle", "ridge", "ridge+ctx", "ridge rich", "mlp rich", "mlp rich, snapped to tokens",
               "mlp timing-only (control)"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", default="assets/default_bundle")
    ap.add_argument("--data", default=".cache/demo-build/data", help="folder with train/ and test/ manifests")
    ap.add_argument("--train-clips", type=int, default=3000)
    ap.add_argument("--test-clips", type=int, default=0, help="0 = the whole test split")
    ap.add_argument("--layer", type=int, default=0, help="k; 0 = the top student layer of the bundle's layer map")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="/tmp/token_rate.json")
    args = ap.parse_args(argv)
    t_start = time.time()

    assistant = Assistant.open(args.bundle, runtime=RuntimeConfig(device="cpu", quantization="none"))
    meta = json.loads((Path(args.bundle) / "aura_config.json").read_text())
    layer_map = meta.get("training", {}).get("layer_map")
    k = args.layer or max(s for s, _ in layer_map)
    split = Split(assistant, k)
    proc = assistant.processor
    emb_layer = assistant.model.llm.get_input_embeddings()
    acfg, stack = assistant.config.audio, assistant.config.embedding.stack
    # log-mel frame f is centred at f * hop / sr (centred STFT); the stride-2 conv frame c at 2c frames; audio token
    # j stacks conv frames stack*j .. stack*j + stack-1, so its centre is (2 hop / sr) * (stack j + (stack-1)/2).
    clock = Clock(2 * acfg.hop_length / acfg.sample_rate * (stack - 1) / 2, 2 * acfg.hop_length / acfg.sample_rate * stack)
    print(f"layer map {layer_map}: splicing after student layer k={k} of {split.n_layers}; audio token j centred "
          f"at {clock.centre0:.3f} + {clock.dt:.3f} j s", flush=True)

    data = Path(args.data)
    train_rows = read_rows(data / "train" / "manifest.jsonl")
    test_rows = read_rows(data / "test" / "manifest.jsonl")
    train_rows = random.Random(args.seed).sample(train_rows, min(args.train_clips, len(train_rows)))
    if args.test_clips:
        test_rows = test_rows[:args.test_clips]

    # ---------------- training pairs: student span (layer k) + segmentation -> base text-mode states (layers 0..k)
    feats: dict[str, list[torch.Tensor]] = {kind: [] for kind in FEATURES}
    ys: list[list[torch.Tensor]] = [[] for _ in range(k + 1)]
    clip_of: list[int] = []
    skipped = []
    t0 = time.time()
    n_span, n_tok = 0, 0
    for i, row in enumerate(train_rows):
        try:
            sp = split.student(assistant.waveform(row["path"]))
            hs, _, tstart, n = split.text_states(row["text"])
            seg = token_segmentation(proc, row["text"], row["words"])
        except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
            skipped.append({"audio": row["audio"], "why": str(exc)[:200]})
            continue
        span = sp.states[sp.start:sp.start + sp.n_audio]
        for kind in FEATURES:
            feats[kind].append(token_features(kind, span, seg, clock))
        for j in range(k + 1):
            ys[j].append(hs[j][tstart:tstart + n])
        clip_of += [i] * n
        n_span += sp.n_audio
        n_tok += n
        if (i + 1) % 500 == 0:
            print(f"  train pairs {i + 1}/{len(train_rows)} ({time.time() - t0:.0f} s)", flush=True)
    x = {kind: torch.cat(v) for kind, v in feats.items()}
    y = [torch.cat(v) for v in ys]
    clip_of_t = torch.tensor(clip_of)
    print(f"train: {len(ys[0])} clips, {n_tok} transcript tokens, {n_span} span states "
          f"({n_span / max(1, n_tok):.2f} per token); skipped {len(skipped)}", flush=True)

    maps: dict[str, object] = {}
    fit_reports = []
    for name, (kind, model) in MAPS.items():
        if model == "ridge":
            per_layer = []
            for j in range(k + 1):
                r, rep = choose_ridge(x[kind], y[j], clip_of_t, args.seed, f"{name} -> layer {j}")
                per_layer.append(r)
                fit_reports.append(rep)
                h = rep["held_out"]
                print(f"  {rep['map']} (D={x[kind].shape[1]}): alpha {rep['chosen_alpha']:g}, held-out R^2 "
                      f"{h['r2']:.3f}, cosine {h['cosine']:.3f} (mean predictor {h['cosine_of_mean_predictor']:.3f})",
                      flush=True)
            maps[name] = (lambda f, rs=per_layer: [r(f) for r in rs])
        else:
            tm = time.time()
            maps[name] = MLPMap(x[kind], y, args.seed)
            print(f"  {name}: trained in {time.time() - tm:.0f} s", flush=True)
    train_s = time.time() - t0

    # ---------------- exactly heard (teacher ASR transcripts) and the reference systems
    from aura_model.transcribe import load_transcriber

    transcriber = load_transcriber(assistant.loaded.bundle_dir, assistant.loaded.resolved)
    waves = [assistant.waveform(r["path"]) for r in test_rows]
    transcripts = transcriber(waves)
    heard = [normalize_answer(t) == normalize_answer(r["text"]) for t, r in zip(transcripts, test_rows)]
    gen = GenerationSettings(max_new_tokens=args.max_new_tokens)

    def run_stream(**kw) -> str:
        return "".join(assistant.stream(gen=gen, **kw))

    preds: dict[str, list[str]] = {"text upper bound": [], "cascade": [], "AuRA (Assistant.stream)": []}
    for row, wave, tr in zip(test_rows, waves, transcripts):
        with assistant.model.adapter_disabled():
            preds["text upper bound"].append(run_stream(text=row["text"]))
            preds["cascade"].append(run_stream(text=tr or " "))
        preds["AuRA (Assistant.stream)"].append(run_stream(audio=wave))

    # ---------------- splice rows
    for name in K_SPLICE:
        for onoff in ("on", "off"):
            preds[f"k-splice {name} | upper LoRA {onoff}"] = []
    preds["k-splice text-path | upper LoRA off"] = []
    for name in BASE_SPLICE:
        preds[f"base-splice {name}"] = []
    max_diff = 0.0
    fit_test: dict[str, list] = {}
    recovered: dict[str, list] = {name: [] for name in MAPS}
    t1 = time.time()
    for ci, (row, wave) in enumerate(zip(test_rows, waves)):
        sp = split.student(wave)
        s, T = sp.start, sp.n_audio
        if ci < 20:  # the upper pass over the unchanged states must give the model's own logits
            n_all = sp.states.shape[0]
            lg = split.upper_logits(sp.states, sp.position_ids[0], split.mask_for(n_all, (s, T)), True)
            max_diff = max(max_diff, float((lg - sp.logits).abs().max()))
        hs, tids, tstart, n = split.text_states(row["text"])
        true_ids = tids[tstart:tstart + n]
        seg = token_segmentation(proc, row["text"], row["words"])
        span = sp.states[s:s + T]
        per_layer = {"oracle": [hs[j][tstart:tstart + n] for j in range(k + 1)]}
        for name, (kind, _) in MAPS.items():
            per_layer[name] = maps[name](token_features(kind, span, seg, clock))
            guess = nearest_tokens(per_layer[name][0], emb_layer.weight.detach())
            recovered[name] += [(int(g) == t, row["family"]) for g, t in zip(guess, true_ids)]
            if name == "mlp rich":
                snapped = [emb_layer(guess).detach()]
            for j in range(k + 1):
                fit_test.setdefault(f"{name} -> layer {j}", []).append(
                    (per_layer[name][j], per_layer["oracle"][j], row["family"]))
        pooled = pool(span, seg.intervals, clock)
        fit_test.setdefault(f"pooled (no map) -> layer {k}", []).append((pooled, per_layer["oracle"][k], row["family"]))
        per_layer["mlp rich, snapped to tokens"] = snapped  # the nearest tokens' embeddings, read as typed text
        prefix, suffix = sp.states[:s], sp.states[s + T:]
        for name in K_SPLICE:
            if name == "no-splice":
                seq, bidir = sp.states, (s, T)
            else:
                mid = pooled if name == "pooled" else per_layer[name][k]
                seq, bidir = torch.cat([prefix, mid, suffix]), None
            for onoff in ("on", "off"):
                ids = split.decode(seq, split.lower_stream(sp), bidir, onoff == "on", args.max_new_tokens)
                preds[f"k-splice {name} | upper LoRA {onoff}"].append(proc.decode(ids))
        ids = split.decode(hs[k], split.lower_stream(None, tids), None, False, args.max_new_tokens)
        preds["k-splice text-path | upper LoRA off"].append(proc.decode(ids))
        for name in BASE_SPLICE:
            ids = split.decode_base_replaced(tids[:tstart], per_layer[name], tids[tstart + n:], args.max_new_tokens)
            preds[f"base-splice {name}"].append(proc.decode(ids))
        if (ci + 1) % 50 == 0:
            print(f"  test {ci + 1}/{len(test_rows)} ({time.time() - t1:.0f} s)", flush=True)
    decode_s = time.time() - t1

    # ---------------- table
    fams = [f for f in FAMILIES if any(r["family"] == f for r in test_rows)]
    fam_n = {f: sum(r["family"] == f for r in test_rows) for f in fams}
    heard_n = {f: sum(h for h, r in zip(heard, test_rows) if r["family"] == f) for f in HEARD_FAMILIES}
    table = []
    for name, p in preds.items():
        ok = [is_correct(a_, r["answer"]) for a_, r in zip(p, test_rows)]
        fam_acc = {f: sum(o for o, r in zip(ok, test_rows) if r["family"] == f) / max(1, fam_n[f]) for f in fams}
        hx = {f: sum(o for o, h, r in zip(ok, heard, test_rows) if h and r["family"] == f) for f in HEARD_FAMILIES}
        table.append({"row": name, "accuracy": sum(ok) / len(ok), "n_correct": sum(ok), "by_family": fam_acc,
                      "exactly_heard_correct": hx})

    def agreement(a_name: str, b_name: str) -> float:
        pa, pb = preds[a_name], preds[b_name]
        return sum(normalize_answer(u) == normalize_answer(v) for u, v in zip(pa, pb)) / len(pa)

    agree = {"k-splice no-splice (LoRA on) vs AuRA": agreement("k-splice no-splice | upper LoRA on",
                                                               "AuRA (Assistant.stream)"),
             "k-splice text-path vs text upper bound": agreement("k-splice text-path | upper LoRA off",
                                                                 "text upper bound"),
             "base-splice oracle vs text upper bound": agreement("base-splice oracle", "text upper bound")}
    test_fit = {}
    for key, items in fit_test.items():
        j = int(key.rsplit(" ", 1)[1])
        q = fit_quality(torch.cat([p_ for p_, _, _ in items]), torch.cat([t_ for _, t_, _ in items]), y[j].mean(0))
        test_fit[key] = q
    recovery = {name: {"all": sum(b for b, _ in v) / len(v),
                       **{f: sum(b for b, fam in v if fam == f) / max(1, sum(fam == f for _, fam in v)) for f in fams}}
                for name, v in recovered.items()}

    header = ["row", "acc %"] + fams + [f"heard {f} x/{heard_n[f]}" for f in HEARD_FAMILIES]
    print("\n| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for t in table:
        cells = [t["row"].replace("|", "/"), f"{100 * t['accuracy']:.1f}"]
        cells += [f"{100 * t['by_family'][f]:.0f}" for f in fams]
        cells += [f"{t['exactly_heard_correct'][f]}/{heard_n[f]}" for f in HEARD_FAMILIES]
        print("| " + " | ".join(cells) + " |")
    print(f"\nupper-pass check: max |logit diff| on 20 clips = {max_diff:.2e}")
    print("agreement: " + json.dumps({a_: round(b, 4) for a_, b in agree.items()}))
    print("test-split fit against the base LLM's text-mode states (R^2, cosine (mean predictor's)), token recovery:")
    for key, q in test_fit.items():
        print(f"  {key}: R^2 {q['r2']:.3f}, cosine {q['cosine']:.3f} ({q['cosine_of_mean_predictor']:.3f})")
    for name, rec in recovery.items():
        print(f"  {name}: nearest embedding row = true token for {100 * rec['all']:.1f} % of test tokens ("
              + ", ".join(f"{f} {100 * rec[f]:.0f}" for f in fams) + ")")
    n_heard = sum(heard)
    print(f"teacher exactly heard {n_heard}/{len(heard)} test clips; "
          + ", ".join(f"{f} {heard_n[f]}/{fam_n[f]}" for f in HEARD_FAMILIES))
    print(f"time: pairs + maps {train_s:.0f} s, test decoding {decode_s:.0f} s")

    result = {
        "args": vars(args), "layer_map": layer_map, "k": k, "n_layers": split.n_layers,
        "token_clock": {"centre0_s": clock.centre0, "dt_s": clock.dt},
        "train": {"clips": len(ys[0]), "tokens": n_tok, "span_states": n_span,
                  "states_per_token": n_span / max(1, n_tok), "skipped": skipped, "seconds": train_s},
        "ridge_fits_held_out": fit_reports, "test_fit": test_fit, "token_recovery": recovery,
        "test": {"clips": len(test_rows), "exactly_heard": n_heard, "exactly_heard_by_family": heard_n,
                 "families": fam_n},
        "table": table, "upper_pass_max_logit_diff": max_diff, "agreement": agree,
        "decode_seconds": decode_s, "total_seconds": time.time() - t_start,
        "clips": [{"audio": r["audio"], "text": r["text"], "answer": r["answer"], "family": r["family"],
                   "transcript": tr, "exactly_heard": h, "predictions": {n_: p[i] for n_, p in preds.items()}}
                  for i, (r, tr, h) in enumerate(zip(test_rows, transcripts, heard))],
    }
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"\nwrote {args.out}; total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
