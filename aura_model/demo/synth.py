"""Speak the demo domain with espeak-ng: 16 kHz mono wavs, noise, and a manifest per split.

Step 1 of the demo recipe. For each item of ``domain.sentences(split)``, and for each of its
renditions (``SynthConfig.renditions``: the train split speaks every request several times, each
time with another voice, rate, pitch, level and noise; valid and test speak it once):

    espeak-ng (22.05 kHz int16, voice/rate/pitch from ``voices.synthesis_params``)
      -> mono float, resampled to 16 kHz with soxr  (audio.prepare_waveform)
      -> leading/trailing silence trimmed, a short random pause put back on each side
      -> random gain, then white or pink noise at a random SNR (15-35 dB)
      -> <out_dir>/<split>/wavs/<split>_<index>.wav  (16-bit PCM; rendition r > 0: <split>_<index>_r<r>.wav)

Everything random is seeded per (split, index, rendition), so an item sounds the same on every
run and a ``quick`` run writes a subset of exactly the files a full run writes.

Layout of one split folder (``<out_dir>/<split>/``), a Hugging Face ``audiofolder``::

    wavs/train_00017.wav, wavs/train_00017_r1.wav, ...
    manifest.jsonl      {"audio": "wavs/train_00017.wav", "text", "answer", "family", "index", "rendition",
                         "voice", "rate_wpm", "pitch", "noise", "snr_db", "duration_s", "words"}
    metadata.jsonl      {"file_name": "wavs/train_00017.wav", "transcription", "text",
                         "answer", "family", "words"}   (what ``load_dataset("audiofolder")`` reads)
    words.jsonl         {"audio", "words"}: when each word is spoken, [[word, start_s, end_s], ...]
                        (:mod:`.word_times`), kept so a re-run times only new clips
    synth_settings.json the settings the wavs were made with

Re-running is cheap: a wav that exists (with unchanged settings) is not synthesised or
rewritten, and the jsonl files are only rewritten when their content changes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio import prepare_waveform
from ..config import AudioConfig
from ..errors import AuraError
from . import domain, voices


@dataclass
class SynthConfig:
    """How a request text becomes a noisy 16 kHz clip."""

    sample_rate: int = 16000  # Hz; the Whisper front-end's rate (AudioConfig.sample_rate)
    snr_db: tuple[float, float] = (15.0, 35.0)  # noise SNR drawn uniformly from this range (dB, vs. speech power)
    pink_fraction: float = 0.5  # share of clips with pink (1/f) noise; the rest get white noise
    pad_s: tuple[float, float] = (0.05, 0.3)  # pause put back before and after the trimmed speech (s)
    peak: tuple[float, float] = (0.3, 0.9)  # target absolute peak of the speech, so levels vary
    trim_db: float = 40.0  # samples quieter than peak - trim_db at both ends count as silence
    # Recordings of each request per split. More renditions of the same training requests is the cheapest
    # data the adapter gets: at equal distillation steps, 2 instead of 1 took held-out answers 22.2% -> 29.1%.
    renditions: dict[str, int] = dataclasses.field(default_factory=lambda: {"train": 4, "valid": 1, "test": 1})
    quick_per_family: dict[str, int] = dataclasses.field(
        default_factory=lambda: {"train": 24, "valid": 4, "test": 6})  # items per family with quick=True
    quick_renditions: int = 2  # cap on renditions per request with quick=True

    def __post_init__(self) -> None:
        if self.sample_rate < 8000:
            raise AuraError(f"SynthConfig.sample_rate must be >= 8000 Hz, got {self.sample_rate}")
        lo, hi = self.snr_db
        if not lo <= hi:
            raise AuraError(f"SynthConfig.snr_db must be (low, high) with low <= high, got {self.snr_db}")
        if not 0 <= self.pink_fraction <= 1:
            raise AuraError(f"SynthConfig.pink_fraction must be in [0, 1], got {self.pink_fraction}")
        if not 0 <= self.pad_s[0] <= self.pad_s[1]:
            raise AuraError(f"SynthConfig.pad_s must be 0 <= low <= high, got {self.pad_s}")
        if not 0 < self.peak[0] <= self.peak[1] <= 1:
            raise AuraError(f"SynthConfig.peak must be 0 < low <= high <= 1, got {self.peak}")
        for split, n in self.renditions.items():
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise AuraError(f"SynthConfig.renditions[{split!r}] must be an integer >= 1, got {n!r}")
        if self.quick_renditions < 1:
            raise AuraError(f"SynthConfig.quick_renditions must be >= 1, got {self.quick_renditions}")

    def renditions_of(self, split: str, quick: bool = False) -> int:
        """How many times each request of ``split`` is spoken (1 for a split the setting leaves out)."""
        n = self.renditions.get(split, 1)
        return min(n, self.quick_renditions) if quick else n

    def signature(self, noise: bool) -> dict:
        """What a wav depends on besides its item; stored beside the wavs to detect stale files."""
        sig = dataclasses.asdict(self)
        for key in ("quick_per_family", "renditions", "quick_renditions"):  # which clips, not how one sounds
            sig.pop(key)
        sig["noise"] = bool(noise)
        sig = {k: list(v) if isinstance(v, tuple) else v for k, v in sig.items()}
        return sig


def _seed(*parts: object) -> int:
    """A stable per-item seed (SHA-256, identical in every process)."""
    data = "\x1f".join(str(p) for p in parts).encode("utf-8")
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "big")


def selected_indices(split: str, quick: bool = False, cfg: SynthConfig | None = None) -> list[int]:
    """Indices into ``domain.sentences(split)`` that a run synthesises: all, or with ``quick``
    the first ``cfg.quick_per_family[split]`` items of each family (in listing order)."""
    cfg = cfg or SynthConfig()
    rows = domain.sentences(split)
    if not quick:
        return list(range(len(rows)))
    per_family = cfg.quick_per_family[split]
    taken: dict[str, int] = {}
    out = []
    for i, row in enumerate(rows):
        if taken.get(row["family"], 0) < per_family:
            taken[row["family"]] = taken.get(row["family"], 0) + 1
            out.append(i)
    return out


def wav_name(split: str, index: int, rendition: int = 0) -> str:
    """File name of one clip: ``train_00017.wav``, and ``train_00017_r1.wav`` for its second rendition."""
    return f"{split}_{index:05d}.wav" if rendition == 0 else f"{split}_{index:05d}_r{rendition}.wav"


_RENDITION_RE = re.compile(r"_r(\d+)\.wav$")


def item_plan(split: str, index: int, cfg: SynthConfig | None = None, noise: bool = True,
              rendition: int = 0) -> dict:
    """The deterministic recipe of one clip: espeak-ng parameters plus pads, gain and noise."""
    cfg = cfg or SynthConfig()
    row = domain.sentences(split)[index]
    key = (split, index) if rendition == 0 else (split, index, rendition)  # rendition 0: the original seeds
    plan = dict(voices.synthesis_params(split, index, rendition))
    plan.update(text=row["text"], answer=row["answer"], family=row["family"], index=index, rendition=rendition,
                split=split)
    plan.update(clip_params(np.random.default_rng(_seed("synth", *key)), _seed("noise", *key), cfg, noise))
    return plan


def clip_params(rng: np.random.Generator, noise_seed: int, cfg: SynthConfig, noise: bool = True) -> dict:
    """Pads, level and noise of one clip, drawn from ``rng`` in a fixed order (the plan keys render() reads)."""
    params = {"pad_before_s": float(rng.uniform(*cfg.pad_s)), "pad_after_s": float(rng.uniform(*cfg.pad_s)),
              "peak": float(rng.uniform(*cfg.peak))}
    kind = "pink" if rng.random() < cfg.pink_fraction else "white"
    snr = float(rng.uniform(*cfg.snr_db))
    params.update(noise=kind if noise else "none", snr_db=round(snr, 2) if noise else None, noise_seed=noise_seed)
    return params


def _trim(x: np.ndarray, trim_db: float) -> np.ndarray:
    """Cut leading/trailing samples more than ``trim_db`` below the peak (espeak's silences)."""
    threshold = np.abs(x).max() * 10 ** (-trim_db / 20)
    loud = np.flatnonzero(np.abs(x) > threshold)
    return x[loud[0]: loud[-1] + 1] if loud.size else x


def noise_signal(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-power white or pink (1/f power) noise of ``n`` samples."""
    white = rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(white)
        f = np.arange(spec.shape[0], dtype=np.float64)
        f[0] = 1.0
        white = np.fft.irfft(spec / np.sqrt(f), n=n)
    white = white - white.mean()
    return (white / max(np.sqrt(np.mean(white ** 2)), 1e-12)).astype(np.float32)


def render(speech: np.ndarray, plan: dict, cfg: SynthConfig) -> np.ndarray:
    """Trimmed 16 kHz speech -> padded, level-varied, noisy clip (float32 in [-1, 1])."""
    x = _trim(speech, cfg.trim_db)
    x = x * (plan["peak"] / max(float(np.abs(x).max()), 1e-9))
    sr = cfg.sample_rate
    x = np.concatenate([np.zeros(int(plan["pad_before_s"] * sr), np.float32), x,
                        np.zeros(int(plan["pad_after_s"] * sr), np.float32)]).astype(np.float32)
    if plan["noise"] != "none":
        voiced = x[np.abs(x) > 1e-4]
        power = float(np.mean(voiced ** 2)) if voiced.size else 1e-6
        rng = np.random.default_rng(plan["noise_seed"])
        scale = np.sqrt(power / 10 ** (plan["snr_db"] / 10))
        x = x + scale * noise_signal(plan["noise"], x.shape[0], rng)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def espeak_executable() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise AuraError("espeak-ng not found on PATH; install it (Debian: apt-get install espeak-ng)")
    return exe


def _synthesize_one(plan: dict, wav_path: Path, tmp_dir: Path, cfg: SynthConfig, exe: str) -> None:
    with tempfile.NamedTemporaryFile(suffix=".wav", dir=tmp_dir, delete=False) as raw:
        raw_path = Path(raw.name)
    try:
        cmd = voices.espeak_command(plan["text"], str(raw_path), plan["voice"], plan["rate_wpm"],
                                    plan["pitch"], executable=exe)
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or raw_path.stat().st_size == 0:
            raise AuraError(f"espeak-ng failed for {plan['split']} item {plan['index']} (rendition {plan['rendition']}) "
                            f"({' '.join(cmd[:-1])} ...): {done.stderr.strip()}")
        data, sr = sf.read(str(raw_path), dtype="float32", always_2d=True)
    finally:
        raw_path.unlink(missing_ok=True)
    speech = prepare_waveform(data, sr, AudioConfig(sample_rate=cfg.sample_rate),
                              name=f"espeak {plan['split']}:{plan['index']}")
    clip = render(speech, plan, cfg)
    part = wav_path.with_name(wav_path.name + ".part")
    sf.write(str(part), clip, cfg.sample_rate, subtype="PCM_16", format="WAV")
    os.replace(part, wav_path)  # atomic: an interrupted run never leaves a half-written wav


def _write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)
    return True


def _jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def synthesize_split(split: str, out_dir: str | os.PathLike, quick: bool = False, jobs: int = 2,
                     noise: bool = True, cfg: SynthConfig | None = None,
                     indices: list[int] | None = None) -> Path:
    """Synthesise one split into ``<out_dir>/<split>/``; return the path of its ``manifest.jsonl``.

    ``quick`` takes a few items per family (``SynthConfig.quick_per_family``); ``indices``
    (into ``domain.sentences(split)``) overrides the selection. Each item is spoken
    ``cfg.renditions_of(split, quick)`` times. ``jobs`` espeak-ng processes run at once.
    Existing wavs made with the same settings are kept as they are; renditions beyond the
    configured count (from an earlier run with more) are deleted, so a folder reader sees
    exactly the manifest's clips.
    """
    cfg = cfg or SynthConfig()
    if split not in domain.SPLITS:
        raise AuraError(f"unknown split {split!r}; expected one of {', '.join(domain.SPLITS)}")
    if jobs < 1:
        raise AuraError(f"jobs must be >= 1, got {jobs}")
    split_dir = Path(out_dir) / split
    wav_dir = split_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    stale = _settings_changed(split_dir, cfg, noise)
    chosen = sorted(indices) if indices is not None else selected_indices(split, quick, cfg)
    n_renditions = cfg.renditions_of(split, quick)
    plans = [item_plan(split, i, cfg, noise, r) for i in chosen for r in range(n_renditions)]
    _drop_extra_renditions(wav_dir, split, n_renditions)
    todo = [p for p in plans if stale or not (wav_dir / wav_name(split, p["index"], p["rendition"])).exists()]
    _synthesize_plans(todo, split_dir, cfg, jobs)
    return _write_listings(split_dir, plans, _word_times(split_dir, plans, cfg, fresh=stale))


def _settings_changed(split_dir: Path, cfg: SynthConfig, noise: bool) -> bool:
    """Record the synthesis settings in ``synth_settings.json``; True when they differ from the recorded ones
    (every wav of the split is then made again)."""
    settings_path = split_dir / "synth_settings.json"
    signature = json.dumps(cfg.signature(noise), sort_keys=True, indent=1) + "\n"
    stale = settings_path.exists() and settings_path.read_text(encoding="utf-8") != signature
    _write_if_changed(settings_path, signature)
    return stale


def _drop_extra_renditions(wav_dir: Path, split: str, n_renditions: int) -> None:
    """Delete the wavs of renditions beyond ``n_renditions`` (left by an earlier run that made more)."""
    for extra in wav_dir.glob(f"{split}_*_r*.wav"):
        match = _RENDITION_RE.search(extra.name)
        if match and int(match.group(1)) >= n_renditions:
            extra.unlink()


def _synthesize_plans(plans: list[dict], split_dir: Path, cfg: SynthConfig, jobs: int) -> None:
    """Speak and render ``plans`` into ``<split_dir>/wavs``, ``jobs`` espeak-ng processes at once."""
    if not plans:
        return
    exe = espeak_executable()
    with tempfile.TemporaryDirectory(dir=split_dir, prefix=".espeak-") as tmp:
        def work(p: dict) -> None:
            _synthesize_one(p, split_dir / "wavs" / wav_name(p["split"], p["index"], p["rendition"]), Path(tmp), cfg, exe)

        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(work, plans))  # list() re-raises the first failure


def _write_listings(split_dir: Path, plans: list[dict], words: dict[str, list]) -> Path:
    """Write ``manifest.jsonl`` (a row per clip, with how it was made) and ``metadata.jsonl`` (the Hugging Face
    audiofolder's columns); returns the manifest's path."""
    manifest, metadata = [], []
    for p in plans:
        rel = "wavs/" + wav_name(p["split"], p["index"], p["rendition"])
        info = sf.info(str(split_dir / rel))
        manifest.append({
            "audio": rel, "text": p["text"], "answer": p["answer"], "family": p["family"],
            "index": p["index"], "rendition": p["rendition"], "voice": p["voice"], "rate_wpm": p["rate_wpm"], "pitch": p["pitch"],
            "noise": p["noise"], "snr_db": p["snr_db"], "duration_s": round(info.frames / info.samplerate, 3),
            "words": words[rel],
        })
        metadata.append({"file_name": rel, "transcription": p["text"], "text": p["text"],
                         "answer": p["answer"], "family": p["family"], "words": words[rel]})
    manifest_path = split_dir / "manifest.jsonl"
    _write_if_changed(manifest_path, _jsonl(manifest))
    _write_if_changed(split_dir / "metadata.jsonl", _jsonl(metadata))
    return manifest_path


def _word_times(split_dir: Path, plans: list[dict], cfg: SynthConfig, fresh: bool) -> dict[str, list]:
    """``{wav path relative to the split: [[word, start_s, end_s], ...]}`` for every plan (:mod:`.word_times`).

    Kept in ``words.jsonl`` beside the wavs, so a re-run only times clips it has not timed (all of them when the
    synthesis settings changed, and any whose last word does not end where the clip's speech does)."""
    from .word_times import word_times

    path = split_dir / "words.jsonl"
    known: dict[str, list] = {}
    if path.is_file() and not fresh:
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line) if line.strip() else None
            if isinstance(row, dict) and isinstance(row.get("audio"), str):
                known[row["audio"]] = row.get("words")
    out = {}
    sr = cfg.sample_rate
    for p in plans:
        rel = "wavs/" + wav_name(p["split"], p["index"], p["rendition"])
        pads = int(p["pad_before_s"] * sr) + int(p["pad_after_s"] * sr)  # samples render() put around the speech
        speech_s = (sf.info(str(split_dir / rel)).frames - pads) / sr
        words = known.get(rel)
        if not words or abs(words[-1][2] - p["pad_before_s"] - speech_s) > 2e-3:
            words = word_times(p["text"], p["voice"], p["rate_wpm"], p["pitch"], cfg.trim_db, p["pad_before_s"],
                               speech_s)
        out[rel] = words
    _write_if_changed(path, _jsonl([{"audio": rel, "words": w} for rel, w in out.items()]))
    return out


def synthesize_all(out_dir: str | os.PathLike, quick: bool = False, jobs: int = 2,
                   noise: bool = True) -> dict[str, Path]:
    """All three splits; returns ``{split: manifest path}``."""
    return {s: synthesize_split(s, out_dir, quick=quick, jobs=jobs, noise=noise) for s in domain.SPLITS}


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``manifest.jsonl``, each with ``"path"`` (absolute wav path) added."""
    path = Path(path)
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["path"] = str(path.parent / row["audio"])
            rows.append(row)
    return rows
