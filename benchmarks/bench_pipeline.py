"""Latency of one spoken turn through the app's pipeline, and the CPU the idle listening loop costs.

    python benchmarks/bench_pipeline.py [--bundle DIR] [--runs 5] [--device NAME] [--idle-seconds 5]

1. An espeak-ng request with silence around it (and faint noise, like a room) is fed
   through :class:`VadSegmenter` in 30 ms chunks, as the microphone delivers it; the
   endpoint delay is the stream time from the true end of speech (from the clean
   signal) to the moment the segment is handed over.
2. The segment goes through the model's steps one by one, each timed (median of
   ``--runs``): log-mel features + prompt tokens, the AudioEmbedding, the LLM prefill
   over the prompt with the audio spliced in, and the first token (sampling + decode).
   ``Assistant.stream`` is timed end to end as a cross-check.
3. A :class:`Listener` idles on a microphone with only room noise for
   ``--idle-seconds``; its CPU use is the process CPU time over wall time (target:
   < 5 % of one core). ``--device`` listens to a real input (e.g. ``pulse``) instead
   of a simulated one that delivers 30 ms blocks in real time.

The model is ``--bundle``, else the shipped demo bundle, else a tiny untrained one
(built as scripts/smoke.py does): then the model timings show the pipeline's
overhead, not a real LLM's speed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from app.listening import Listener, VadConfig, VadSegmenter, rms_db  # noqa: E402

SR = 16000
CHUNK = 480  # 30 ms at 16 kHz: one PortAudio block as MicrophoneStream reads it
REQUEST = "turn on the kitchen light"


def spoken_request(text: str = REQUEST) -> tuple[np.ndarray, float]:
    """16 kHz speech between 1 s and 2 s of -60 dBFS noise, and the stream time where the speech ends."""
    import soundfile as sf
    import soxr

    if shutil.which("espeak-ng") is None:
        sys.exit("bench: espeak-ng is missing (apt install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "request.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), text], check=True)
        audio, rate = sf.read(str(wav), dtype="float32")
    speech = soxr.resample(audio, rate, SR).astype(np.float32)
    window = SR // 100
    loud = [i for i in range(0, len(speech) - window, window) if rms_db(speech[i:i + window]) > -50]
    end_in_speech = (loud[-1] + window) / SR
    rng = np.random.default_rng(0)
    signal = np.concatenate([np.zeros(SR, np.float32), speech, np.zeros(2 * SR, np.float32)])
    signal = signal + (rng.standard_normal(len(signal)) * 0.001).astype(np.float32)  # -60 dBFS room noise
    return signal, 1.0 + end_in_speech


def measure_vad(signal: np.ndarray, speech_end_s: float, config: VadConfig):
    segmenter = VadSegmenter(config)
    started = time.perf_counter()
    for i in range(0, len(signal), CHUNK):
        segments = segmenter.feed(signal[i:i + CHUNK])
        if segments:
            decided_s = (i + CHUNK) / SR  # stream time when the chunk that completed it had arrived
            cost = time.perf_counter() - started
            frames = (i + CHUNK) // CHUNK
            return segments[0], (decided_s - speech_end_s) * 1000, cost / frames * 1e6
    sys.exit("bench: the VAD found no utterance in the request")


def measure_model(assistant, samples: np.ndarray, runs: int) -> dict[str, float]:
    import torch

    from aura_model.config import GenerationSettings
    from aura_model.model import sample_next

    model, gen = assistant.model, GenerationSettings(max_new_tokens=1)
    times: dict[str, list[float]] = {"features + prompt": [], "embedding": [], "prefill": [], "first token": [],
                                     "stream(): first piece": []}
    for _ in range(runs + 1):  # the first run warms up and is dropped
        t0 = time.perf_counter()
        prepared = assistant.prepare([samples])
        t1 = time.perf_counter()
        with torch.no_grad():
            audio_embeds, _ = model.embed_audio(prepared.features, prepared.frame_lengths)
            t2 = time.perf_counter()
            enc = prepared.encoded
            out = model.forward(enc.input_ids, enc.attention_mask, enc.position_ids, enc.audio_spans,
                                audio_embeds=audio_embeds, use_cache=True)
            t3 = time.perf_counter()
            token = int(sample_next(out.logits[:, -1, :], gen).item())
            assistant.processor.decode([token])
            t4 = time.perf_counter()
        s0 = time.perf_counter()
        next(iter(assistant.stream(samples, gen=gen)), None)
        s1 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, s1 - s0)):
            times[key].append(value * 1000)
    return {k: statistics.median(v[1:]) for k, v in times.items()}


class RoomMicrophone:
    """Room noise in 30 ms blocks at real time, handed out like MicrophoneStream.read (blocking until due)."""

    def __init__(self):
        self.rng = np.random.default_rng(1)
        self.next_at = time.monotonic()

    def start(self):
        self.next_at = time.monotonic()

    def stop(self):
        pass

    def read(self, timeout=None):
        self.next_at += CHUNK / SR
        delay = self.next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        return (self.rng.standard_normal(CHUNK) * 0.001).astype(np.float32)


def measure_idle_cpu(seconds: float, device: str | None) -> tuple[float, int]:
    """Percent of one core the Listener costs while nobody speaks, and the chunks it processed."""
    levels = []
    factory = None if device else RoomMicrophone
    listener = Listener(lambda seg: None, on_level=levels.append, device=device, stream_factory=factory)
    listener.start()
    if not listener.stream_ok.wait(10):
        listener.stop()
        sys.exit(f"bench: the input device {device!r} delivered no audio")
    time.sleep(0.5)  # past start-up
    n0, cpu0, wall0 = len(levels), time.process_time(), time.perf_counter()
    time.sleep(seconds)
    cpu, wall, n = time.process_time() - cpu0, time.perf_counter() - wall0, len(levels) - n0
    listener.stop()
    return 100 * cpu / wall, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", help="AuRA bundle (default: the demo bundle, else a tiny untrained one)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs of the model steps (median reported)")
    ap.add_argument("--compute-device", default="cpu", help="auto | cpu | cuda | cuda:N (default: cpu)")
    ap.add_argument("--device", help="listen to this input device for the idle test (default: simulated)")
    ap.add_argument("--idle-seconds", type=float, default=5.0)
    args = ap.parse_args()

    from app.assets import default_bundle
    from aura_model.backends import quiet_libraries

    quiet_libraries()
    import torch

    from aura_model.assistant import Assistant
    from aura_model.config import RuntimeConfig

    bundle = args.bundle or default_bundle()
    note = ""
    if bundle is None:
        from smoke import build_bundle

        bundle, note = build_bundle(), " (tiny UNTRAINED model: no demo bundle ships yet)"
    assistant = Assistant.open(bundle, runtime=RuntimeConfig(device=args.compute_device))
    info = assistant.describe()

    signal, speech_end = spoken_request()
    config = VadConfig()
    segment, endpoint_ms, vad_us = measure_vad(signal, speech_end, config)
    steps = measure_model(assistant, segment.samples, args.runs)
    idle_pct, chunks = measure_idle_cpu(args.idle_seconds, args.device)

    model_ms = sum(v for k, v in steps.items() if k != "stream(): first piece")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"AuRA pipeline benchmark — {info['device']}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {load}")
    print(f"model: {bundle}{note}; {info['quantization']} {info['dtype']}")
    print(f"request: '{REQUEST}' (espeak-ng), segment {segment.duration_s:.2f} s, "
          f"{segment.speech_duration_s:.2f} s of speech\n")
    print(f"{'step':<44}{'ms':>10}")
    print("-" * 54)
    print(f"{'VAD end-point delay (hang-over ' + str(config.hangover_ms) + ' ms)':<44}{endpoint_ms:>10.1f}")
    for name, ms in steps.items():
        if name != "stream(): first piece":
            print(f"{name:<44}{ms:>10.1f}")
    print("-" * 54)
    print(f"{'model: segment -> first token':<44}{model_ms:>10.1f}")
    print(f"{'end of speech -> first token':<44}{endpoint_ms + model_ms:>10.1f}")
    print(f"{'(cross-check: Assistant.stream first piece)':<44}{steps['stream(): first piece']:>10.1f}\n")
    print(f"VAD cost: {vad_us:.0f} µs of CPU per 30 ms frame ({vad_us / 30000 * 100:.2f} % of real time)")
    source = f"input device {args.device!r}" if args.device else "simulated microphone (room noise, real time)"
    verdict = "OK" if idle_pct < 5 else "over the 5 % target"
    print(f"idle listening CPU: {idle_pct:.2f} % of one core over {args.idle_seconds:g} s, {chunks} chunks, "
          f"{source} — {verdict}")


if __name__ == "__main__":
    main()
