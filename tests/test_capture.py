"""Capture: device lookup, the Listener worker with a fake source, and the real path through PulseAudio.

The ``pulse`` tests use the private PulseAudio server of tests/pulse.py: espeak-ng
speech played into its null sink is recorded through PortAudio's ALSA ``pulse`` device.
"""

import threading
import time

import numpy as np
import pytest
import soundfile as sf
import soxr

from app.listening.devices import list_input_devices, resolve_input_device
from app.listening.listener import Listener
from app.listening.stream import MicrophoneStream
from app.listening.vad import REASON_PUSH_TO_TALK, VadSegmenter, rms_db
from aura_model.errors import AuraError
from pulse import play, synthesize, wait_for

SR = 16000
WAIT_S = 30.0  # for what takes a fraction of a second on an idle machine; a busy one must not fail it


def speech_duration(x, rate, threshold_db=-50.0):
    """Seconds from the first to the last 10 ms window of a clean signal louder than threshold_db."""
    window = rate // 100
    levels = [rms_db(x[i:i + window]) for i in range(0, len(x) - window + 1, window)]
    loud = np.nonzero(np.array(levels) > threshold_db)[0]
    return (loud[-1] + 1 - loud[0]) * window / rate


# -- device lookup (whatever this machine has) ---------------------------------------------------


def test_list_input_devices_returns_a_list():
    devices = list_input_devices()
    assert isinstance(devices, list)
    for d in devices:
        assert set(d) == {"index", "name", "channels", "default_samplerate"}
        assert d["channels"] > 0


def test_unknown_device_name_is_an_aura_error():
    with pytest.raises(AuraError, match="no-such-microphone|no audio input device"):
        MicrophoneStream("no-such-microphone-xyz")


def test_unknown_device_index_is_an_aura_error():
    with pytest.raises(AuraError, match="12345|no audio input device"):
        resolve_input_device(12345)


# -- Listener logic with a fake source (no hardware) ---------------------------------------------


class FakeSource:
    """Plays a signal in 30 ms chunks, in real time / 10, then silence; fails when told to."""

    def __init__(self, signal, fail_after=None):
        self.signal, self.fail_after, self.pos, self.started = signal, fail_after, 0, False

    def start(self):
        self.started = True

    def stop(self):
        self.started = False

    def read(self, timeout=None):
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise AuraError("fake device unplugged")
        time.sleep(0.003)
        chunk = self.signal[self.pos:self.pos + 480]
        if len(chunk) < 480:
            chunk = np.zeros(480, dtype=np.float32)
        self.pos += 480
        return chunk


@pytest.fixture(scope="module")
def utterance(tmp_path_factory):
    """espeak-ng speech at 16 kHz between 1 s of silence on each side, and its clean speech duration."""
    wav = synthesize(tmp_path_factory.mktemp("capture") / "speech.wav")
    audio, rate = sf.read(wav, dtype="float32")
    audio = soxr.resample(audio, rate, SR).astype(np.float32)
    pad = np.zeros(SR, dtype=np.float32)
    return np.concatenate([pad, audio, pad]), speech_duration(audio, SR)


def test_listener_emits_segments_and_levels(utterance):
    signal, duration = utterance
    segments, levels = [], []
    listener = Listener(segments.append, on_level=levels.append, stream_factory=lambda: FakeSource(signal))
    listener.start()
    try:
        assert wait_for(lambda: segments, WAIT_S)
    finally:
        listener.stop()
    assert not listener.running
    assert len(segments) == 1
    assert segments[0].speech_duration_s == pytest.approx(duration, abs=0.2)
    assert max(levels) > -40 and min(levels) == -100.0


def test_listener_discards_audio_while_muted(utterance):
    signal, _ = utterance
    segments, sources = [], []

    def factory():
        sources.append(FakeSource(signal))
        return sources[-1]

    listener = Listener(segments.append, stream_factory=factory)
    listener.mute(True)
    listener.start()
    try:  # the whole utterance and a second of silence after it pass
        assert wait_for(lambda: sources and sources[0].pos > len(signal) + SR, WAIT_S)
    finally:
        listener.stop()
    assert segments == []


def test_listener_push_to_talk(utterance):
    signal, _ = utterance
    segments, levels = [], []
    listener = Listener(segments.append, on_level=levels.append, stream_factory=lambda: FakeSource(np.tile(signal, 10)))
    listener.set_push_to_talk(True)
    listener.start()
    try:
        listener.ptt_press()
        levels.clear()
        assert wait_for(lambda: len(levels) >= 30, WAIT_S)  # held for ~30 chunks (0.9 s of audio)
        listener.ptt_release()
        assert wait_for(lambda: segments, WAIT_S)
        levels.clear()
        assert wait_for(lambda: len(levels) >= 30, WAIT_S)  # without a press, nothing more arrives though speech plays
    finally:
        listener.stop()
    assert len(segments) == 1 and segments[0].reason == REASON_PUSH_TO_TALK
    assert segments[0].duration_s > 0.5  # a press is applied within a chunk or two of being asked for


def test_listener_reports_errors_and_reopens(utterance):
    signal, _ = utterance
    opened, errors, segments = [], [], []

    def factory():
        opened.append(1)
        if len(opened) == 2:
            raise AuraError("fake device still missing")
        # the first source dies after 0.5 s of audio; the third plays the utterance
        return FakeSource(signal, fail_after=SR // 2 if len(opened) == 1 else None)

    listener = Listener(segments.append, on_error=errors.append, stream_factory=factory, retry_s=0.05)
    listener.start()
    try:
        assert wait_for(lambda: segments, WAIT_S)
    finally:
        listener.stop()
    assert errors == ["fake device unplugged", "fake device still missing"]
    assert len(opened) == 3 and len(segments) == 1


def test_listener_survives_a_failing_callback(utterance):
    signal, _ = utterance
    errors = []

    def broken(segment):
        raise RuntimeError("boom")

    listener = Listener(broken, on_error=errors.append, stream_factory=lambda: FakeSource(signal))
    listener.start()
    try:
        assert wait_for(lambda: errors, WAIT_S)
        assert listener.running
    finally:
        listener.stop()
    assert "boom" in errors[0]


# -- the real capture path through PulseAudio ----------------------------------------------------


@pytest.fixture(scope="module")
def played_speech(tmp_path_factory):
    """espeak-ng wav (22.05 kHz) and its clean speech duration."""
    wav = synthesize(tmp_path_factory.mktemp("play") / "speech.wav")
    audio, rate = sf.read(wav, dtype="float32")
    return wav, speech_duration(audio, rate)


@pytest.mark.pulse
def test_listener_records_speech_through_pulseaudio(pulse_device, played_speech):
    wav, duration = played_speech
    segments, levels, errors = [], [], []
    listener = Listener(segments.append, on_level=levels.append, on_error=errors.append, device=pulse_device)
    listener.start()
    try:
        assert wait_for(lambda: len(levels) >= 5, WAIT_S), f"no audio from {pulse_device!r}: {errors}"
        play(wav)
        assert wait_for(lambda: segments, WAIT_S), f"no segment; errors: {errors}"
        time.sleep(0.3)
    finally:
        listener.stop()
    assert errors == []
    assert len(segments) == 1
    assert segments[0].speech_duration_s == pytest.approx(duration, abs=0.5)
    assert segments[0].sample_rate == SR and rms_db(segments[0].samples) > -40


@pytest.mark.pulse
def test_resampled_capture_through_pulseaudio(pulse_device, played_speech):
    """The device opened at 44.1 kHz: read() still hands out 16 kHz, resampled with soxr."""
    wav, duration = played_speech
    chunks = []
    with MicrophoneStream(pulse_device, device_samplerate=44100) as mic:
        assert mic.samplerate == 44100
        player = threading.Thread(target=play, args=(wav,))
        started = time.monotonic()
        player.start()
        while player.is_alive() or time.monotonic() - started < 2.5:
            chunk = mic.read(timeout=0.5)
            if chunk is not None:
                chunks.append(chunk)
        player.join()
        elapsed = time.monotonic() - started
    audio = np.concatenate(chunks)
    assert audio.dtype == np.float32 and audio.ndim == 1
    # 16 kHz out, whatever the device rate: never more audio than time passed (44.1 kHz unconverted would be
    # 2.76x), and most of it read even when a busy machine leaves some unread in the queue at the end
    assert 0.5 * elapsed < len(audio) / SR < elapsed + 0.6
    segmenter = VadSegmenter()
    segments = segmenter.feed(audio) + segmenter.flush()
    assert len(segments) == 1
    assert segments[0].speech_duration_s == pytest.approx(duration, abs=0.5)
