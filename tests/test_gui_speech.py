"""Spoken replies and playback: the espeak-ng engine, stale replies, and real output through PulseAudio."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from app.listening.stream import MicrophoneStream
from app.listening.vad import rms_db
from app.workers.playback import Playback, play_blocking
from app.workers.speech import EspeakEngine, SpeechOutput

pytestmark = pytest.mark.usefixtures("main_thread_gc")  # no Qt object dies in a worker thread


WAIT_MS = 30_000  # for what takes milliseconds on an idle machine; a busy one must not fail it
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


@needs_espeak
def test_espeak_engine_lists_voices_and_speaks():
    engine = EspeakEngine()
    voices = engine.voices()
    assert any(v.id == "en-us" for v in voices)
    assert not any(v.id.startswith("mb") for v in voices)  # mbrola voices need extra packages
    samples, rate = engine.synthesize("the answer is twenty two", "en-us", 175)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 0.8 < len(samples) / rate < 4.0 and rms_db(samples) > -40


def test_missing_engine_says_how_to_install_it():
    engine = EspeakEngine("no-such-tts-binary")
    assert not engine.available() and engine.voices() == []
    with pytest.raises(Exception, match="espeak-ng"):
        engine.synthesize("hi", "", 175)


class SlowEngine:
    name = "slow"

    def available(self):
        return True

    def voices(self):
        return []

    def synthesize(self, text, voice, rate):
        time.sleep(0.2 if text == "first" else 0.01)
        return np.full(160, 0.1, dtype=np.float32), 16000


def test_a_newer_reply_replaces_one_still_being_synthesised(qtbot):
    speech = SpeechOutput(engine=SlowEngine())
    ready = []
    speech.ready.connect(ready.append)
    speech.say(1, "first")
    speech.say(2, "second")
    qtbot.waitUntil(lambda: len(ready) == 1, timeout=WAIT_MS)
    for thread in threading.enumerate():  # both syntheses end (the first is dropped), their signals are posted
        if thread.name == "aura-tts":
            thread.join(WAIT_MS / 1000)
    qtbot.wait(50)  # and delivered
    assert [a.turn for a in ready] == [2]


def test_playback_reports_start_and_end_and_stops_early(qtbot):
    def fake_play(samples, rate, stop):
        stop.wait(len(samples) / rate)

    playback = Playback(play_fn=fake_play)
    with qtbot.waitSignals([playback.started, playback.finished], timeout=WAIT_MS):
        playback.play("short", np.zeros(1600, np.float32), 16000)
    assert playback.playing is None
    playback.play("long", np.zeros(16000 * 600, np.float32), 16000)  # ten minutes: ending in WAIT_MS means stopped
    assert playback.playing.key == "long"
    with qtbot.waitSignal(playback.finished, timeout=WAIT_MS):
        playback.stop()
    assert playback.playing is None


@pytest.mark.pulse
@needs_espeak
def test_spoken_reply_reaches_the_speakers(pulse_device):
    """espeak-ng's reply played on the default output (the null sink) is heard on the sink's monitor."""
    samples, rate = EspeakEngine().synthesize("the kitchen light is on", "en-us", 175)
    levels = []
    with MicrophoneStream(pulse_device) as mic:
        stop = threading.Event()
        player = threading.Thread(target=play_blocking, args=(samples, rate, stop))
        started = time.monotonic()
        player.start()
        while player.is_alive() or time.monotonic() - started < 1.0:
            chunk = mic.read(timeout=0.5)
            if chunk is not None:
                levels.append(rms_db(chunk))
        player.join()
    assert max(levels) > -35  # speech, not the keep-alive silence
    long = np.tile(samples, 200)  # minutes of speech: ending within WAIT_MS means stopped
    stop = threading.Event()
    player = threading.Thread(target=play_blocking, args=(long, rate, stop))
    player.start()
    time.sleep(0.3)
    stop.set()
    player.join(WAIT_MS / 1000)
    assert not player.is_alive()
