"""The teacher: an ASR encoder whose layer states the student learns to reproduce.

Supported teachers:

* **Whisper** (``WhisperModel`` or ``WhisperForConditionalGeneration``). Input: log-mel of the
  clip zero-padded to exactly ``2 * max_source_positions`` frames (30 s for real checkpoints;
  the encoder refuses anything else). The features are computed with ``audio.log_mel`` on the
  zero-padded waveform, which is the recipe of ``WhisperFeatureExtractor(padding="max_length")``
  (tested against it); sample rate, n_fft and hop come from the teacher's
  ``preprocessor_config.json`` when it has one. Encoder frames are 50 Hz (stride-2 conv over
  100 Hz mel), the same rate as the student's conv stem, and the clip's own frames are the
  first ``ceil(F / 2)``. With its decoder and a tokenizer it also transcribes (greedy).
* **Any other ``AutoModel`` audio encoder** that returns ``hidden_states`` (wav2vec2, HuBERT,
  WavLM, data2vec-audio, ...), fed by its own feature extractor one clip at a time (no padding,
  so models without an attention mask see exactly the clip). Their frame rate is not exactly
  50 Hz (wav2vec2: one frame per 320 samples, minus the conv edges, ~49.9 Hz), so each layer's
  sequence is linearly interpolated in time to the student's 50 Hz frame count before pooling.

Either way a clip's states end up as ``(T, D)`` per mapped teacher layer, with T the student's
number of audio tokens for that clip: aligned to the student's 50 Hz conv frames, then averaged
over groups of ``stack`` frames (``distill.pool_time``).

Only :func:`inspect_teacher` runs before the cache is consulted, and it reads configs, never
weights: the weights are loaded only when some clip still needs the teacher.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import audio as audio_io
from ..config import AudioConfig
from ..distill import pool_time
from ..embedding import STEM_PARAMS, conv_frames
from ..errors import AuraError

AUDIO_INPUTS = ("input_values", "input_features")
SAMPLE_BYTES = 1 << 20  # bytes hashed from the start, middle and end of each weights file


@dataclass
class TeacherInfo:
    """What the trainer needs to know about a teacher before (or without) loading its weights."""

    ref: str
    model_type: str
    num_layers: int  # encoder layers: valid teacher indices in a layer map are 1..num_layers
    width: int  # hidden size of the encoder states
    is_whisper: bool
    fingerprint: str  # identity of config + weights (cache keys)
    sample_rate: int  # the rate the teacher's feature extractor expects
    features: dict[str, Any] = field(default_factory=dict)  # Whisper: n_mels, n_fft, hop_length, frames
    window_samples: int | None = None  # longest clip the teacher takes (Whisper's padded window), None = any
    transcriber: str = ""  # "" = cannot transcribe, else why it can ("whisper")
    tokenizer: Any = None  # for transcription
    config: Any = None

    @property
    def can_transcribe(self) -> bool:
        return bool(self.transcriber) and self.tokenizer is not None

    def describe_features(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, **self.features}


# ------------------------------------------------------------------ identity
def _local_folder(ref: str) -> Path | None:
    p = Path(ref)
    if p.is_dir():
        return p
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(ref, "config.json")
        if isinstance(found, str):
            return Path(found).parent
    except Exception:
        pass
    return None


def _sample_hash(path: Path) -> str:
    """sha256 of the size and three 1 MiB windows of a (possibly huge) weights file: cheap, and any retraining shows."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        for offset in sorted({0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)}):
            f.seek(offset)
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def model_fingerprint(ref: str, config) -> str:
    """Identity of a model for cache keys: its config and a sampled hash of its weight files."""
    cfg = {k: v for k, v in config.to_dict().items() if k not in ("_name_or_path", "transformers_version")}
    parts: list[Any] = [json.dumps(cfg, sort_keys=True, default=str)]
    folder = _local_folder(ref)
    if folder is not None:
        for p in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
            parts.append([p.name, _sample_hash(p)])
    else:
        parts.append(["hub", ref])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def whisper_stem(info: TeacherInfo) -> dict[str, torch.Tensor] | None:
    """The Whisper teacher's conv stem (``conv1``/``conv2`` weights and biases), read from its safetensors files
    without building the model; None for another teacher or when its weights are not on disk."""
    if not info.is_whisper:
        return None
    folder = _local_folder(info.ref)
    if folder is None:
        return None
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                for name in STEM_PARAMS:
                    if key.endswith("encoder." + name):
                        found[name] = f.get_tensor(key)
    return found if len(found) == len(STEM_PARAMS) else None


# ------------------------------------------------------------------ inspection (no weights)
def _load_config(ref: str, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        hint = "" if Path(ref).exists() else " (not a local folder; as a hub id it needs the network or the Hugging Face cache)"
        raise AuraError(f"cannot load teacher {ref!r}{hint}: {first}") from exc


def _model_class(config):
    try:
        from transformers.models.auto.modeling_auto import MODEL_MAPPING

        return MODEL_MAPPING[type(config)]
    except (KeyError, ImportError, ValueError):
        return None


def _feature_settings(ref: str, config) -> tuple[int, dict[str, Any]]:
    """(sample_rate, {n_mels, n_fft, hop_length, frames}) of a Whisper teacher."""
    sr, n_fft, hop = 16000, 400, 160
    try:
        from transformers import WhisperFeatureExtractor

        fe = WhisperFeatureExtractor.from_pretrained(ref)
        sr, n_fft, hop = int(fe.sampling_rate), int(fe.n_fft), int(fe.hop_length)
    except Exception:  # no preprocessor_config.json: Whisper's fixed recipe
        pass
    frames = 2 * int(config.max_source_positions)
    return sr, {"n_mels": int(config.num_mel_bins), "n_fft": n_fft, "hop_length": hop, "frames": frames}


def inspect_teacher(ref: str, trust_remote_code: bool = False, want_transcriber: bool = True) -> TeacherInfo:
    """Check that ``ref`` is an audio encoder and read what the trainer needs, from its config alone."""
    if not ref:
        raise AuraError("no teacher given (--teacher)")
    config = _load_config(ref, trust_remote_code)
    model_type = getattr(config, "model_type", type(config).__name__)
    fp = model_fingerprint(ref, config)
    if model_type == "whisper":
        sr, feats = _feature_settings(ref, config)
        info = TeacherInfo(ref, model_type, int(config.encoder_layers), int(config.d_model), True, fp, sr, feats,
                           window_samples=feats["frames"] * feats["hop_length"], config=config)
        archs = getattr(config, "architectures", None) or []
        if want_transcriber and "WhisperForConditionalGeneration" in archs:
            info.transcriber = "whisper"
            info.tokenizer = _try_tokenizer(ref, trust_remote_code)
        return info
    cls = _model_class(config)
    main_input = getattr(cls, "main_input_name", None) if cls is not None else None
    if cls is not None and main_input not in AUDIO_INPUTS:
        raise AuraError(
            f"teacher {ref!r} is a {model_type!r} model whose input is {main_input!r}, not audio: the teacher must be "
            "an audio encoder (Whisper, wav2vec2, HuBERT, WavLM, ...) that returns hidden_states"
        )
    if getattr(config, "is_encoder_decoder", False):
        layers = getattr(config, "encoder_layers", None)
    else:
        layers = getattr(config, "num_hidden_layers", None)
    width = getattr(config, "hidden_size", None) or getattr(config, "d_model", None)
    if not layers or not width:
        raise AuraError(f"teacher {ref!r} ({model_type}) does not say how many encoder layers it has or how wide "
                        "they are (num_hidden_layers / hidden_size); it is not an encoder the trainer can distill")
    sr = 16000
    try:
        from transformers import AutoFeatureExtractor

        sr = int(getattr(AutoFeatureExtractor.from_pretrained(ref, trust_remote_code=trust_remote_code),
                         "sampling_rate", sr))
    except Exception:
        pass
    return TeacherInfo(ref, model_type, int(layers), int(width), False, fp, sr, config=config)


def _try_tokenizer(ref: str, trust_remote_code: bool):
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(ref, trust_remote_code=trust_remote_code)
    except Exception:
        return None


# ------------------------------------------------------------------ alignment
def student_conv_frames(num_samples: int, cfg: AudioConfig) -> int:
    """The student's 50 Hz conv-stem frames for a clip: ceil(num_frames / 2)."""
    return int(conv_frames(audio_io.num_frames(num_samples, cfg)))


def align_and_pool(states: torch.Tensor, n_frames: int, stack: int) -> torch.Tensor:
    """(V, D) teacher frames -> (ceil(n_frames / stack), D): time-interpolated to n_frames if V differs, then pooled."""
    x = states.float()
    if x.shape[0] != n_frames:
        # (V, D) -> (1, D, V) -> linear interpolation in time -> (n_frames, D)
        x = F.interpolate(x.T.unsqueeze(0), size=n_frames, mode="linear", align_corners=False)[0].T
    mask = torch.ones(1, n_frames, dtype=torch.bool, device=x.device)
    pooled, _ = pool_time(x.unsqueeze(0), mask, stack)
    return pooled[0]


# ------------------------------------------------------------------ the loaded teacher
def resolve_teacher_dtype(name: str, device: torch.device) -> torch.dtype:
    if name != "auto":
        return getattr(torch, name)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


class Teacher:
    """A loaded, frozen teacher: hidden states of clips, and transcripts when it can write them."""

    def __init__(self, info: TeacherInfo, model: torch.nn.Module, device: torch.device, dtype: torch.dtype,
                 feature_extractor: Any = None):
        self.info = info
        self.model = model
        self.device = device
        self.dtype = dtype
        self.feature_extractor = feature_extractor

    @classmethod
    def load(cls, info: TeacherInfo, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
        import transformers

        kwargs = dict(dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True)
        fe = None
        try:
            if info.is_whisper:
                archs = getattr(info.config, "architectures", None) or []
                klass = (transformers.WhisperForConditionalGeneration if "WhisperForConditionalGeneration" in archs
                         else transformers.WhisperModel)
                model = klass.from_pretrained(info.ref, **kwargs)
            else:
                model = transformers.AutoModel.from_pretrained(info.ref, **kwargs)
                fe = transformers.AutoFeatureExtractor.from_pretrained(info.ref, trust_remote_code=trust_remote_code)
        except AuraError:
            raise
        except Exception as exc:
            raise AuraError(f"cannot load teacher {info.ref!r}: {load_problem(exc)}") from exc
        model.to(device).eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return cls(info, model, device, dtype, fe)

    # ---------------------------------------------------------------- encoder
    def _encoder(self):
        m = self.model
        if self.info.is_whisper or getattr(getattr(m, "config", None), "is_encoder_decoder", False):
            return m.get_encoder() if hasattr(m, "get_encoder") else m.encoder
        return m

    def _whisper_features(self, waves: list[np.ndarray]) -> torch.Tensor:
        """Log-mel of each clip zero-padded to the encoder's window: (B, n_mels, 2 * max_source_positions)."""
        f = self.info.features
        window = int(self.info.window_samples)
        batch = torch.zeros(len(waves), window, dtype=torch.float32)
        for i, w in enumerate(waves):
            if len(w) > window:
                raise ValueError(f"clip of {len(w)} samples is longer than the teacher window of {window}")
            batch[i, : len(w)] = torch.from_numpy(np.asarray(w, dtype=np.float32))
        cfg = AudioConfig(sample_rate=self.info.sample_rate, n_mels=f["n_mels"], n_fft=f["n_fft"],
                          hop_length=f["hop_length"], max_seconds=window / self.info.sample_rate + 1)
        feats, _ = audio_io.log_mel(batch, None, cfg)  # the padded window is "the clip", as in the extractor
        return feats

    def _teacher_rate(self, waves: list[np.ndarray], sample_rate: int) -> list[np.ndarray]:
        return [audio_io.resample(w, sample_rate, self.info.sample_rate) for w in waves]

    def _checked_states(self, out) -> tuple[torch.Tensor, ...]:
        states = getattr(out, "hidden_states", None)
        if states is None and isinstance(out, dict):
            states = out.get("hidden_states")
        if states is None:
            raise AuraError(
                f"teacher {self.info.ref!r} returned no hidden_states (its outputs: "
                f"{type(out).__name__}); the teacher must be an encoder that supports output_hidden_states=True"
            )
        if len(states) != self.info.num_layers + 1:
            raise AuraError(f"teacher {self.info.ref!r} returned {len(states)} hidden states, expected "
                            f"{self.info.num_layers + 1} (embeddings + {self.info.num_layers} layers)")
        return tuple(states)

    @torch.no_grad()
    def encode(self, waves: list[np.ndarray], sample_rate: int, layers: list[int]) -> list[dict[int, torch.Tensor]]:
        """Per clip: teacher layer -> (V, D) float32 states of the clip's own frames (padding cut off)."""
        waves_t = self._teacher_rate(waves, sample_rate)
        encoder = self._encoder()
        results: list[dict[int, torch.Tensor]] = []
        if self.info.is_whisper:
            feats = self._whisper_features(waves_t).to(self.device, self.dtype)
            states = self._checked_states(encoder(input_features=feats, output_hidden_states=True))
            f = self.info.features
            cfg = AudioConfig(sample_rate=self.info.sample_rate, n_fft=f["n_fft"], hop_length=f["hop_length"])
            for b, w in enumerate(waves_t):
                valid = int(conv_frames(audio_io.num_frames(len(w), cfg)))
                results.append({t: states[t][b, :valid].float().cpu() for t in layers})
            return results
        for w in waves_t:  # one clip at a time: no padding for models without attention masks
            inputs = self.feature_extractor(w, sampling_rate=self.info.sample_rate, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items() if isinstance(v, torch.Tensor)}
            for k in AUDIO_INPUTS:
                if k in inputs:
                    inputs[k] = inputs[k].to(self.dtype)
            states = self._checked_states(encoder(**inputs, output_hidden_states=True))
            results.append({t: states[t][0].float().cpu() for t in layers})
        return results

    # ---------------------------------------------------------------- transcription
    @torch.no_grad()
    def transcribe(self, waves: list[np.ndarray], sample_rate: int, max_tokens: int, language: str = "") -> list[str]:
        """Greedy Whisper transcripts of clips (the model's generate, so real checkpoints get their prompt tokens)."""
        if not self.info.can_transcribe:
            raise AuraError(f"teacher {self.info.ref!r} cannot transcribe")
        from transformers.utils import logging as hf_logging

        feats = self._whisper_features(self._teacher_rate(waves, sample_rate)).to(self.device, self.dtype)
        gen = copy.deepcopy(self.model.generation_config)
        room = int(getattr(self.model.config, "max_target_positions", 448)) - 8  # prompt tokens need room too
        gen.max_new_tokens = max(1, min(max_tokens, room))
        gen.max_length = None
        gen.do_sample = False
        gen.num_beams = 1
        kwargs: dict[str, Any] = {}
        if getattr(gen, "task_to_id", None):
            kwargs["task"] = "transcribe"
        if language and getattr(gen, "lang_to_id", None):
            kwargs["language"] = language
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # generate() warns about defaults we set on purpose
        try:
            ids = self.model.generate(input_features=feats, generation_config=gen, **kwargs)
        finally:
            hf_logging.set_verbosity(verbosity)
        if not isinstance(ids, torch.Tensor):
            ids = ids.sequences
        return [" ".join(t.split()) for t in self.info.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def release(self) -> None:
        """Drop the weights (the trainer never holds teacher and student at once)."""
        self.model = None  # type: ignore[assignment]
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# ------------------------------------------------------------------ the decoder term (distill.w_decode)
class DecoderTargets:
    """Transcript -> the Whisper teacher's decoder ids, from its start token(s) to its end token, at most
    ``max_target_positions`` long. A plain picklable callable (DataLoader workers build batches with it).

    The tokenizer's own special tokens come first when it adds them (a stock Whisper tokenizer writes
    ``<|startoftranscript|>...<|notimestamps|>``); the decoder start and end-of-text ids are added when missing.
    An empty transcript gives no ids (the term skips that clip).
    """

    def __init__(self, tokenizer, start_id: int, eos_id: int, max_len: int) -> None:
        self.tokenizer = tokenizer
        self.start_id, self.eos_id, self.max_len = int(start_id), int(eos_id), int(max_len)

    def __call__(self, text: str) -> list[int]:
        if not text.strip():
            return []  # nothing to write: the row does not count
        ids = list(self.tokenizer.encode(text, add_special_tokens=True))
        if not ids or ids[0] != self.start_id:
            ids = [self.start_id] + ids
        if ids[-1] != self.eos_id:
            ids = ids + [self.eos_id]
        if len(ids) > self.max_len:
            ids = ids[: self.max_len - 1] + [self.eos_id]
        return ids


def check_decoder_teacher(info: TeacherInfo) -> None:
    """The decoder term needs a Whisper teacher with its decoder and a tokenizer."""
    if not info.can_transcribe:
        raise AuraError(f"distill.w_decode reads the teacher's own decoder, but teacher {info.ref!r} ({info.model_type}) "
                        "has none the trainer can use: it needs a WhisperForConditionalGeneration with its tokenizer")


def load_problem(exc: Exception) -> str:
    """The first line of a loading error; a teacher with only pickle weights is told what to do."""
    text = str(exc).strip()
    if "safetensors" in text.lower():
        return ("it has no safetensors weights; pickle files (.bin, .pt) are never loaded, as they can run code: "
                "use a copy saved with save_pretrained(safe_serialization=True)")
    return (text.splitlines() or [type(exc).__name__])[0]


def load_decoder(info: TeacherInfo, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False):
    """(decoder, proj_out, pad_id, DecoderTargets) of a Whisper teacher, frozen, on ``device``; the encoder is dropped."""
    check_decoder_teacher(info)
    import transformers

    try:
        model = transformers.WhisperForConditionalGeneration.from_pretrained(
            info.ref, dtype=dtype, trust_remote_code=trust_remote_code, use_safetensors=True)
    except Exception as exc:
        raise AuraError(f"cannot load the decoder of teacher {info.ref!r}: {load_problem(exc)}") from exc
    cfg = model.config
    decoder, proj_out = model.model.decoder, model.proj_out
    del model  # the encoder goes with it
    decoder.to(device).eval()
    proj_out.to(device).eval()
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else cfg.eos_token_id
    targets = DecoderTargets(info.tokenizer, cfg.decoder_start_token_id, cfg.eos_token_id,
                             int(cfg.max_target_positions))
    return decoder, proj_out, int(pad), targets
