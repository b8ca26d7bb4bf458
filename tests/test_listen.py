"""`aura listen`: the headless capture + VAD + model pipeline.

The pipeline with a fake microphone (exact answers), the command's errors, and the
real path: a private PulseAudio server (tests/pulse.py) plays espeak-ng speech into a
null sink and `aura listen --once` records it through the sink's monitor.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from app.assets import default_bundle
from app.cli import main
from app.listening.pipeline import HeardAnswer, ListenPipeline, save_segment
from app.listening.vad import REASON_SILENCE
from aura_model.assistant import Assistant
from aura_model.config import GenerationSettings, RuntimeConfig
from helpers import clip, make_bundle
from pulse import play, synthesize, wait_for

MAX_NEW = 8
GEN = GenerationSettings(max_new_tokens=MAX_NEW)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The shipped demo bundle when there is one, else a tiny random one (its answers are noise)."""
    shipped = default_bundle()
    return shipped if shipped is not None else make_bundle(tmp_path_factory.mktemp("listen"), "llama")[0]


@pytest.fixture(scope="module")
def assistant(bundle):
    return Assistant.open(bundle, runtime=RuntimeConfig(device="cpu"))


class FakeMic:
    """Half a second of silence, a speech-like clip, then silence; 30 ms chunks at ~10x real time."""

    def __init__(self, signal):
        self.signal, self.pos = signal, 0

    def start(self):
        pass

    def stop(self):
        pass

    def read(self, timeout=None):
        time.sleep(0.003)
        chunk = self.signal[self.pos:self.pos + 480]
        self.pos += 480
        return chunk if len(chunk) == 480 else np.zeros(480, dtype=np.float32)


def _utterance() -> np.ndarray:
    quiet = np.zeros(8000, dtype=np.float32)
    return np.concatenate([quiet, clip(1.2, seed=3), quiet, quiet])


def test_pipeline_answers_an_utterance_exactly_as_the_assistant(assistant, tmp_path):
    pipeline = ListenPipeline(assistant, gen=GEN, stream_factory=lambda: FakeMic(_utterance()))
    pipeline.open(timeout_s=30)
    try:
        heard = pipeline.next_segment(timeout_s=60)
    finally:
        pipeline.close()
    assert heard is not None and heard.segment.reason == REASON_SILENCE
    items = list(pipeline.stream_answer(heard))
    done = items[-1]
    assert isinstance(done, HeardAnswer)
    expected = assistant.answer(audio=heard.segment.samples, gen=GEN)
    assert expected.strip(), "the model gave no answer to the utterance: nothing below would be checked"
    assert done.text == expected and "".join(items[:-1]) == expected
    # end of speech -> first token includes the VAD hang-over that passed before the segment was handed over
    assert done.first_token_ms >= heard.segment.endpoint_delay_s * 1000 * 0.9
    assert done.model_first_token_ms <= done.first_token_ms
    saved = save_segment(tmp_path, 1, heard.segment)
    samples, rate = sf.read(saved, dtype="float32")
    assert rate == 16000 and np.array_equal(samples, heard.segment.samples)  # the wav is exactly what was heard


def test_an_utterance_heard_while_answering_waits_its_turn(assistant):
    pipeline = ListenPipeline(assistant, gen=GEN, stream_factory=lambda: FakeMic(np.tile(_utterance(), 2)))
    pipeline.open(timeout_s=30)
    try:
        first = pipeline.next_segment(timeout_s=60)
        assert first is not None
        assert wait_for(lambda: len(pipeline.conversation.waiting) == 1, 60), "the second utterance was not heard"
        assert pipeline.conversation.current.payload is first  # the second waits for the first's answer
        assert isinstance(list(pipeline.stream_answer(first))[-1], HeardAnswer)
        second = pipeline.next_segment(timeout_s=30)
    finally:
        pipeline.close()
    assert second is not None and second.segment.start_s >= first.segment.end_s


def test_pipeline_open_fails_with_the_device_error(assistant):
    from aura_model.errors import AuraError

    def broken():
        raise AuraError("fake microphone is unplugged")

    pipeline = ListenPipeline(assistant, stream_factory=broken)
    with pytest.raises(AuraError, match="unplugged"):
        pipeline.open(timeout_s=5)
    assert not pipeline.listener.running


def test_listen_with_an_unknown_microphone_is_one_line_on_stderr(bundle, capsys):
    code = main(["listen", "--bundle", str(bundle), "--device", "no-such-microphone-xyz", "--compute-device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("aura: error: ") and err.count("\n") == 1, err
    assert "no-such-microphone-xyz" in err or "no audio input device" in err


def test_listen_help_names_the_microphone_and_compute_options(capsys):
    with pytest.raises(SystemExit):
        main(["listen", "--help"])
    out = capsys.readouterr().out
    for option in ("--device", "--once", "--bundle", "--compute-device", "--quantization", "--hangover-ms"):
        assert option in out


# -- the real capture path through PulseAudio ----------------------------------------------------


def _aura_command() -> list[str]:
    exe = shutil.which("aura", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "app.cli"]


def _spoken_request() -> str:
    """A request from the demo domain (what the default model is trained for)."""
    from aura_model.demo.domain import sentences

    return next(s for s in sentences("train") if s["family"] == "arithmetic")["text"]


@pytest.mark.pulse
def test_listen_once_answers_speech_played_into_pulseaudio(pulse_device, bundle, tmp_path):
    wav = synthesize(tmp_path / "ask.wav", _spoken_request())
    saved = tmp_path / "heard"
    cmd = _aura_command() + ["listen", "--device", pulse_device, "--once", "--bundle", str(bundle),
                             "--compute-device", "cpu", "--max-new-tokens", str(MAX_NEW), "--save-audio", str(saved),
                             "--timeout", "30", "--stats"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        assert wait_for(lambda: "listening\n" in err_lines or proc.poll() is not None, 90), "no 'listening' in 90 s"
        assert "listening\n" in err_lines, "".join(err_lines)
        play(wav)
        out = proc.stdout.read()
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    err = "".join(err_lines)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "end of speech to first token" in err
    heard = saved / "utterance-001.wav"
    assert heard.is_file()
    samples, rate = sf.read(heard, dtype="float32")
    assert rate == 16000 and 1.0 < len(samples) / rate < 6.0  # the request, not the whole recording
    direct = Assistant.open(bundle, runtime=RuntimeConfig(device="cpu")).answer(audio=str(heard), gen=GEN)
    assert out == direct + "\n"  # exactly the model's answer to what was captured
    # Whether that answer is *right* is the demo model's accuracy, measured over the whole spoken
    # test split in assets/default_bundle/report.md, not by one sentence here.
