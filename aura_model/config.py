"""Configuration dataclasses, one per concern.

Each field carries a comment saying what it is and why it has its default;
``__post_init__`` validates and names the bad value. Every dataclass converts
to and from plain dicts (``to_dict`` / ``from_dict``) so it can live in
``aura_config.json`` and in the trainer's YAML/JSON config files.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .errors import AuraError

T = TypeVar("T", bound="ConfigBase")


class ConfigBase:
    """Base of every config dataclass (library, trainer, app): the dict round-trip to JSON/YAML."""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any] | None) -> T:
        data = dict(data or {})
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise AuraError(f"{cls.__name__}: unknown field(s) {unknown}; known: {sorted(names)}")
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in data and isinstance(data[f.name], list):
                data[f.name] = tuple(data[f.name])
        return cls(**data)


def check(cond: bool, message: str) -> None:
    """Raise AuraError(message) unless ``cond``: the one-line validation every config's __post_init__ uses."""
    if not cond:
        raise AuraError(message)


def check_layer_numbers(name: str, layers: Any) -> tuple[int, ...]:
    """A configured list of 1-based layer numbers, sorted and deduplicated; refuses anything else."""
    check(isinstance(layers, (list, tuple)) and len(layers) > 0
           and all(isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in layers),
           f"{name} must be a non-empty list of 1-based layer numbers (or null for the default), got {layers!r}")
    return tuple(sorted(set(layers)))


def check_layers_exist(name: str, layers: Any, n_layers: int) -> None:
    """Refuse a layer number above the LLM's depth, naming the valid range."""
    bad = [i for i in layers if i > n_layers]
    if bad:
        raise AuraError(f"{name} {bad}: the student LLM has {n_layers} layers (valid: 1..{n_layers})")


@dataclass
class AudioConfig(ConfigBase):
    """Audio front-end: how a file becomes the log-mel frames the embedding reads.

    Defaults are Whisper's, so the student hears exactly what a Whisper teacher hears:
    16 kHz, a 25 ms window (n_fft = 400 samples) and a 10 ms hop (160 samples),
    i.e. 100 mel frames per second.
    """

    sample_rate: int = 16000  # Hz; audio is resampled to this on load
    n_mels: int = 80  # mel bands; must equal the teacher's feature size (80 or 128 for Whisper)
    n_fft: int = 400  # STFT window in samples (25 ms at 16 kHz)
    hop_length: int = 160  # STFT hop in samples (10 ms at 16 kHz -> 100 frames/s)
    max_seconds: float = 30.0  # longer clips are refused (not split); Whisper's own window is 30 s
    silence_peak: float = 1e-4  # a clip whose absolute peak is below this is "all silent" and refused

    def __post_init__(self) -> None:
        check(self.sample_rate >= 8000, f"sample_rate must be >= 8000 Hz, got {self.sample_rate}")
        check(self.n_mels >= 8, f"n_mels must be >= 8, got {self.n_mels}")
        check(self.n_fft >= 16, f"n_fft must be >= 16, got {self.n_fft}")
        check(0 < self.hop_length <= self.n_fft, f"hop_length must be in (0, n_fft={self.n_fft}], got {self.hop_length}")
        check(self.max_seconds > 0, f"max_seconds must be > 0, got {self.max_seconds}")
        check(0 <= self.silence_peak < 1, f"silence_peak must be in [0, 1), got {self.silence_peak}")

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


@dataclass
class EmbeddingConfig(ConfigBase):
    """AudioEmbedding shape: conv stem (100 Hz -> 50 Hz), frame stacking, projection to the LLM width."""

    conv_channels: int = 256  # width of the two-layer conv stem; ~0.3M params at 80 mels
    stack: int = 4  # consecutive 50 Hz frames concatenated into one audio token (4 -> 12.5 tokens/s)
    mlp_hidden: int = 0  # 0: norm + one linear to the LLM width; > 0: a two-layer MLP with this hidden width
    dropout: float = 0.0  # dropout on the stacked frames while training
    output_norm: bool = True  # RMS-normalise each audio token, with a gain initialised to the LLM's token-embedding
    #   scale (AudioEmbedding.match_scale): audio tokens then enter the residual stream at the size the frozen
    #   layers expect; unnormalised, they grow ~100x larger and the layers cannot change them (measured)

    def __post_init__(self) -> None:
        check(self.conv_channels >= 1, f"conv_channels must be >= 1, got {self.conv_channels}")
        check(1 <= self.stack <= 16, f"stack must be in [1, 16], got {self.stack}")
        check(self.mlp_hidden >= 0, f"mlp_hidden must be >= 0, got {self.mlp_hidden}")
        check(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")


ATTENTION_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_MODULES = ("gate_proj", "up_proj", "down_proj")


@dataclass
class LoraSettings(ConfigBase):
    """The LoRA adapter the distillation trains (mapped onto peft.LoraConfig)."""

    r: int = 16  # rank of each low-rank update
    alpha: int = 32  # scaling numerator: the update is scaled by alpha / r
    dropout: float = 0.05  # dropout on the LoRA input while training
    target_modules: tuple[str, ...] = ATTENTION_MODULES  # Linear layers that get an adapter, in every decoder layer
    include_mlp: bool = False  # also adapt the MLP (gate/up/down); more capacity, ~3x the parameters
    # 1-based decoder layers that get an adapter; None = every layer. E.g. [1, 2] adapts only the
    # lower layers and leaves the upper ones exactly the base LLM's text reader.
    layers: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        check(self.r >= 1, f"LoRA r must be >= 1, got {self.r}")
        check(self.alpha > 0, f"LoRA alpha must be > 0, got {self.alpha}")
        check(0 <= self.dropout < 1, f"LoRA dropout must be in [0, 1), got {self.dropout}")
        check(len(self.target_modules) > 0, "LoRA target_modules must not be empty")
        if self.layers is not None:
            layers = check_layer_numbers("LoRA layers", self.layers)
            check(len(layers) == len(self.layers), f"LoRA layers must not repeat, got {self.layers!r}")
            self.layers = layers

    def check_layers(self, n_layers: int) -> None:
        """Refuse a layer list naming a layer the LLM does not have."""
        if self.layers is not None:
            check_layers_exist("LoRA layers", self.layers, n_layers)

    @property
    def modules(self) -> list[str]:
        mods = list(self.target_modules)
        if self.include_mlp:
            mods += [m for m in MLP_MODULES if m not in mods]
        return mods


QUANTIZATION_MODES = ("auto", "4bit", "8bit", "none")
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


@dataclass
class RuntimeConfig(ConfigBase):
    """Where and how the base LLM runs."""

    device: str = "auto"  # auto | cpu | cuda | cuda:N ; auto = first CUDA GPU if present, else CPU
    quantization: str = "auto"  # auto | 4bit | 8bit | none ; auto = 4-bit NF4 on CUDA, none on CPU
    compute_dtype: str = "auto"  # auto | float32 | bfloat16 | float16 ; auto = bf16/fp16 on CUDA, fp32 on CPU

    def __post_init__(self) -> None:
        check(bool(_DEVICE_RE.match(self.device)), f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        check(self.quantization in QUANTIZATION_MODES,
               f"quantization must be one of {QUANTIZATION_MODES}, got {self.quantization!r}")
        check(self.compute_dtype in ("auto", "float32", "bfloat16", "float16"),
               f"compute_dtype must be auto, float32, bfloat16 or float16, got {self.compute_dtype!r}")


AUDIO_ATTENTION = ("bidirectional", "causal")


@dataclass
class PromptConfig(ConfigBase):
    """How an audio turn is written into the chat template."""

    placeholder: str = "<|audio|>"  # plain text in the user turn, expanded to T placeholder ids; never a new vocab entry
    system_prompt: str = ""  # system turn; empty = none
    audio_instruction: str = ""  # text put before the placeholder in the user turn, e.g. "Answer the request:"
    # RoPE position advance per audio token (text tokens always advance by 1). A clip holds ~4-5 audio tokens per
    # word its transcript would take, so at 1 the words the LLM must relate sit 4-5x farther apart than in any text
    # it was trained on; about 1 / (audio tokens per transcript token) packs a clip into the positions its
    # transcript would fill. Fractional positions are fine for RoPE; 1 = one position per audio token.
    audio_position_step: float = 1.0
    # How the audio tokens of one clip see each other. "bidirectional": every audio token attends to the whole
    # clip, as the teacher's encoder does (Whisper hears a word with what follows it); text stays causal and the
    # clip is fully known before the LLM runs, so decoding is unchanged. "causal": the LLM's own left-to-right
    # mask, as bundles from before this setting were trained.
    audio_attention: str = "bidirectional"

    def __post_init__(self) -> None:
        check(bool(self.placeholder.strip()), "placeholder must be non-empty text")
        check(self.audio_attention in AUDIO_ATTENTION,
               f"audio_attention must be one of {', '.join(AUDIO_ATTENTION)}, got {self.audio_attention!r}")
        step = self.audio_position_step
        check(isinstance(step, (int, float)) and not isinstance(step, bool) and 0 < step <= 1,
               f"audio_position_step must be in (0, 1], got {step!r}")


@dataclass
class GenerationSettings(ConfigBase):
    """Decoding of the answer."""

    max_new_tokens: int = 128  # hard cap on the answer length in tokens
    temperature: float = 0.0  # 0 = greedy (deterministic); > 0 samples
    top_p: float = 1.0  # nucleus sampling mass when temperature > 0
    seed: int | None = None  # sampling seed; None = nondeterministic

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        check(self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}")
        check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}")


@dataclass
class PoolingConfig(ConfigBase):
    """Token-rate AuRA: each clip reaches the LLM's reading layers as about one vector per text token.

    Off (``layers`` 0): the audio span enters the LLM at the audio token rate (~4.6 vectors per text
    token), as every bundle before this setting did. On: the LLM's first ``layers`` decoder layers,
    LoRA-adapted, hear the clip alone (pass 1, distilled layer by layer from the teacher); an
    integrate-and-fire pooler turns their output into one vector per text token it counts, in the
    LLM's input space; the base LLM, adapter off, reads the request with those vectors where the
    words would be (pass 2): a text-shaped request, read the way the LLM reads text.
    """

    layers: int = 0  # lower LLM layers that hear the clip before it is pooled; 0 = off (frame-rate AuRA)
    kernel: int = 5  # audio tokens each hearing state is mixed with before pooling (odd; ~0.4 s at 12.5/s)
    hidden: int = 0  # width of the readout MLP from a pooled vector to an input vector; 0 = 4 x the LLM width
    threshold: float = 1.0  # integrate-and-fire: a vector is emitted each time the weights add up to this

    def __post_init__(self) -> None:
        check(isinstance(self.layers, int) and self.layers >= 0, f"pooling layers must be >= 0, got {self.layers!r}")
        check(isinstance(self.kernel, int) and self.kernel >= 1 and self.kernel % 2 == 1,
              f"pooling kernel must be an odd number >= 1, got {self.kernel!r}")
        check(self.hidden >= 0, f"pooling hidden must be >= 0, got {self.hidden}")
        check(self.threshold > 0, f"pooling threshold must be > 0, got {self.threshold}")

    @property
    def enabled(self) -> bool:
        return self.layers > 0


MODEL_SECTIONS = ("audio", "embedding", "lora", "prompt", "pooling")


@dataclass
class ModelConfig(ConfigBase):
    """Everything that defines an AuRA model apart from its weights (stored in aura_config.json)."""

    audio: AudioConfig = field(default_factory=AudioConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    lora: LoraSettings = field(default_factory=LoraSettings)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    pooling: PoolingConfig = field(default_factory=PoolingConfig)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in MODEL_SECTIONS}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "ModelConfig":
        data = dict(data or {})
        unknown = sorted(set(data) - set(MODEL_SECTIONS))
        if unknown:
            raise AuraError(f"ModelConfig: unknown section(s) {unknown}")
        return cls(
            audio=AudioConfig.from_dict(data.get("audio")),
            # bundles written before output_norm existed have none: read them as they were trained
            embedding=EmbeddingConfig.from_dict({"output_norm": False, **(data.get("embedding") or {})}),
            lora=LoraSettings.from_dict(data.get("lora")),
            # bundles written before audio_attention existed were trained with the causal mask
            prompt=PromptConfig.from_dict({"audio_attention": "causal", **(data.get("prompt") or {})}),
            pooling=PoolingConfig.from_dict(data.get("pooling")),  # bundles before it: off, as they were trained
        )
