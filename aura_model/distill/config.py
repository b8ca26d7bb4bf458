"""DistillConfig, the distillation objective's settings, and the layer map that pairs student with teacher layers.

Layer numbers are 1-based and index Hugging Face ``hidden_states`` directly (``hidden_states[0]`` is the
embedding output, ``hidden_states[k]`` the output of layer k). Nothing here needs torch or a model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..config import check, ConfigBase, check_layer_numbers, check_layers_exist
from ..errors import AuraError

LayerMap = list[tuple[int, int]]

# Names of the terms total_loss() combines, and the config weight of each.
LOSS_TERMS = ("layer", "kl", "ce", "state", "align", "ctc", "decode", "count", "tokens", "read", "slot_kl")
TOKEN_RATE_TERMS = ("count", "tokens", "read", "slot_kl")  # need model.pooling; state, align, ctc, decode do not mix with it


def normalise_layer_map(layer_map: Any) -> tuple[tuple[int, int], ...]:
    """Sequence of pairs (tuples or JSON lists) -> tuple of (student, teacher) int tuples.

    Checks only what needs no model: the shape of each pair and indices >= 1.
    """
    if isinstance(layer_map, (str, bytes)) or not isinstance(layer_map, Sequence):
        raise AuraError(f"layer_map must be a list of [student_layer, teacher_layer] pairs, got {layer_map!r}")
    if len(layer_map) == 0:
        raise AuraError("layer_map must not be empty; use null/None for the default map")
    pairs = []
    for pair in layer_map:
        if isinstance(pair, (str, bytes)) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise AuraError(f"layer_map entry must be a [student_layer, teacher_layer] pair, got {pair!r}")
        s, t = pair
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in (s, t)):
            raise AuraError(f"layer_map entry must hold two integers, got {pair!r}")
        if s < 1 or t < 1:
            raise AuraError(
                f"layer_map entry {pair!r}: layer indices are 1-based (0 is the embedding output), must be >= 1"
            )
        pairs.append((s, t))
    return tuple(pairs)


@dataclass
class DistillConfig(ConfigBase):
    """Distillation objective: which terms count, how much, and which layers are paired.

    Total loss = w_layer * mean_k L_layer(k) + w_kl * KL + w_ce * CE + w_state * mean_l L_state(l)
    + w_align * mean_l L_align(l) + w_ctc * CTC + w_decode * CE_decoder;
    a weight of 0 switches its term off (it is then not even computed), which is how ablations run.
    """

    w_layer: float = 1.0  # weight of the layer-wise alignment loss (mean over layer pairs)
    w_kl: float = 1.0  # weight of the response KL against the base LLM reading the transcript
    w_ce: float = 0.0  # weight of plain cross-entropy on the response tokens; off by default (KL carries more)
    # weight of the text-state loss: student vs base-LLM-reading-the-transcript hidden states on the positions
    # after the audio span (end of the user turn, assistant header, response), every layer in state_layers
    w_state: float = 0.0
    state_layers: tuple[int, ...] | None = None  # 1-based LLM layers of the text-state loss; None = every layer
    # weight of the text-alignment loss: on the audio span, the student's hidden states must hold the base LLM's
    # states of the transcript tokens, in order, one audio position per token (monotonic soft-DTW; the other
    # positions are free), at every layer in align_layers, so the upper layers read heard words as they read text
    w_align: float = 0.0
    # hidden_states indices of the text-alignment loss; None = n // 2 .. n - 1, the inputs of the upper half's layers
    align_layers: tuple[int, ...] | None = None
    align_gamma: float = 0.1  # soft-min temperature of the alignment (smaller: closer to the single best alignment)
    # weight of a CTC loss on the audio span: the student's states at hidden_states[ctc_layer] must spell the
    # transcript in the LLM's own tokens, classified by cosine against the LLM's (frozen) token embeddings, with
    # the placeholder/pad token as CTC blank: the heard words become text-like directions, in order
    w_ctc: float = 0.0
    ctc_layer: int | None = None  # hidden_states index of the CTC loss; None = the top student layer of the layer map
    # weight of the teacher-decoder term: the layer map's pair that ends at the teacher's top (output) layer has a
    # projection head; its output on the audio span is read by the Whisper teacher's own frozen decoder, which
    # must write the transcript (teacher-forced cross-entropy). The layer loss matches the teacher's states
    # direction by direction; this one weights what the teacher's decoder reads in them (the words). Needs
    # w_layer > 0 and a Whisper teacher with its decoder and tokenizer.
    w_decode: float = 0.0
    # Token-rate AuRA (model.pooling.layers > 0), where the pooled tokens stand in the transcript's place:
    w_count: float = 0.0  # weight of |sum of the pooler's fire weights - transcript tokens|: teaches it to count
    w_tokens: float = 0.0  # weight of (1 - cos) + beta * MSE of each pooled token to its transcript token's embedding
    # weight of the read loss: the base LLM reading the pooled tokens must hold, from the tokens on (the request,
    # the rest of the turn, the answer), the hidden states it holds reading the transcript, at each read layer
    w_read: float = 0.0
    read_layers: tuple[int, ...] | None = None  # 1-based LLM layers of the read loss; None = every layer
    # weight of the per-position KL on the pooled tokens: the next-token distributions the base LLM gives after
    # each pooled token, against those it gives after each transcript token (text mode is the target)
    w_slot_kl: float = 0.0
    beta: float = 1.0  # weight of the MSE inside each layer loss, next to (1 - cosine)
    kl_temperature: float = 2.0  # softens both distributions in the KL; ~2 passes on the teacher's "dark knowledge"
    # (student_layer, teacher_layer) pairs, 1-based hidden_states indices; None = default_layer_map()
    layer_map: tuple[tuple[int, int], ...] | None = None
    # An instruction that makes the base LLM say the request back, e.g. "Repeat exactly what I said.". When set,
    # every training clip is also used once with it after the audio, and the KL/CE terms then distil the base
    # LLM's echo of the transcript: word-by-word supervision of what was heard, next to the (short) answers.
    # Validation keeps the bare requests. "" = off.
    echo_prompt: str = ""
    # Start the AudioEmbedding's conv stem from the Whisper teacher's own (conv1/conv2), when the shapes fit:
    # embedding.conv_channels equal to the teacher's width and the same n_mels. A trained acoustic front-end
    # instead of a random one; the rest of the embedding and the LoRA start as usual.
    stem_from_teacher: bool = True
    # SpecAugment on the student's log-mel input during training ("noisy student"): the teacher states and base
    # answers stay those of the clean clip. 0 masks = off (the default); validation and inference never mask.
    student_freq_masks: int = 0  # mel-band masks per training clip, each 0..student_freq_width bands wide
    student_freq_width: int = 8  # widest mel-band mask, in bands
    student_time_masks: int = 0  # time masks per training clip, each 0..student_time_width of its frames long
    student_time_width: float = 0.05  # longest time mask, as a fraction of the clip's frames (at most 0.5)

    def __post_init__(self) -> None:
        for name in (f"w_{t}" for t in LOSS_TERMS):
            w = getattr(self, name)
            check(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0,
                   f"{name} must be a finite number >= 0, got {w!r}")
        check(any(getattr(self, f"w_{t}") > 0 for t in LOSS_TERMS),
              f"at least one of {', '.join('w_' + t for t in LOSS_TERMS)} must be > 0, got all zero")
        check(self.w_decode == 0 or self.w_layer > 0,
               "w_decode reads the layer-wise term's projection head: it needs w_layer > 0")
        check(self.ctc_layer is None or (isinstance(self.ctc_layer, int) and self.ctc_layer >= 0),
               f"ctc_layer must be a hidden_states index >= 0 (or null), got {self.ctc_layer!r}")
        for name in ("state_layers", "align_layers", "read_layers"):
            if getattr(self, name) is not None:
                setattr(self, name, check_layer_numbers(name, getattr(self, name)))
        check(isinstance(self.align_gamma, (int, float)) and self.align_gamma > 0,
               f"align_gamma must be > 0, got {self.align_gamma!r}")
        check(isinstance(self.beta, (int, float)) and math.isfinite(self.beta) and self.beta >= 0,
               f"beta must be a finite number >= 0, got {self.beta!r}")
        check(isinstance(self.kl_temperature, (int, float)) and math.isfinite(self.kl_temperature)
               and self.kl_temperature > 0,
               f"kl_temperature must be > 0, got {self.kl_temperature!r}")
        check(isinstance(self.echo_prompt, str), f"echo_prompt must be a string, got {self.echo_prompt!r}")
        check(not self.echo_prompt or self.w_kl > 0 or self.w_ce > 0 or self.w_state > 0,
               "echo_prompt needs a response term (w_kl, w_ce or w_state > 0): the echo is distilled as a response")
        for name in ("student_freq_masks", "student_freq_width", "student_time_masks"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"{name} must be an integer >= 0, got {v!r}")
        check(isinstance(self.student_time_width, (int, float)) and 0 <= self.student_time_width <= 0.5,
               f"student_time_width must be a fraction in [0, 0.5], got {self.student_time_width!r}")
        if self.layer_map is not None:
            # Accepts JSON's list of lists as well as tuples; stored as a tuple of tuples.
            self.layer_map = normalise_layer_map(self.layer_map)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        if self.layer_map is not None:
            out["layer_map"] = [list(pair) for pair in self.layer_map]  # plain JSON: list of lists
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "DistillConfig":
        # The base class turns top-level lists into tuples; __post_init__ then normalises
        # the inner [s, t] lists, so a JSON layer_map round-trips.
        return super().from_dict(data)

    def weight(self, term: str) -> float:
        """Config weight of one of LOSS_TERMS."""
        if term not in LOSS_TERMS:
            raise ValueError(f"unknown loss term {term!r}; known: {LOSS_TERMS}")
        return float(getattr(self, f"w_{term}"))

    @property
    def token_rate(self) -> bool:
        """Whether a term of token-rate AuRA is on."""
        return any(self.weight(t) > 0 for t in TOKEN_RATE_TERMS)

    @property
    def needs_response(self) -> bool:
        """Whether a term reads the base LLM's answer or its transcript prompt (built together with the answer)."""
        return (self.w_kl > 0 or self.w_ce > 0 or self.w_state > 0 or self.w_align > 0 or self.w_ctc > 0
                or self.token_rate)

    @property
    def needs_base(self) -> bool:
        """Whether training runs the base LLM on the transcript each step (KL, text states, text alignment)."""
        return self.w_kl > 0 or self.w_state > 0 or self.w_align > 0 or self.token_rate

    def resolve_read_layers(self, n_student_layers: int) -> list[int]:
        """The LLM layers the read loss compares: the configured ones (checked), else all of them."""
        return _resolve_layers("read_layers", self.read_layers, range(1, n_student_layers + 1), n_student_layers)

    def resolve_state_layers(self, n_student_layers: int) -> list[int]:
        """The LLM layers the text-state loss compares: the configured ones (checked), else all of them."""
        return _resolve_layers("state_layers", self.state_layers, range(1, n_student_layers + 1), n_student_layers)

    def resolve_align_layers(self, n_student_layers: int) -> list[int]:
        """The hidden_states the text-alignment loss compares: the configured ones (checked), else the inputs
        of the upper half's layers, n // 2 .. n - 1 (at least layer 1)."""
        default = range(max(1, n_student_layers // 2), max(2, n_student_layers))
        return _resolve_layers("align_layers", self.align_layers, default, n_student_layers)

    @property
    def needs_transcript(self) -> bool:
        """Whether a term reads each clip's transcript (the response terms, and the teacher-decoder term)."""
        return self.needs_response or self.w_decode > 0

    def resolve_decode_pair(self, layer_map: LayerMap, n_teacher_layers: int) -> int:
        """Index in ``layer_map`` of the pair the teacher-decoder term reads: the one paired with the teacher's
        top layer (what its decoder attends to), the highest student layer if several are."""
        top = [i for i, (_, t) in enumerate(layer_map) if t == n_teacher_layers]
        if not top:
            raise AuraError(f"w_decode: the teacher's decoder reads its top layer ({n_teacher_layers}), but no pair of "
                            f"the layer map {[list(p) for p in layer_map]} ends there; add one, e.g. "
                            f"[{max(s for s, _ in layer_map)}, {n_teacher_layers}]")
        return max(top, key=lambda i: layer_map[i][0])

    def resolve_ctc_layer(self, n_student_layers: int, layer_map: LayerMap) -> int:
        """The hidden_states index the CTC term spells from: the configured one (checked), else the top
        student layer of ``layer_map`` (without a map, n // 2, at least 1)."""
        if self.ctc_layer is None:
            return max([s for s, _ in layer_map] or [max(1, n_student_layers // 2)])
        if self.ctc_layer > n_student_layers:
            raise AuraError(f"ctc_layer {self.ctc_layer}: the student LLM has {n_student_layers} layers "
                            f"(valid: 0..{n_student_layers})")
        return self.ctc_layer

    def resolve_layer_map(self, n_student_layers: int, n_teacher_layers: int) -> LayerMap:
        """The map training uses: the configured one verbatim (after validation), else the default."""
        if self.layer_map is None:
            return default_layer_map(n_student_layers, n_teacher_layers)
        return validate_layer_map(self.layer_map, n_student_layers, n_teacher_layers)


def _resolve_layers(name: str, configured, default, n_layers: int) -> list[int]:
    if configured is None:
        return list(default)
    check_layers_exist(name, configured, n_layers)
    return list(configured)


# ----------------------------------------------------------------------- layer map


def default_layer_map(n_student_layers: int, n_teacher_layers: int) -> LayerMap:
    """Pair the first K student layers with K teacher layers, monotonically and evenly.

    K = min(n_teacher, n_student // 2), at least 1: the lower half of the LLM learns to
    hear, the upper half keeps reasoning. Student layer k (1..K) is paired with teacher
    layer t_k = round(k * n_teacher / K), rounded half up, so the last pair ends at the
    teacher's top layer. Because n_teacher / K >= 1, the t_k are strictly increasing
    and lie in 1..n_teacher.

    Examples: (8, 4) -> [(1,1),(2,2),(3,3),(4,4)]; (4, 6) -> [(1,3),(2,6)].
    """
    for name, n in (("n_student_layers", n_student_layers), ("n_teacher_layers", n_teacher_layers)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise AuraError(f"{name} must be an integer >= 1, got {n!r}")
    k_pairs = max(1, min(n_teacher_layers, n_student_layers // 2))
    # Integer form of floor(k * n / K + 1/2): exact, no float or banker's rounding.
    return [(k, (2 * k * n_teacher_layers + k_pairs) // (2 * k_pairs)) for k in range(1, k_pairs + 1)]


def validate_layer_map(layer_map: Any, n_student_layers: int, n_teacher_layers: int) -> LayerMap:
    """Check a configured map against the two models; return it as a list of int pairs.

    Student indices must lie in 1..n_student_layers, teacher indices in 1..n_teacher_layers
    (1-based hidden_states indices), and no pair may repeat. The order is kept verbatim.
    """
    pairs = normalise_layer_map(layer_map)
    seen: set[tuple[int, int]] = set()
    for s, t in pairs:
        if s > n_student_layers:
            raise AuraError(
                f"layer_map pair ({s}, {t}): student layer {s} is out of range, "
                f"the student LLM has {n_student_layers} layers (valid: 1..{n_student_layers})"
            )
        if t > n_teacher_layers:
            raise AuraError(
                f"layer_map pair ({s}, {t}): teacher layer {t} is out of range, "
                f"the teacher encoder has {n_teacher_layers} layers (valid: 1..{n_teacher_layers})"
            )
        if (s, t) in seen:
            raise AuraError(f"layer_map pair ({s}, {t}) appears more than once")
        seen.add((s, t))
    return list(pairs)
