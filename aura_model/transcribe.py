"""Speech -> text with a Whisper model: the cascade baseline's first stage.

Greedy decoding with a KV cache from the decoder start token until end-of-text. A plain
loop rather than ``WhisperForConditionalGeneration.generate``: generate() insists on
Whisper's multilingual special tokens (language/task/timestamps), which a custom-vocabulary
Whisper (the demo teacher) does not have. On a stock Whisper the loop yields the
language/task tokens first; they are special tokens and are skipped when decoding.

Input: a Whisper encoder accepts exactly ``2 * max_source_positions`` log-mel frames, so
each waveform is zero-padded (or cut) to that window before the log-mel, which is what
``WhisperFeatureExtractor(padding="max_length")`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .audio import batch_waveforms, log_mel
from .config import AudioConfig
from .errors import AuraError
from .kv_cache import next_step_cache


def input_frames(model) -> int:
    """Log-mel frames a Whisper encoder accepts: 2 * max_source_positions."""
    return 2 * int(model.config.max_source_positions)


def whisper_features(waves: Sequence[np.ndarray], frames: int, audio_cfg: AudioConfig | None = None) -> torch.Tensor:
    """16 kHz waveforms -> Whisper log-mel (B, n_mels, frames), each zero-padded/cut to the window first."""
    audio_cfg = audio_cfg or AudioConfig()
    n = frames * audio_cfg.hop_length
    batch, lengths = batch_waveforms([np.asarray(w, np.float32)[:n] for w in waves])
    if batch.shape[1] < n:
        batch = torch.nn.functional.pad(batch, (0, n - batch.shape[1]))
    feats, _ = log_mel(batch, lengths, audio_cfg)
    return feats[..., :frames]


@torch.no_grad()
def greedy_decode(model, features: torch.Tensor, max_tokens: int | None = None) -> list[list[int]]:
    """Greedy token ids (without start and end tokens) for a batch of Whisper input features."""
    model.eval()
    feats = features.to(device=next(model.parameters()).device, dtype=next(model.parameters()).dtype)
    return greedy_decode_states(model, model.get_encoder()(input_features=feats).last_hidden_state, max_tokens)


@torch.no_grad()
def greedy_decode_states(model, states: torch.Tensor, max_tokens: int | None = None) -> list[list[int]]:
    """Greedy token ids (without start and end tokens) of the decoder reading ``states`` (B, T, D) as the
    encoder's output: every one of the T positions is attended, so pass each clip's own positions only."""
    model.eval()
    cfg = model.config
    max_tokens = max_tokens or int(cfg.max_target_positions) - 1
    start, eot = int(cfg.decoder_start_token_id), int(cfg.eos_token_id)
    device = next(model.parameters()).device
    encoder_out = (states.to(device=device, dtype=next(model.parameters()).dtype),)
    b = states.shape[0]
    step_ids = torch.full((b, 1), start, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    out: list[torch.Tensor] = []
    past: dict = {}
    for _ in range(max_tokens):
        step = model(encoder_outputs=encoder_out, decoder_input_ids=step_ids, use_cache=True, **past)
        past = next_step_cache(step)
        nxt = step.logits[:, -1].argmax(-1)
        nxt = torch.where(done, torch.full_like(nxt, eot), nxt)
        out.append(nxt)
        done |= nxt == eot
        if bool(done.all()):
            break
        step_ids = nxt[:, None]
    ids = torch.stack(out, dim=1).tolist() if out else [[] for _ in range(b)]
    return [row[: row.index(eot)] if eot in row else row for row in ids]


class WhisperTranscriber:
    """A Whisper folder (model + tokenizer) as a callable: waves -> transcripts."""

    def __init__(self, model, tokenizer, audio_cfg: AudioConfig | None = None, batch_size: int = 32):
        self.model = model
        self.tokenizer = tokenizer
        self.audio_cfg = audio_cfg or AudioConfig(n_mels=int(model.config.num_mel_bins))
        self.batch_size = batch_size

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str = "cpu") -> "WhisperTranscriber":
        from transformers import AutoTokenizer, WhisperForConditionalGeneration

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise AuraError(f"no ASR model in {str(folder)!r} (config.json missing)")
        try:
            model = WhisperForConditionalGeneration.from_pretrained(str(folder), use_safetensors=True)
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except Exception as exc:
            raise AuraError(f"cannot load the ASR model in {str(folder)!r}: {str(exc).splitlines()[0]}") from exc
        return cls(model.to(device).eval(), tokenizer)

    def __call__(self, waves: Sequence[np.ndarray]) -> list[str]:
        texts = []
        frames = input_frames(self.model)
        for i in range(0, len(waves), self.batch_size):
            feats = whisper_features(waves[i:i + self.batch_size], frames, self.audio_cfg)
            for row in greedy_decode(self.model, feats):
                texts.append(self.tokenizer.decode(row, skip_special_tokens=True).strip())
        return texts


def load_transcriber(bundle_dir: str | Path | None, resolved=None) -> WhisperTranscriber:
    """The teacher a bundle carries (its teacher/ folder), ready to transcribe."""
    if bundle_dir is None or not (Path(bundle_dir) / "teacher" / "config.json").is_file():
        raise AuraError("cascade mode needs an ASR model: this bundle carries no teacher/ folder")
    device = resolved.device if resolved is not None else "cpu"
    return WhisperTranscriber.load(Path(bundle_dir) / "teacher", device)
