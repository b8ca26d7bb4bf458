"""The demo world's base LLM: a domain tokenizer and a tiny Llama trained from scratch.

Steps 2 and 3 of the demo recipe. :func:`train_llm` writes a local model folder that
``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer.from_pretrained`` read (safetensors,
ChatML template, eos = ``<|im_end|>``), and ``llm_report.json`` with the text-mode scores.

Data. The tokenizer is trained on every text and answer of every split plus the knowledge
queries (a tokenizer may see all text; it carries no answers). The LLM is trained on

* the ``train`` requests only, as chat turns ``user: text`` -> ``assistant: answer<|im_end|>``
  with the loss on the answer tokens (and the closing ``<|im_end|>``) only; ``valid``/``test``
  requests are new compositions it never saw; and, with ``knowledge=True`` (the default),
* :func:`.llm_data.knowledge_corpus`: terse world-knowledge pairs ("six times seven" -> "42") generated
  from the domain's tables over their whole ranges, the stand-in for a base LLM's
  pre-training. This DOES contain the facts that valid/test requests ask for (in other
  words), by design: the held-out test splits hold out facts that no train request
  determines (e.g. 2 x 4, 11 x 11, 12 x 12 are held-out "times" keys; the reverse of each
  capital is asked once in train), so without it a from-scratch model cannot reach the text
  upper bound target. ``knowledge=False`` gives the strict train-requests-only model.

Tokenizer. Byte-level BPE as :mod:`.tokenizer`, but digits are pre-split one per token,
so an answer such as "144" is the three tokens 1 4 4: the arithmetic answers are then a
small, regular output alphabet instead of hundreds of unrelated number tokens.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..chat_tokenizer import train_chat_tokenizer
from ..errors import AuraError
from ..scoring import normalize_answer
from . import domain
from .llm_data import (
    content_bounds,
    encode_example,
    knowledge_corpus,
    pad_batch,
    prompt_ids,
    stretch_request,
    train_requests,
    with_history,
)
from .phonemes import all_phoneme_chars, spell
from .training import ReportFn, adamw, load_report, run_steps, save_trained, start_run


@dataclass
class LLMTrainConfig:
    """Size and schedule of the demo LLM (full size by default; :meth:`quick` for smoke runs)."""

    vocab_size: int = 1024  # BPE vocabulary; ~260 domain words + 10 digits + 256 bytes fit as single tokens
    hidden_size: int = 192  # model width
    num_layers: int = 4  # decoder layers
    num_heads: int = 4  # attention heads (head dim = hidden_size / num_heads)
    num_kv_heads: int = 2  # grouped-query KV heads (Llama-3 style), fewer KV params
    intermediate_size: int = 512  # SwiGLU MLP width
    max_positions: int = 512  # RoPE positions: covers an audio turn (~12.5 tokens/s * 30 s) + answer
    tie_embeddings: bool = True  # share input/output embeddings: fewer parameters, no loss in accuracy here
    knowledge: bool = True  # also train on the world-knowledge pairs of knowledge_corpus(); without them
    #   the model can only memorise the train requests and held-out facts (e.g. 6 x 7) stay out of reach
    knowledge_fraction: float = 0.5  # share of each batch drawn from the knowledge corpus when knowledge=True
    request_pool: str = "compositions"  # "listing": the train split's listed requests (3.7k); "compositions":
    #   every (composition, template) request of the train split's compositions (21.8k; the listing caps
    #   each family to a hash-ranked subset), so no held-out composition is added
    pretrain_fraction: float = 0.0  # first share of the steps on knowledge only (pre-training), then requests
    #   + knowledge replay: a model that already holds the facts fits the train requests by reusing them,
    #   which is what carries over to held-out requests, instead of memorising each request on its own
    history_fraction: float = 0.5  # share of examples that carry 1..max_history earlier (request, answer) turns before
    #   the one that is scored: a real chat LLM answers the last turn wherever it sits, and without this the tiny
    #   LLM is brittle to context (measured: one extra system word drops its accuracy from 98% to 83%, 24 extra
    #   tokens to 25%), which an audio span of ~30 tokens in place of ~8 words then has to fight
    max_history: int = 2  # most earlier turns prepended to one example
    score_history: bool = False  # also score the answers of the earlier turns (more supervision per step, same compute)
    stretch_fraction: float = 0.0  # share of examples whose request is "stretched": each token repeated 1..stretch_max
    #   times, with blank (pad) tokens between some, so the LLM reads a request by content, not by fixed
    #   offsets -- an audio span holds ~4-5 positions per spoken word where text holds one
    pack_tokens: int = 0  # > 0: each training row is a conversation of random turns packed up to this many tokens,
    #   every answer scored (no padding waste, and each turn after the first has context); the history_* fields
    #   and batch composition by knowledge_fraction then apply per turn instead of per example
    stretch_max: int = 4  # most copies of one request token in a stretched request
    blank_rate: float = 0.25  # chance of blank (pad) tokens after each token of a stretched request
    blank_max: int = 1  # most blanks put after a token at once (1..blank_max drawn), and before the first token
    #   (0..blank_max) when > 1: the shape of a word on an audio span, one token where it ends and blanks elsewhere
    phoneme_fraction: float = 0.0  # share of request examples spelled as phonemes (see .phonemes) instead of words
    phoneme_accents: tuple[str, ...] = ("en-us", "en", "en-gb-x-rp")  # espeak-ng pronunciations the spellings use
    phoneme_max_copies: int = 2  # each phoneme of a spelling repeated 1..this many times (sounds last 1-2 audio tokens)
    phoneme_drop_rate: float = 0.1  # chance of dropping a phoneme from a spelling (short sounds merge in audio)
    family_weights: tuple[tuple[str, float], ...] = (
        ("arithmetic", 0.3), ("calendar", 0.2), ("unit_conversion", 0.15), ("capital", 0.15),
        ("timer", 0.1), ("smart_home", 0.1))  # sampling share of each family among the request examples
    init_from: str | None = None  # a demo LLM folder to continue from (its weights, stored fp16 or fp32) instead of
    #   a fresh model; its tokenizer must be the one this config trains (same texts and vocab_size). E.g. a short
    #   stretched-request phase on the shipped LLM (stretch_fraction 0.5, stretch_max 8, 2000 steps, lr 5e-4):
    #   it then reads requests with every token written 4x at 94.7 % instead of 23.3 % (typed: 97.2 % vs 97.4 %)
    steps: int = 15000  # optimizer steps (~17 min on 2 free cores); test accuracy grows with steps: 6k 84%, 9k 92%, 12k 97%
    batch_size: int = 32  # examples per step
    lr: float = 2e-3  # peak AdamW learning rate
    warmup_steps: int = 100  # linear warm-up, then cosine decay to min_lr_ratio * lr
    min_lr_ratio: float = 0.05  # floor of the cosine schedule
    weight_decay: float = 0.3  # AdamW decoupled weight decay (not on norms/biases); high, against memorising
    grad_clip: float = 1.0  # max global grad norm
    eval_every: int = 0  # steps between valid evaluations (0: only at the end)
    eval_splits: tuple[str, ...] = ("valid", "test")  # splits scored at the end
    eval_limit: int | None = None  # score only the first N items per split (None: all)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise AuraError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.num_heads % self.num_kv_heads:
            raise AuraError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {self.num_kv_heads}")
        for name in ("vocab_size", "hidden_size", "num_layers", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise AuraError(f"LLMTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.lr < 1:
            raise AuraError(f"LLMTrainConfig.lr must be in (0, 1), got {self.lr}")
        if self.request_pool not in ("listing", "compositions"):
            raise AuraError(f"LLMTrainConfig.request_pool must be 'listing' or 'compositions', got {self.request_pool!r}")
        if not 0 <= self.pretrain_fraction < 1:
            raise AuraError(f"LLMTrainConfig.pretrain_fraction must be in [0, 1), got {self.pretrain_fraction}")
        if not 0 <= self.history_fraction <= 1:
            raise AuraError(f"LLMTrainConfig.history_fraction must be in [0, 1], got {self.history_fraction}")
        if self.max_history < 1:
            raise AuraError(f"LLMTrainConfig.max_history must be >= 1, got {self.max_history}")
        if (not 0 <= self.stretch_fraction <= 1 or self.stretch_max < 1 or not 0 <= self.blank_rate <= 1
                or self.blank_max < 1):
            raise AuraError(f"LLMTrainConfig: stretch_fraction {self.stretch_fraction} and blank_rate {self.blank_rate} "
                            f"must be fractions, stretch_max {self.stretch_max} and blank_max {self.blank_max} >= 1")
        if self.pack_tokens < 0:
            raise AuraError(f"LLMTrainConfig.pack_tokens must be >= 0 (0 = no packing), got {self.pack_tokens}")
        if not 0 <= self.phoneme_fraction <= 1 or not 0 <= self.phoneme_drop_rate < 1 or self.phoneme_max_copies < 1:
            raise AuraError(f"LLMTrainConfig: phoneme_fraction {self.phoneme_fraction} and phoneme_drop_rate "
                            f"{self.phoneme_drop_rate} must be fractions, phoneme_max_copies {self.phoneme_max_copies} >= 1")
        if self.phoneme_fraction > 0 and not self.phoneme_accents:
            raise AuraError("LLMTrainConfig.phoneme_accents must name at least one espeak-ng voice when "
                            "phoneme_fraction > 0")
        if not 0 <= self.knowledge_fraction < 1:
            raise AuraError(f"LLMTrainConfig.knowledge_fraction must be in [0, 1), got {self.knowledge_fraction}")
        unknown = {f for f, _ in self.family_weights} - set(domain.family_names())
        if unknown:
            raise AuraError(f"LLMTrainConfig.family_weights: unknown families {sorted(unknown)}")
        for s in self.eval_splits:
            if s not in domain.SPLITS:
                raise AuraError(f"LLMTrainConfig.eval_splits: unknown split {s!r}")

    @classmethod
    def quick(cls, **overrides) -> "LLMTrainConfig":
        """A smoke-run size: trains and evaluates in ~20 s on two CPU cores (accuracy ~20%: a plumbing check)."""
        base = dict(hidden_size=96, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=192,
                    vocab_size=640, steps=1000, batch_size=32, lr=3e-3, warmup_steps=30, eval_every=0,
                    eval_limit=60)
        base.update(overrides)
        return cls(**base)


# --------------------------------------------------------------------------- tokenizer


def domain_texts() -> list[str]:
    """Every request text and answer of every split, the knowledge queries and the chat roles: the tokenizer's corpus."""
    texts = [s for split in domain.SPLITS for r in domain.sentences(split) for s in (r["text"], r["answer"])]
    texts += [q for q, _ in knowledge_corpus()]
    return texts + ["system user assistant"] * 100  # so the ChatML role names are single tokens


def train_domain_tokenizer(texts: list[str], vocab_size: int = 1024, phonemes: bool = False):
    """The demo LLM's tokenizer: byte-level BPE with one token per digit and the ChatML template
    (and, with ``phonemes``, one token per phoneme character of :mod:`.phonemes`)."""
    return train_chat_tokenizer(texts, vocab_size, split_digits=True,
                                extra_tokens=all_phoneme_chars() if phonemes else ())


# --------------------------------------------------------------------------- model


def build_llm(cfg: LLMTrainConfig, tokenizer, seed: int = 0):
    """A freshly initialised tiny Llama for ``tokenizer`` (eos/pad/bos wired into the config)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=cfg.max_positions,
        tie_word_embeddings=cfg.tie_embeddings, rms_norm_eps=1e-5,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.do_sample = False
    return model


def continued_llm(folder: str | os.PathLike, tokenizer):
    """The demo LLM saved in ``folder``, in float32 and ready to train on, after checking that ``tokenizer`` (the one
    this run trained) is the one it was trained with: a model reads only the ids it learned."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise AuraError(f"LLMTrainConfig.init_from: {folder} holds no model (no config.json)")
    if AutoTokenizer.from_pretrained(str(folder)).get_vocab() != tokenizer.get_vocab():
        raise AuraError(f"LLMTrainConfig.init_from: the tokenizer of {folder} differs from the one this run trains "
                        "(other texts or vocab_size); the model cannot continue on other token ids")
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def answer_texts(model, tokenizer, texts: list[str], max_new_tokens: int = 16, batch_size: int = 128) -> list[str]:
    """Greedy answers for request texts in text mode (prompts of equal length batched, no padding)."""
    model.eval()
    prompts = [prompt_ids(tokenizer, t) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(texts)
    i = 0
    while i < len(order):
        j = i
        while j < len(order) and j - i < batch_size and len(prompts[order[j]]) == len(prompts[order[i]]):
            j += 1
        idx = order[i:j]
        ids = torch.tensor([prompts[k] for k in idx])
        gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
        for k, row in zip(idx, gen[:, ids.shape[1]:]):
            out[k] = tokenizer.decode(row, skip_special_tokens=True).strip()
        i = j
    return out


def score(rows: list[dict], predictions: list[str]) -> dict:
    """Exact-match accuracy (after ``normalize_answer``), overall and per family, plus a few misses."""
    per: dict[str, list[int]] = {}
    misses = []
    for r, p in zip(rows, predictions):
        ok = normalize_answer(p) == normalize_answer(r["answer"])
        per.setdefault(r["family"], []).append(int(ok))
        if not ok and len(misses) < 20:
            misses.append({"text": r["text"], "expected": r["answer"], "got": p})
    total = sum(sum(v) for v in per.values()) / max(1, sum(len(v) for v in per.values()))
    return {"accuracy": total, "n": len(rows),
            "per_family": {f: sum(v) / len(v) for f, v in per.items()}, "misses": misses}


def evaluate_text(model, tokenizer, split: str, limit: int | None = None) -> dict:
    """Text-mode exact match of the LLM on one split (the "text upper bound")."""
    rows = domain.sentences(split)[:limit] if limit else domain.sentences(split)
    return score(rows, answer_texts(model, tokenizer, [r["text"] for r in rows]))


# --------------------------------------------------------------------------- training

Example = tuple[list[int], list[int]]  # (input ids, labels) of one chat example, as encode_example returns


@dataclass
class LLMTrainingData:
    """The encoded examples the LLM trains on (requests first, then knowledge statements)."""

    examples: list[Example]  # the request examples, then the knowledge examples
    n_requests: int  # examples[:n_requests] are the train requests
    n_statements: int  # examples[n_requests:] are the knowledge statements (0 with knowledge=False)
    request_weights: torch.Tensor  # draw weight of each request: its family's share / the family's size
    spelled: list[list[Example]]  # per phoneme accent, the spelled twin of each request example ([] without phonemes)


def llm_training_data(cfg: LLMTrainConfig, tokenizer) -> LLMTrainingData:
    """Encode the train requests of ``cfg.request_pool``, the knowledge corpus and the phoneme spellings."""
    train_rows = train_requests(cfg.request_pool)
    examples = [encode_example(tokenizer, r["text"], r["answer"]) for r in train_rows]
    share = dict(cfg.family_weights)
    counts = {f: sum(r["family"] == f for r in train_rows) for f in share}
    request_weights = torch.tensor([share.get(r["family"], 0.0) / max(1, counts.get(r["family"], 1))
                                    for r in train_rows], dtype=torch.double)
    statements = knowledge_corpus() if cfg.knowledge else []
    examples += [encode_example(tokenizer, q, a) for q, a in statements]
    spelled = []
    if cfg.phoneme_fraction > 0:
        texts = [r["text"] for r in train_rows]
        spelled = [[encode_example(tokenizer, t, r["answer"]) for t, r in zip(spell(texts, accent), train_rows)]
                   for accent in cfg.phoneme_accents]
    return LLMTrainingData(examples, len(train_rows), len(statements), request_weights, spelled)


class LLMBatches:
    """The training batches of :func:`train_llm`, drawn from one seeded generator.

    The order of the draws is part of the recipe: the same seed gives the same batches, so
    the same losses and the same model.
    """

    def __init__(self, cfg: LLMTrainConfig, data: LLMTrainingData, tokenizer, gen: torch.Generator):
        self.cfg, self.data, self.gen = cfg, data, gen
        self.pad_id = tokenizer.pad_token_id
        self.newline_id = tokenizer.encode("\n", add_special_tokens=False)[0]
        self.bounds = content_bounds(tokenizer)
        self.n_knowledge = round(cfg.batch_size * cfg.knowledge_fraction) if data.n_statements else 0
        self.pretrain_steps = int(cfg.steps * cfg.pretrain_fraction) if data.n_statements else 0

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ids, labels, attention mask) of the batch of ``step``: knowledge only while pre-training."""
        pretraining = step < self.pretrain_steps
        if self.cfg.pack_tokens:
            rows = [self.packed_row(pretraining) for _ in range(self.cfg.batch_size)]
        else:
            rows = [self.history_row(i) for i in self.example_indices(pretraining).tolist()]
        return pad_batch(rows, self.pad_id)

    def _draw(self) -> float:
        return float(torch.rand((), generator=self.gen))

    def _below(self, n: int) -> int:
        return int(torch.randint(0, n, (), generator=self.gen))

    def example_indices(self, pretraining: bool) -> torch.Tensor:
        """A batch of example indices: weighted requests, then ``n_knowledge`` knowledge statements."""
        cfg, data = self.cfg, self.data
        k = cfg.batch_size if pretraining else self.n_knowledge
        b = torch.zeros(0, dtype=torch.long)
        if k < cfg.batch_size:
            b = torch.multinomial(data.request_weights, cfg.batch_size - k, replacement=True, generator=self.gen)
        if k:
            b = torch.cat([b, data.n_requests + torch.randint(0, data.n_statements, (k,), generator=self.gen)])
        return b

    def stretched(self, example: Example, index: int) -> Example:
        """Request ``index`` as it is, phoneme-spelled or stretched, by the config's shares."""
        cfg = self.cfg
        if self.data.spelled and self._draw() < cfg.phoneme_fraction:
            twin = self.data.spelled[self._below(len(self.data.spelled))][index]
            return stretch_request(twin, self.bounds, self.pad_id, cfg.phoneme_max_copies, cfg.blank_rate, self.gen,
                                   cfg.phoneme_drop_rate)
        if cfg.stretch_fraction and self._draw() < cfg.stretch_fraction:
            return stretch_request(example, self.bounds, self.pad_id, cfg.stretch_max, cfg.blank_rate, self.gen,
                                   blank_max=cfg.blank_max)
        return example

    def packed_row(self, knowledge_only: bool) -> Example:
        """One conversation of random turns packed up to ``cfg.pack_tokens`` tokens."""
        cfg, data = self.cfg, self.data
        ids: list[int] = []
        labels: list[int] = []
        while True:
            if knowledge_only or (data.n_statements and self._draw() < cfg.knowledge_fraction):
                x, y = data.examples[data.n_requests + self._below(data.n_statements)]
            else:
                j = int(torch.multinomial(data.request_weights, 1, generator=self.gen))
                x, y = self.stretched(data.examples[j], j)
            if ids and len(ids) + 1 + len(x) > cfg.pack_tokens:
                return ids, labels
            if ids:
                ids, labels = ids + [self.newline_id], labels + [-100]
            ids, labels = ids + x, labels + y

    def history_row(self, i: int) -> Example:
        """Example ``i`` (stretched when a request), after 0..max_history random earlier turns."""
        cfg, data = self.cfg, self.data
        turns = 0
        if cfg.history_fraction and self._draw() < cfg.history_fraction:
            turns = int(torch.randint(1, cfg.max_history + 1, (), generator=self.gen))
        history = torch.randint(0, len(data.examples), (turns,), generator=self.gen).tolist()
        example = self.stretched(data.examples[i], i) if i < data.n_requests else data.examples[i]
        return with_history(data.examples, example, history, self.newline_id, cfg.score_history)


def final_scores(model, tokenizer, cfg: LLMTrainConfig) -> dict:
    """Text-mode scores of ``cfg.eval_splits``, plus valid read as phoneme spellings when the LLM learned them."""
    model.eval()
    scores = {s: evaluate_text(model, tokenizer, s, cfg.eval_limit) for s in cfg.eval_splits}
    if cfg.phoneme_fraction > 0:
        rows = domain.sentences("valid")[:cfg.eval_limit] if cfg.eval_limit else domain.sentences("valid")
        scores["valid_phonemes"] = score(rows, answer_texts(model, tokenizer, spell([r["text"] for r in rows])))
    return scores


def train_llm(out_dir: str | os.PathLike, quick: bool = False, seed: int = 0, cfg: LLMTrainConfig | None = None,
              report: ReportFn | None = None, threads: int | None = None,
              threads_now: Callable[[], int] | None = None) -> Path:
    """Train the demo tokenizer and LLM; save both to ``out_dir``; return ``out_dir``.

    ``out_dir`` then holds ``config.json``, ``model.safetensors``, ``generation_config.json``,
    the tokenizer files and ``llm_report.json`` (config, parameter count, loss curve, time and
    the exact-match scores of ``cfg.eval_splits``). ``report`` receives progress dicts
    (``{"event": "step" | "eval" | "done", ...}``), e.g. to print JSON lines. ``threads_now``, when
    given, is asked every 50 steps how many PyTorch threads to train with from then on (the demo
    build hands the LLM the teacher's core once the teacher is done); step events carry ``threads``.
    """
    cfg = cfg or (LLMTrainConfig.quick() if quick else LLMTrainConfig())
    out_dir, report = start_run(out_dir, threads, report)
    started = time.time()
    tokenizer = train_domain_tokenizer(domain_texts(), cfg.vocab_size, phonemes=cfg.phoneme_fraction > 0)
    data = llm_training_data(cfg, tokenizer)
    model = continued_llm(cfg.init_from, tokenizer) if cfg.init_from else build_llm(cfg, tokenizer, seed)
    batches = LLMBatches(cfg, data, tokenizer, torch.Generator().manual_seed(seed))

    def loss_fn(batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, labels, mask = batch
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        return loss, loss

    def evaluate() -> dict:
        res = evaluate_text(model, tokenizer, "valid", cfg.eval_limit)
        return {"valid": res["accuracy"], "per_family": res["per_family"]}

    run = run_steps(cfg, model, adamw(model.parameters(), cfg.lr, cfg.weight_decay), list(model.parameters()),
                    batches, loss_fn, report, started, evaluate, threads_now)
    scores = final_scores(model, tokenizer, cfg)
    facts = {"seed": seed, "quick": quick, "params": sum(p.numel() for p in model.parameters()),
             "train_examples": data.n_requests, "knowledge_statements": data.n_statements}
    save_trained(out_dir, model, tokenizer, "llm_report.json", cfg, run, facts, 20, scores, report,
                 {"accuracy": {s: v["accuracy"] for s, v in scores.items()}})
    return out_dir


def load_llm_report(model_dir: str | os.PathLike) -> dict:
    return load_report(model_dir, "llm_report.json")
