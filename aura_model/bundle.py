"""The adapter bundle: the one place weights touch the disk (safetensors only, never pickle).

Layout (docs/DESIGN.md, "The bundle")::

    bundle/
      aura_config.json             format version, base LLM id + fingerprint, teacher, audio/embedding/prompt config, training summary
      adapter_model.safetensors    the LoRA, in PEFT's own format
      adapter_config.json
      audio_embedding.safetensors
      tokenizer/                   the tokenizer (with its chat template) the adapter was trained with
      base/                        optional: the base LLM itself (the demo bundle carries it)
      teacher/                     optional: the teacher ASR model
      README.md                    optional model card
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from . import backends, lora
from .config import ModelConfig, RuntimeConfig
from .embedding import AudioEmbedding
from .errors import AuraError
from .model import AuraModel
from .pooling import TokenPooler

FORMAT_VERSION = 1
CONFIG_NAME = "aura_config.json"
EMBEDDING_NAME = "audio_embedding.safetensors"
ADAPTER_NAME = "adapter_model.safetensors"
POOLER_NAME = "audio_pooler.safetensors"  # token-rate bundles only (model.pooling.layers > 0)
CHECKSUMS_KEY = "checksums"  # aura_config.json: sha256 of every .safetensors file, written at save
FINGERPRINT_KEYS = ("model_type", "hidden_size", "num_hidden_layers", "vocab_size")
WEIGHT_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")


# ---------------------------------------------------------------------- fingerprints
def fingerprint(llm_config) -> dict[str, Any]:
    """What must match between a bundle and the base LLM it is loaded onto."""
    text_config = llm_config.get_text_config() if hasattr(llm_config, "get_text_config") else llm_config
    return {k: getattr(text_config, k, None) for k in FINGERPRINT_KEYS}


def check_fingerprint(expected: dict[str, Any], actual: dict[str, Any], bundle_base: str, actual_base: str) -> None:
    diffs = [f"{k} {expected.get(k)} vs {actual.get(k)}" for k in FINGERPRINT_KEYS if expected.get(k) != actual.get(k)]
    if diffs:
        raise AuraError(
            f"the adapter was made for base model {bundle_base!r} but {actual_base!r} differs ({', '.join(diffs)}); "
            "use the base model the bundle was trained on"
        )


# ---------------------------------------------------------------------- base model
def _hf_error(what: str, ref: str, exc: Exception) -> AuraError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    hint = "" if Path(ref).exists() else " (not a local folder; as a hub id it needs the network or the Hugging Face cache)"
    return AuraError(f"cannot load {what} {ref!r}{hint}: {first}")


def load_llm_config(ref: str | Path, trust_remote_code: bool = False):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(ref), trust_remote_code=trust_remote_code)
    except Exception as exc:  # OSError, ValueError, EnvironmentError from the hub client
        raise _hf_error("base model", str(ref), exc) from exc


def load_tokenizer(ref: str | Path, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(ref), trust_remote_code=trust_remote_code)
    except Exception as exc:
        raise _hf_error("tokenizer", str(ref), exc) from exc


def load_llm(ref: str | Path, resolved: backends.Resolved, trust_remote_code: bool = False):
    """A frozen causal LM from a hub id or a local folder, on the resolved device, quantized as resolved."""
    from transformers import AutoModelForCausalLM

    quant = backends.quantization_config(resolved)
    kwargs: dict[str, Any] = dict(dtype=resolved.dtype, use_safetensors=True, trust_remote_code=trust_remote_code)
    if quant is not None:
        kwargs["quantization_config"] = quant
        kwargs["device_map"] = {"": str(resolved.device)}
    try:
        llm = AutoModelForCausalLM.from_pretrained(str(ref), **kwargs)
    except Exception as exc:
        raise _hf_error("base model", str(ref), exc) from exc
    if quant is None:
        llm.to(resolved.device)
    llm.eval()
    for p in llm.parameters():
        p.requires_grad_(False)
    return llm


# ---------------------------------------------------------------------- bundle metadata
def read_bundle_config(bundle_dir: str | Path) -> dict[str, Any]:
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise AuraError(f"bundle {str(bundle_dir)!r} does not exist or is not a folder")
    path = bundle_dir / CONFIG_NAME
    if not path.is_file():
        raise AuraError(f"{str(bundle_dir)!r} is not an AuRA bundle: {CONFIG_NAME} is missing")
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise AuraError(f"{path} is unreadable: {exc}") from exc
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise AuraError(f"{path} has format_version {version!r}; this version of AuRA reads format {FORMAT_VERSION}")
    for key in ("base", "model"):
        if not isinstance(meta.get(key), dict):
            raise AuraError(f"{path} lacks the {key!r} section")
    recorded = meta["base"].get("fingerprint")
    missing = [k for k in FINGERPRINT_KEYS if not isinstance(recorded, dict) or k not in recorded]
    if missing:
        raise AuraError(f"{path}: the base model's fingerprint lacks {', '.join(missing)}; "
                        "the bundle cannot be checked against its base model (re-save it with `aura train`)")
    if not isinstance(meta["base"].get("id"), str) or not meta["base"]["id"]:
        raise AuraError(f"{path}: base.id (the base model the adapter was trained on) is missing")
    return meta


def bundle_base_ref(bundle_dir: Path, meta: dict[str, Any]) -> str:
    """The base LLM a bundle names: its own copy under base/ if it carries one, else the recorded id/path.

    A relative path is read against the bundle, never against the current folder (a folder that
    happens to be called like the id where the command runs must not be loaded instead); what does
    not exist there is a hub id.
    """
    if (bundle_dir / "base" / "config.json").is_file():
        return str(bundle_dir / "base")
    ref = str(meta["base"]["id"])
    if Path(ref).is_absolute():
        return ref
    beside = bundle_dir / ref
    return str(beside) if beside.exists() else ref


# ---------------------------------------------------------------------- validation
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weight_checksums(bundle_dir: Path) -> dict[str, str]:
    """sha256 of every .safetensors file in the bundle, keyed by its path inside the bundle."""
    return {str(p.relative_to(bundle_dir)): file_sha256(p) for p in sorted(bundle_dir.rglob("*.safetensors"))}


def check_checksums(bundle_dir: Path, meta: dict[str, Any], names: list[str] | None = None) -> None:
    """Refuse a weight file whose bytes changed since the bundle was saved (bundles without checksums pass)."""
    recorded = meta.get(CHECKSUMS_KEY) or {}
    for name in (names if names is not None else sorted(recorded)):
        if name not in recorded or not (bundle_dir / name).is_file():
            continue
        if file_sha256(bundle_dir / name) != recorded[name]:
            raise AuraError(f"{bundle_dir / name} is corrupt: its contents changed since the bundle was saved "
                            "(checksum mismatch); copy the bundle again or retrain it")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, refused with the file's name when unreadable or not all finite."""
    try:
        state = load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError: a truncated or overwritten file
        raise AuraError(f"{path} is unreadable (not a valid safetensors file: {str(exc).splitlines()[0]})") from exc
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise AuraError(f"{path} is broken: tensor {name} holds {bad} NaN/infinite values; "
                            "these weights would give empty or wrong answers (retrain or copy the bundle again)")
    return state


def links_leaving(bundle_dir: Path) -> list[str]:
    """Files or folders inside the bundle that are links to places outside it."""
    root = bundle_dir.resolve()
    out = []
    for p in sorted(bundle_dir.rglob("*")):
        if p.is_symlink() and root not in p.resolve().parents and p.resolve() != root:
            out.append(f"{p.relative_to(bundle_dir)} -> {p.resolve()}")
    return out


def check_bundle_files(bundle_dir: Path, meta: dict[str, Any]) -> dict[str, dict[str, torch.Tensor]]:
    """The adapter and embedding files exist, match their checksums, read, and hold finite numbers.

    Returns their tensors (file name -> state dict). Cheap: these are the small trained files.
    """
    states = {}
    names = trained_files(meta)
    for name in names:
        if not (bundle_dir / name).is_file():
            raise AuraError(f"bundle {str(bundle_dir)!r} lacks {name}")
    if not (bundle_dir / "adapter_config.json").is_file():
        raise AuraError(f"bundle {str(bundle_dir)!r} lacks adapter_config.json (the LoRA's settings)")
    check_checksums(bundle_dir, meta, names)
    for name in names:
        states[name] = read_weights(bundle_dir / name)
    return states


def trained_files(meta: dict[str, Any]) -> list[str]:
    """The weight files training wrote: the LoRA, the AudioEmbedding and, for token-rate AuRA, the pooler."""
    pooled = ModelConfig.from_dict(meta["model"]).pooling.enabled
    return [ADAPTER_NAME, EMBEDDING_NAME] + ([POOLER_NAME] if pooled else [])


def check_embedding_shape(bundle_dir: Path, meta: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """The embedding's weights fit the bundle's config and the base LLM's width (without loading the LLM)."""
    cfg = ModelConfig.from_dict(meta["model"])
    d_model = int(meta["base"]["fingerprint"]["hidden_size"])
    try:
        AudioEmbedding(cfg.audio.n_mels, d_model, cfg.embedding).load_state_dict(state, strict=True)
    except Exception as exc:
        raise AuraError(f"{bundle_dir / EMBEDDING_NAME} does not fit the bundle's config (n_mels {cfg.audio.n_mels}, "
                        f"d_model {d_model}): {str(exc).splitlines()[0]}") from exc


def validate_bundle(bundle_dir: str | Path, base: str | None = None, trust_remote_code: bool = False) -> dict[str, Any]:
    """Everything loading checks, without loading the LLM: what `aura info` runs. Returns aura_config.json.

    The config and its fingerprint, the base model's config against that fingerprint, the adapter and
    embedding files (present, checksums, readable, finite, shapes) and, unlike loading, the
    checksums of every other weight file the bundle carries. Raises AuraError naming what is wrong.
    """
    bundle_dir = Path(bundle_dir)
    meta = read_bundle_config(bundle_dir)
    base_ref = base or bundle_base_ref(bundle_dir, meta)
    check_fingerprint(meta["base"]["fingerprint"], fingerprint(load_llm_config(base_ref, trust_remote_code)),
                      meta["base"]["id"], base_ref)
    states = check_bundle_files(bundle_dir, meta)
    check_embedding_shape(bundle_dir, meta, states[EMBEDDING_NAME])
    check_checksums(bundle_dir, meta)
    return meta


def bundle_info(bundle_dir: str | Path, base: str | None = None) -> dict[str, Any]:
    """A summary of a bundle for `aura info`, after the same checks as loading (see :func:`validate_bundle`)."""
    bundle_dir = Path(bundle_dir)
    meta = validate_bundle(bundle_dir, base)
    files = {}
    for p in sorted(bundle_dir.rglob("*")):
        if p.is_file():
            files[str(p.relative_to(bundle_dir))] = p.stat().st_size
    trainable = sum(t.numel() for name in trained_files(meta) for t in read_weights(bundle_dir / name).values())
    return {
        "bundle": str(bundle_dir),
        "base": meta["base"],
        "base_source": base or bundle_base_ref(bundle_dir, meta),
        "teacher": meta.get("teacher"),
        "model": meta["model"],
        "embedding_shape": meta.get("embedding_shape"),
        "adapter_and_embedding_parameters": trainable,
        "training": meta.get("training"),
        "metrics": meta.get("metrics"),
        "files": files,
        "total_bytes": sum(files.values()),
        "checksums": "verified" if meta.get(CHECKSUMS_KEY) else "none recorded (bundle saved before checksums)",
        "links_outside": links_leaving(bundle_dir),
    }


# ---------------------------------------------------------------------- save
def _atomic_dir(final: Path):
    """A temp folder beside ``final``; ``commit()`` swaps it into place, so a crash never leaves half a bundle."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))

    def commit() -> None:
        old = None
        if final.exists():
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    return tmp, commit


def copy_model_files(src: str | Path, dst: Path) -> None:
    """Copy a local model folder's config, safetensors weights and tokenizer files (no pickles)."""
    src = Path(src)
    if not src.is_dir():
        raise AuraError(f"cannot copy model files: {str(src)!r} is not a local folder")
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file() and (p.suffix in (".json", ".safetensors", ".txt", ".model", ".jinja") or p.name in WEIGHT_FILES):
            shutil.copy2(p, dst / p.name)


def cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}


def save_adapter(model: AuraModel, folder: Path) -> None:
    """adapter_model.safetensors + adapter_config.json in PEFT's format, from a PEFT model or a plain LoRA."""
    if model.lora is None:
        model.llm.save_pretrained(str(folder), safe_serialization=True)
        return
    save_file(model.lora.state_dict(), str(folder / ADAPTER_NAME))
    (folder / "adapter_config.json").write_text(json.dumps(model.lora.config, indent=2, sort_keys=True) + "\n")


def save_bundle(out_dir: str | Path, model: AuraModel, tokenizer, model_cfg: ModelConfig, base_id: str, *,
                base_config=None, teacher: str | None = None, training: dict | None = None,
                metrics: dict | None = None, include_base: str | Path | None = None,
                include_teacher: str | Path | None = None, card: str | None = None) -> Path:
    """Write a bundle atomically. ``include_base``/``include_teacher``: local model folders to carry along."""
    out_dir = Path(out_dir)
    if not model.has_adapter:
        raise AuraError("the model has no LoRA adapter to save")
    if base_config is not None:
        llm_config = base_config
    else:
        llm_config = model.llm.config if model.lora is not None else model.llm.get_base_model().config
    tmp, commit = _atomic_dir(out_dir)
    try:
        save_adapter(model, tmp)
        save_file(cpu_state(model.embedding), str(tmp / EMBEDDING_NAME))
        if model.pooler is not None:
            save_file(cpu_state(model.pooler), str(tmp / POOLER_NAME))
        tokenizer.save_pretrained(str(tmp / "tokenizer"))
        if include_base is not None:
            copy_model_files(include_base, tmp / "base")
        if include_teacher is not None:
            copy_model_files(include_teacher, tmp / "teacher")
        meta = {
            "format_version": FORMAT_VERSION,
            "base": {"id": base_id, "fingerprint": fingerprint(llm_config)},
            "teacher": teacher,
            "model": model_cfg.to_dict(),
            "embedding_shape": {"n_mels": model.embedding.n_mels, "d_model": model.embedding.d_model,
                                "stack": model.embedding.stack},
            "training": training or {},
            "metrics": metrics or {},
            CHECKSUMS_KEY: weight_checksums(tmp),
        }
        (tmp / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        if card:
            (tmp / "README.md").write_text(card)
        commit()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


# ---------------------------------------------------------------------- load
@dataclass
class Loaded:
    """A model ready to run, and where it came from."""

    model: AuraModel
    tokenizer: Any
    config: ModelConfig
    resolved: backends.Resolved
    base_ref: str  # the base LLM actually loaded (hub id or folder)
    bundle_dir: Path | None = None  # None when running the plain base model
    meta: dict[str, Any] = field(default_factory=dict)  # aura_config.json


def fill(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path, settings: str,
         device: torch.device) -> torch.nn.Module:
    """``module`` with the weights of ``path`` (already read and checked), on ``device``, in eval mode."""
    try:
        module.load_state_dict(state, strict=True)
    except Exception as exc:
        raise AuraError(f"{path} does not fit the bundle's {settings}: {str(exc).splitlines()[0]}") from exc
    return module.to(device).eval()


def load_embedding(bundle_dir: Path, cfg: ModelConfig, d_model: int, device: torch.device,
                   state: dict[str, torch.Tensor] | None = None) -> AudioEmbedding:
    """The bundle's AudioEmbedding (``state``: its tensors when already read and checked)."""
    path = bundle_dir / EMBEDDING_NAME
    if state is None:
        if not path.is_file():
            raise AuraError(f"bundle {str(bundle_dir)!r} lacks {EMBEDDING_NAME}")
        state = read_weights(path)
    return fill(AudioEmbedding(cfg.audio.n_mels, d_model, cfg.embedding), state, path,
                f"config (n_mels {cfg.audio.n_mels}, d_model {d_model})", device)


def load_pooler(bundle_dir: Path, cfg: ModelConfig, d_model: int, device: torch.device,
                state: dict[str, torch.Tensor]) -> TokenPooler:
    """A token-rate bundle's TokenPooler (its tensors already read and checked)."""
    return fill(TokenPooler(d_model, cfg.pooling), state, bundle_dir / POOLER_NAME,
                f"pooling settings (d_model {d_model})", device)


def load_bundle(bundle_dir: str | Path, runtime: RuntimeConfig | None = None, base: str | None = None,
                trust_remote_code: bool = False) -> Loaded:
    """Load base LLM (quantized as configured) + LoRA + AudioEmbedding from a bundle, checking the fingerprint."""
    bundle_dir = Path(bundle_dir)
    meta = read_bundle_config(bundle_dir)
    cfg = ModelConfig.from_dict(meta["model"])
    base_ref = base or bundle_base_ref(bundle_dir, meta)
    check_fingerprint(meta["base"]["fingerprint"], fingerprint(load_llm_config(base_ref, trust_remote_code)),
                      meta["base"]["id"], base_ref)
    states = check_bundle_files(bundle_dir, meta)  # before the (slow) LLM: a broken adapter never answers
    tok_dir = bundle_dir / "tokenizer"
    tokenizer = load_tokenizer(tok_dir if tok_dir.is_dir() else base_ref, trust_remote_code)
    resolved = backends.resolve(runtime)
    llm = load_llm(base_ref, resolved, trust_remote_code)
    llm, plain = attach_bundle_lora(llm, bundle_dir, states[ADAPTER_NAME], resolved.device, base_ref)
    d_model = llm.get_input_embeddings().weight.shape[1]
    embedding = load_embedding(bundle_dir, cfg, d_model, resolved.device, states[EMBEDDING_NAME])
    pooler = load_pooler(bundle_dir, cfg, d_model, resolved.device, states[POOLER_NAME]) if POOLER_NAME in states else None
    aura = AuraModel(llm, embedding, cfg.prompt.audio_attention, plain, pooler, cfg.pooling.layers)
    resolved.notices.extend(f"bundle file {link} leads outside the bundle" for link in links_leaving(bundle_dir))
    return Loaded(aura, tokenizer, cfg, resolved, base_ref, bundle_dir, meta)


def attach_bundle_lora(llm, bundle_dir: Path, state: dict[str, torch.Tensor], device: torch.device, base_ref: str):
    """The bundle's LoRA on ``llm``: applied directly when it is a plain LoRA (no PEFT import), else through PEFT.

    Returns (llm, PlainLora or None); with PEFT the llm is the PeftModel.
    """
    adapter_config = lora.read_adapter_config(bundle_dir)
    reason = lora.unsupported(adapter_config)
    try:
        if reason is None:  # LoRA weights in float32 whatever the base's dtype, as PEFT keeps them
            return llm, lora.apply_lora(llm, adapter_config, state, torch.float32, device)
        from peft import PeftModel

        return PeftModel.from_pretrained(llm, str(bundle_dir), is_trainable=False).eval(), None
    except AuraError as exc:
        raise AuraError(f"the LoRA in {str(bundle_dir)!r} does not fit base model {base_ref!r}: {exc}") from exc
    except Exception as exc:
        raise AuraError(f"the LoRA in {str(bundle_dir)!r} does not fit base model {base_ref!r}: "
                        f"{str(exc).splitlines()[0]}") from exc


def load_base_only(base: str, runtime: RuntimeConfig | None = None, trust_remote_code: bool = False) -> Loaded:
    """The plain base model for typed chat (no adapter, no audio)."""
    cfg = ModelConfig()
    tokenizer = load_tokenizer(base, trust_remote_code)
    resolved = backends.resolve(runtime)
    llm = load_llm(base, resolved, trust_remote_code)
    d_model = llm.get_input_embeddings().weight.shape[1]
    embedding = AudioEmbedding(cfg.audio.n_mels, d_model, cfg.embedding).to(resolved.device).eval()
    return Loaded(AuraModel(llm, embedding), tokenizer, cfg, resolved, base, None, {})
