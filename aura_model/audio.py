"""Audio front-end: files and microphone buffers -> mono 16 kHz waveforms -> Whisper log-mel frames.

Pure functions, no Qt, no model state. The log-mel recipe is Whisper's, bit for bit
(``transformers.WhisperFeatureExtractor`` on one unpadded clip), but computed for a whole
padded batch at once, with each clip normalised over its own frames only.

Constants at the defaults of :class:`~aura_model.config.AudioConfig` (Whisper's)::

    SAMPLE_RATE = 16000            # Hz
    N_FFT       = 400              # samples = 25 ms window at 16 kHz -> 201 frequency bins
    HOP_LENGTH  = 160              # samples = 10 ms hop -> 100 frames per second
    30 s clip   = 480000 samples   -> 480000 // 160 = 3000 frames (a Whisper encoder's input)

Everything below reads these from the ``AudioConfig`` passed in; the module constants only
document the recipe's fixed numbers.
"""

from __future__ import annotations

import functools
import math
import os
from numbers import Real
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from .config import AudioConfig
from .errors import AuraError

# -- fixed numbers of the Whisper recipe -------------------------------------------------------

INT16_SCALE = 32768.0  # int16 PCM full scale: -32768 maps to exactly -1.0
INT32_SCALE = 2147483648.0  # int32 PCM full scale (2**31)
MEL_FMIN = 0.0  # Hz, lowest mel band edge (WhisperFeatureExtractor)
MEL_FMAX = 8000.0  # Hz, highest band edge; WhisperFeatureExtractor fixes 8 kHz whatever the rate
POWER_FLOOR = 1e-10  # mel power floor before log10 -> a silent frame is log10(1e-10) = -10
SILENCE_LOG = math.log10(POWER_FLOOR)  # = -10.0
DYNAMIC_RANGE = 8.0  # log10 units kept below the clip's max (8 decades = 80 dB)
LOG_OFFSET = 4.0  # (x + 4) / 4 maps the usual [-4, 4] log10 range to about [-1, 1]
LOG_SCALE = 4.0
MAX_CHANNELS = 64  # a 2-D buffer with more "channels" than this is almost surely (C, N), not (N, C)
RESAMPLE_QUALITY = "HQ"  # soxr high quality: ~-100 dB stop band, cheap enough for 30 s clips

# Formats soundfile/libsndfile reads by extension. MP3 needs libsndfile >= 1.1.0.
_MP3_SUFFIXES = (".mp3",)


def _cfg(cfg: AudioConfig | None) -> AudioConfig:
    return cfg if cfg is not None else AudioConfig()


# -- loading and validation --------------------------------------------------------------------


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the first axis with soxr (high quality, band-limited; no aliasing).

    Identity (the input itself, as float32) when the rates are equal. Output length is
    ``round(len(x) * target_sr / orig_sr)``.
    """
    x = np.asarray(x, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return x
    return np.asarray(soxr.resample(x, int(orig_sr), int(target_sr), quality=RESAMPLE_QUALITY), dtype=np.float32)


def _check_sample_rate(sample_rate: object, name: str) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, Real):
        raise AuraError(f"{name}: sample rate must be a positive number of Hz, got {sample_rate!r}")
    if not math.isfinite(float(sample_rate)) or sample_rate <= 0 or float(sample_rate) != int(sample_rate):
        raise AuraError(f"{name}: sample rate must be a positive whole number of Hz, got {sample_rate!r}")
    return int(sample_rate)


def _to_float(samples: np.ndarray, name: str) -> np.ndarray:
    """PCM or float samples -> float32 in nominal [-1, 1]."""
    x = np.asarray(samples)
    if x.dtype == np.int16:
        return x.astype(np.float32) / INT16_SCALE
    if x.dtype == np.int32:
        return (x.astype(np.float64) / INT32_SCALE).astype(np.float32)
    if x.dtype == np.uint8:  # 8-bit PCM is unsigned, centred on 128
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.floating):
        return x.astype(np.float32, copy=False)
    raise AuraError(f"{name}: audio samples must be int16, int32, uint8 or float, got dtype {x.dtype}")


def _check_duration(num_samples: int, sample_rate: int, cfg: AudioConfig, name: str) -> None:
    seconds = num_samples / sample_rate
    if seconds > cfg.max_seconds:
        raise AuraError(
            f"{name}: audio is {seconds:.2f} s long, over the {cfg.max_seconds:g} s limit "
            f"(AudioConfig.max_seconds); longer audio is refused, not split - trim it first"
        )


def prepare_waveform(
    samples: np.ndarray,
    sample_rate: int,
    cfg: AudioConfig | None = None,
    name: str = "audio",
) -> np.ndarray:
    """Validate a raw buffer and turn it into what :func:`log_mel` expects.

    ``samples`` is ``(N,)`` or ``(N, C)`` (frames first, as soundfile and sounddevice give it),
    int16 (scaled by 1/32768), int32, uint8 or float. Channels are averaged to mono, the result
    is resampled to ``cfg.sample_rate`` with soxr and clipped to [-1, 1]. Returns float32 ``(N',)``.

    Raises :class:`AuraError` naming ``name`` for: a sample rate that is not a positive whole
    number, a bad shape or dtype, NaN/inf samples, 0 samples, fewer samples than one STFT window
    (``cfg.n_fft``, 25 ms at the defaults: no log-mel frame can be made), a duration over
    ``cfg.max_seconds`` (refused, not split) and an absolute peak below ``cfg.silence_peak``.
    """
    cfg = _cfg(cfg)
    sr = _check_sample_rate(sample_rate, name)
    x = _to_float(samples, name)
    if x.ndim == 2:
        if x.shape[1] > MAX_CHANNELS:
            raise AuraError(
                f"{name}: expected samples shaped (N,) or (N, channels), got {x.shape} "
                f"(more than {MAX_CHANNELS} channels; is it (channels, N)? transpose it)"
            )
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] else np.zeros(0, np.float32)
    elif x.ndim != 1:
        raise AuraError(f"{name}: expected samples shaped (N,) or (N, channels), got {x.shape}")
    if x.shape[0] == 0:
        raise AuraError(f"{name}: empty audio (0 samples)")
    if not np.isfinite(x).all():
        raise AuraError(f"{name}: audio contains NaN or infinite samples")
    # Refuse before resampling so an hour-long buffer costs nothing.
    _check_duration(x.shape[0], sr, cfg, name)
    x = np.clip(resample(x, sr, cfg.sample_rate), -1.0, 1.0)
    if x.shape[0] < cfg.n_fft:
        raise AuraError(
            f"{name}: audio too short ({x.shape[0]} samples at {cfg.sample_rate} Hz; "
            f"at least n_fft={cfg.n_fft} samples are needed for one frame)"
        )
    peak = float(np.abs(x).max())
    if peak < cfg.silence_peak:
        raise AuraError(f"{name}: audio is silent (peak {peak:.2e} < silence_peak {cfg.silence_peak:g})")
    return np.ascontiguousarray(x, dtype=np.float32)


def _mp3_supported() -> bool:
    return "MP3" in sf.available_formats()


def check_regular_file(path: Path) -> None:
    """Refuse anything but a regular file (after following links): reading a FIFO, a socket or a
    device would block forever or never end, and a folder is a user's slip."""
    name = str(path)
    if path.is_dir():
        raise AuraError(f"{name}: is a directory, not an audio file")
    if not path.exists():
        raise AuraError(f"{name}: audio file not found")
    if not path.is_file():  # is_file follows links: a FIFO, socket or device lands here
        raise AuraError(f"{name}: not a regular file (a pipe, socket or device); give an audio file")


def load_audio(path: str | os.PathLike, cfg: AudioConfig | None = None) -> np.ndarray:
    """Read an audio file into a mono float32 waveform at ``cfg.sample_rate`` in [-1, 1].

    Reads whatever the installed libsndfile reads: wav, flac, ogg (vorbis/opus), aiff, ... and
    mp3 when libsndfile >= 1.1.0 was built with mpg123/lame (checked with
    ``soundfile.available_formats()``; otherwise an mp3 is refused with an :class:`AuraError`
    telling the user to convert it, rather than pulling in ffmpeg). Then as
    :func:`prepare_waveform`. Every failure (missing file, a directory, unreadable or corrupt
    data, empty, too short, silent, over ``cfg.max_seconds``) is an :class:`AuraError` naming
    the file.
    """
    cfg = _cfg(cfg)
    p = Path(path)
    name = str(p)
    check_regular_file(p)
    if p.suffix.lower() in _MP3_SUFFIXES and not _mp3_supported():
        raise AuraError(
            f"{name}: cannot read mp3: the installed libsndfile ({sf.__libsndfile_version__}) has no MP3 "
            f"support (needs >= 1.1.0); convert the file to wav, flac or ogg"
        )
    try:
        info = sf.info(name)
        # Refuse a long file from its header, before decoding all of it.
        if info.samplerate > 0 and info.frames > 0:
            _check_duration(info.frames, info.samplerate, cfg, name)
        data, sr = sf.read(name, dtype="float32", always_2d=True)  # (N, C)
    except AuraError:
        raise
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise AuraError(f"{name}: cannot read audio ({detail})") from exc
    return prepare_waveform(data, sr, cfg, name=name)


# -- log-mel features --------------------------------------------------------------------------


def num_frames(num_samples: int, cfg: AudioConfig | None = None) -> int:
    """Log-mel frames for ``num_samples`` samples: ``num_samples // hop_length`` (for even n_fft).

    The centred STFT pads n_fft//2 on each side and yields ``1 + N // hop`` frames; Whisper drops
    the last one, leaving ``N // hop`` (16000 samples -> 100 frames, 30 s -> 3000). The general
    form below also covers an odd n_fft.
    """
    cfg = _cfg(cfg)
    return max(0, (int(num_samples) + 2 * (cfg.n_fft // 2) - cfg.n_fft) // cfg.hop_length)


def _num_frames_t(lengths: torch.Tensor, cfg: AudioConfig) -> torch.Tensor:
    """Vectorised :func:`num_frames` for a (B,) tensor of sample counts."""
    return torch.div(lengths + 2 * (cfg.n_fft // 2) - cfg.n_fft, cfg.hop_length, rounding_mode="floor").clamp(min=0)


@functools.lru_cache(maxsize=8)
def _mel_filters(n_mels: int, n_fft: int, sample_rate: int) -> torch.Tensor:
    """(n_fft//2 + 1, n_mels) slaney mel filters, exactly as WhisperFeatureExtractor builds them."""
    from transformers.audio_utils import mel_filter_bank  # lazy: transformers is slow to import

    filters = mel_filter_bank(
        num_frequency_bins=1 + n_fft // 2,
        num_mel_filters=n_mels,
        min_frequency=MEL_FMIN,
        max_frequency=MEL_FMAX,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return torch.from_numpy(filters).to(torch.float32)


def batch_waveforms(waves: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D waveforms to ``(B, N_max)`` float32; also return their lengths ``(B,)`` long."""
    if len(waves) == 0:
        raise ValueError("batch_waveforms needs at least one waveform")
    tensors = [torch.as_tensor(np.asarray(w, dtype=np.float32)).reshape(-1) for w in waves]
    lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
    batch = torch.zeros(len(tensors), int(lengths.max()), dtype=torch.float32)
    for i, t in enumerate(tensors):  # copies only; the maths in log_mel is batched
        batch[i, : t.shape[0]] = t
    return batch, lengths


def _reflect_pad(waveforms: torch.Tensor, lengths: torch.Tensor, half: int) -> torch.Tensor:
    """Pad each clip by ``half`` samples on both sides, reflecting at its OWN end.

    torch.stft(center=True) reflect-pads the whole row, which for a zero-padded batch would
    mirror the padding zeros rather than the clip's last samples, so the last frames of a
    short clip would differ from that clip alone. Here the right edge is mirrored at
    ``lengths[b]``: ``padded[b, half + L + j] = x[b, L - 2 - j]`` (numpy "reflect", no edge
    repeat), exactly what a single clip gets. (B, N) -> (B, N + 2 * half).
    """
    B, N = waveforms.shape
    padded = F.pad(waveforms, (half, half))
    if half == 0:
        return padded
    j = torch.arange(half, device=waveforms.device)
    # left edge: padded[:, k] = x[:, half - k] for k < half (the same for every clip)
    left_src = (half - j).clamp(max=N - 1)
    padded[:, :half] = waveforms[:, left_src]
    # right edge, per clip; indices clamped for clips shorter than the pad (not produced by
    # prepare_waveform, which requires >= n_fft samples)
    L = lengths.view(B, 1)
    src = (L - 2 - j).clamp(min=0, max=N - 1)  # (B, half)
    dst = half + L + j  # (B, half), < N + 2 * half
    padded.scatter_(1, dst, torch.gather(waveforms, 1, src))
    return padded


def log_mel(
    waveforms: torch.Tensor,
    lengths: torch.Tensor | None = None,
    cfg: AudioConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whisper log-mel features of a padded batch, each clip normalised over its own frames.

    ``waveforms`` is ``(B, N)`` float (or one ``(N,)`` clip, treated as a batch of one) at
    ``cfg.sample_rate``; ``lengths`` ``(B,)`` are the real sample counts (None: all N).
    Returns ``features (B, n_mels, F_max)`` float32 and ``frame_lengths (B,)`` long, with
    ``F_max = num_frames(N)`` and ``frame_lengths[b] = num_frames(lengths[b])``.

    Recipe (WhisperFeatureExtractor): periodic Hann window of n_fft, centred STFT with hop
    hop_length and reflect padding, power spectrum without the last frame, slaney mel filters
    (0-8 kHz), log10(max(mel, 1e-10)), floor at (clip max - 8), then (x + 4) / 4. The clip max is
    taken over that clip's valid frames only, so a clip gets the same features alone as in any
    padded batch (valid frames equal the extractor's output on that clip to ~1e-6).

    Padding frames (``t >= frame_lengths[b]``) hold the value a silent frame of that clip has
    after normalisation, ``(max(-10, clip_max - 8) + 4) / 4``: what Whisper would see for
    zero-padded audio. Consumers should still mask them with ``frame_lengths``.
    """
    cfg = _cfg(cfg)
    if waveforms.dim() == 1:
        waveforms = waveforms.unsqueeze(0)
    if waveforms.dim() != 2:
        raise ValueError(f"log_mel expects (B, N) or (N,) waveforms, got shape {tuple(waveforms.shape)}")
    waveforms = waveforms.to(torch.float32)
    B, N = waveforms.shape
    device = waveforms.device
    if lengths is None:
        lengths = torch.full((B,), N, dtype=torch.long, device=device)
    lengths = lengths.to(device=device, dtype=torch.long).clamp(0, N)

    half = cfg.n_fft // 2
    padded = _reflect_pad(waveforms, lengths, half)  # (B, N + 2*half)
    window = torch.hann_window(cfg.n_fft, periodic=True, device=device)
    stft = torch.stft(padded, cfg.n_fft, cfg.hop_length, window=window, center=False, return_complex=True)
    power = (stft[..., :-1].abs() ** 2).contiguous()  # (B, n_fft//2+1, F_max): last frame dropped
    mel = _mel_filters(cfg.n_mels, cfg.n_fft, cfg.sample_rate).to(device).T @ power  # (B, n_mels, F_max)
    log_spec = torch.clamp(mel, min=POWER_FLOOR).log10()

    frame_lengths = _num_frames_t(lengths, cfg)  # (B,)
    valid = torch.arange(log_spec.shape[-1], device=device).view(1, 1, -1) < frame_lengths.view(B, 1, 1)
    clip_max = log_spec.masked_fill(~valid, -math.inf).amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
    clip_max = clip_max.clamp(min=SILENCE_LOG)  # a clip without frames behaves as silence, not -inf
    floor = clip_max - DYNAMIC_RANGE
    log_spec = torch.maximum(log_spec, floor)
    silent = torch.maximum(floor, torch.tensor(SILENCE_LOG, device=device))  # a zero-power frame's value
    log_spec = torch.where(valid, log_spec, silent)
    features = (log_spec + LOG_OFFSET) / LOG_SCALE
    return features, frame_lengths


def features_for(waves: list[np.ndarray], cfg: AudioConfig | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prepared 1-D waveforms -> ``(features (B, n_mels, F_max), frame_lengths (B,))``."""
    return log_mel(*batch_waveforms(waves), cfg=cfg)
