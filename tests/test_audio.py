"""Audio front-end: loading, validation, resampling and Whisper-exact batched log-mel."""

from __future__ import annotations

import os
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from aura_model import audio
from aura_model.audio import (
    batch_waveforms,
    features_for,
    load_audio,
    log_mel,
    num_frames,
    prepare_waveform,
    resample,
)
from aura_model.config import AudioConfig
from aura_model.errors import AuraError

SR = 16000


def assert_close(actual, expected, atol: float, what: str = "") -> None:
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    diff = np.abs(actual - expected)
    assert diff.max() <= atol, f"{what}: max diff {diff.max():.3e}, mean {diff.mean():.3e} > {atol}"


def sine(freq: float, seconds: float, sr: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_freq(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()])


def speechlike(n: int, seed: int, amp: float) -> np.ndarray:
    """Noise bursts and a chirp with a decaying envelope: varied spectra, per-clip maxima and floors."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    chirp = np.sin(2 * np.pi * (200 + 1500 * t) * t)
    env = np.exp(-3 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x = amp * (env * (chirp + 0.3 * rng.standard_normal(n))) + 1e-5 * rng.standard_normal(n)
    return x.astype(np.float32)


# -- loading -----------------------------------------------------------------------------------


def test_wav_16k_roundtrip(tmp_path):
    x = sine(440, 0.5, SR)
    sf.write(tmp_path / "a.wav", x, SR, subtype="FLOAT")
    y = load_audio(tmp_path / "a.wav")
    assert y.dtype == np.float32 and y.ndim == 1
    assert_close(y, x, 1e-7, "16 kHz float wav must load unchanged")


def test_wav_44k_stereo_mixed_and_resampled(tmp_path):
    left, right = sine(1000, 1.0, 44100, 0.6), sine(1000, 1.0, 44100, 0.2)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 44100, subtype="PCM_16")
    y = load_audio(tmp_path / "s.wav")
    assert abs(len(y) - SR) <= 1
    assert abs(peak_freq(y, SR) - 1000) <= 2
    # mean of the channels (0.6 + 0.2) / 2 = 0.4, not channel 0 alone
    assert abs(np.abs(y[1000:-1000]).max() - 0.4) < 0.01


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_flac_and_ogg(tmp_path, fmt, subtype):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(path, sine(1000, 0.8, 22050, 0.5), 22050, format=fmt, subtype=subtype)
    y = load_audio(path)
    assert abs(len(y) - int(0.8 * SR)) <= 2
    assert abs(peak_freq(y, SR) - 1000) <= 2
    assert 0.45 < np.abs(y).max() <= 0.56


def test_mp3(tmp_path):
    path = tmp_path / "a.mp3"
    if "MP3" in sf.available_formats():
        sf.write(path, sine(1000, 1.0, 44100, 0.5), 44100, format="MP3")
    else:
        pytest.skip(f"no mp3 encoder: libsndfile {sf.__libsndfile_version__} lacks MP3 (sox has none either)")
    y = load_audio(path)
    # mp3 adds encoder delay/padding of ~1 frame (1152 samples at 44.1 kHz, ~420 at 16 kHz)
    assert abs(len(y) - SR) < 1200
    assert abs(peak_freq(y, SR) - 1000) <= 2


def test_mp3_without_libsndfile_support_is_a_clear_error(tmp_path, monkeypatch):
    path = tmp_path / "song.mp3"
    path.write_bytes(b"\xff\xfb" + bytes(100))
    monkeypatch.setattr(audio.sf, "available_formats", lambda: {"WAV": "wav"})
    with pytest.raises(AuraError, match=r"song\.mp3.*cannot read mp3.*convert"):
        load_audio(path)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_espeak_speech_resampled_to_16k(tmp_path):
    path = tmp_path / "hello.wav"
    subprocess.run(["espeak-ng", "-w", str(path), "hello world"], check=True, capture_output=True)
    info = sf.info(path)
    assert info.samplerate == 22050
    y = load_audio(path)
    assert abs(len(y) - info.frames * SR / 22050) <= 1
    assert 0.3 < len(y) / SR < 3.0
    feats, lengths = features_for([y])
    assert int(lengths[0]) == len(y) // 160 == feats.shape[-1]
    assert torch.isfinite(feats).all() and feats.std() > 0.05


# -- resampling --------------------------------------------------------------------------------


def test_resample_keeps_frequency_and_rejects_aliases():
    y = resample(sine(1000, 1.0, 44100), 44100, SR)
    assert len(y) == SR and y.dtype == np.float32
    assert abs(peak_freq(y, SR) - 1000) <= 1
    assert abs(np.abs(y[500:-500]).max() - 0.5) < 0.01
    # 10 kHz is above the 8 kHz Nyquist of 16 kHz: naive decimation would fold it to 6 kHz.
    alias = resample(sine(10000, 1.0, 44100), 44100, SR)
    assert np.abs(alias[500:-500]).max() < 1e-3
    x = sine(300, 0.1, SR)
    assert resample(x, SR, SR) is x or np.array_equal(resample(x, SR, SR), x)


def test_prepare_int16_scaling_clip_and_mono():
    pcm = np.array([16384, -32768, 32767, 0] * 200, dtype=np.int16)
    y = prepare_waveform(pcm, SR)
    assert y.dtype == np.float32
    assert_close(y[:4], [0.5, -1.0, 32767 / 32768, 0.0], 1e-7, "int16 scaling")
    loud = np.full((800, 2), [1.5, 2.5], dtype=np.float64)
    assert_close(prepare_waveform(loud, SR), np.ones(800), 0, "clipped to [-1, 1]")
    stereo_pcm = np.stack([pcm, np.zeros_like(pcm)], axis=1)
    assert_close(prepare_waveform(stereo_pcm, SR)[:2], [0.25, -0.5], 1e-7, "int16 stereo mean")


# -- errors ------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(AuraError, match=r"nope\.wav.*not found"):
        load_audio(tmp_path / "nope.wav")


def test_directory(tmp_path):
    with pytest.raises(AuraError, match="is a directory"):
        load_audio(tmp_path)


@pytest.mark.timeout(60)
def test_a_fifo_is_refused_at_once_not_read_forever(tmp_path):
    fifo = tmp_path / "question.wav"
    os.mkfifo(fifo)  # nobody writes: opening it to read would block for ever
    with pytest.raises(AuraError, match="not a regular file"):
        load_audio(fifo)
    link = tmp_path / "link.wav"
    link.symlink_to(fifo)  # a link is followed to what it points at
    with pytest.raises(AuraError, match="not a regular file"):
        load_audio(link)


def test_corrupt_file(tmp_path):
    path = tmp_path / "bad.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AuraError, match=r"bad\.wav: cannot read audio"):
        load_audio(path)


def test_empty_wav(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, np.float32), SR)
    with pytest.raises(AuraError, match=r"empty\.wav: empty audio \(0 samples\)"):
        load_audio(path)


def test_silent_wav(tmp_path):
    path = tmp_path / "zeros.wav"
    sf.write(path, np.zeros(SR, np.float32), SR)
    with pytest.raises(AuraError, match=r"zeros\.wav: audio is silent"):
        load_audio(path)


def test_too_long_is_refused_with_duration_and_limit(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, sine(440, 3.0, SR), SR)
    cfg = AudioConfig(max_seconds=1.5)
    with pytest.raises(AuraError, match=r"long\.wav: audio is 3\.00 s long, over the 1\.5 s limit"):
        load_audio(path, cfg)
    with pytest.raises(AuraError, match=r"mic: audio is 3\.00 s long, over the 1\.5 s limit"):
        prepare_waveform(sine(440, 3.0, SR), SR, cfg, name="mic")
    assert len(load_audio(path, AudioConfig(max_seconds=3.0))) == 3 * SR  # exactly at the limit is fine


@pytest.mark.parametrize("bad_sr", [0, -16000, 16000.5, float("nan"), None])
def test_bad_sample_rate(bad_sr):
    with pytest.raises(AuraError, match=r"mic: sample rate must be a positive"):
        prepare_waveform(sine(440, 0.1, SR), bad_sr, name="mic")


def test_prepare_refuses_bad_buffers():
    with pytest.raises(AuraError, match=r"buf: audio too short"):
        prepare_waveform(sine(440, 0.01, SR), SR, name="buf")
    with pytest.raises(AuraError, match=r"buf: expected samples shaped"):
        prepare_waveform(np.zeros((2, SR), np.float32), SR, name="buf")
    with pytest.raises(AuraError, match=r"buf: audio contains NaN"):
        prepare_waveform(np.full(SR, np.nan, np.float32), SR, name="buf")
    with pytest.raises(AuraError, match=r"buf: audio is silent"):
        prepare_waveform(np.full(SR, 5e-5, np.float32), SR, name="buf")


# -- log-mel -----------------------------------------------------------------------------------

# Lengths chosen so that L % 160 covers 0, < 40 (the last valid frame reaches past the clip end,
# where reflection at the clip's own end matters) and larger remainders.
CLIP_LENGTHS = (8017, 12345, 16000)
CLIP_AMPS = (0.05, 0.8, 0.3)


@pytest.fixture(scope="module")
def clips():
    return [speechlike(n, seed, amp) for seed, (n, amp) in enumerate(zip(CLIP_LENGTHS, CLIP_AMPS))]


@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_matches_whisper_feature_extractor(clips, n_mels):
    from transformers import WhisperFeatureExtractor

    cfg = AudioConfig(n_mels=n_mels)
    fe = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=SR, hop_length=160, n_fft=400)
    feats, lengths = features_for(clips, cfg)
    assert feats.dtype == torch.float32 and lengths.dtype == torch.long
    assert feats.shape == (3, n_mels, max(CLIP_LENGTHS) // 160)
    for i, clip in enumerate(clips):
        ref = fe(clip, sampling_rate=SR, padding="longest", return_tensors="np")["input_features"][0]
        assert int(lengths[i]) == ref.shape[-1] == num_frames(len(clip), cfg)
        assert_close(feats[i, :, : lengths[i]].numpy(), ref, 1e-4, f"clip {i} vs WhisperFeatureExtractor")


def test_batch_equals_single_and_padding_is_silence(clips):
    batch, lengths = features_for(clips)
    for i, clip in enumerate(clips):
        single, single_len = log_mel(torch.from_numpy(clip))  # 1-D input is a batch of one
        assert single.shape == (1, 80, len(clip) // 160) and int(single_len[0]) == int(lengths[i])
        assert_close(batch[i, :, : lengths[i]].numpy(), single[0].numpy(), 1e-5, f"clip {i} batch vs alone")
        # padding frames hold that clip's normalised silence value: (max(-10, max - 8) + 4) / 4
        pad = batch[i, :, lengths[i]:]
        expected = (max(-10.0, (4 * single.max().item() - 4) - 8) + 4) / 4
        assert pad.numel() == 0 or torch.allclose(pad, torch.full_like(pad, expected), atol=1e-6)
    assert batch[0, :, lengths[0]:].numel() > 0  # the shortest clip really was padded


def test_clip_max_is_per_clip(clips):
    """A loud neighbour in the batch must not change a quiet clip's floor."""
    quiet = clips[0] * 1e-3
    alone, _ = features_for([quiet])
    together, lengths = features_for([quiet, clips[1]])
    assert_close(together[0, :, : lengths[0]].numpy(), alone[0].numpy(), 1e-5, "quiet clip next to a loud one")
    assert alone.max() - alone.min() <= 2.0 + 1e-6  # the 8-decade floor, after /4


@pytest.mark.parametrize("n", [400, 401, 559, 560, 16000, 16159, 16160, 48000])
def test_num_frames_matches_features(n):
    wave = torch.from_numpy(np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1)
    feats, lengths = log_mel(wave, torch.tensor([n]))
    assert num_frames(n) == n // 160 == feats.shape[-1] == int(lengths[0])


def test_batch_waveforms_pads_with_zeros():
    waves = [np.ones(5, np.float32), np.full(3, 2.0, np.float32)]
    batch, lengths = batch_waveforms(waves)
    assert batch.dtype == torch.float32 and lengths.dtype == torch.long
    assert batch.tolist() == [[1, 1, 1, 1, 1], [2, 2, 2, 0, 0]]
    assert lengths.tolist() == [5, 3]
