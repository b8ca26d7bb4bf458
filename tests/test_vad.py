"""VadSegmenter and PushToTalkCollector on synthetic audio (espeak-ng speech in white noise); no audio hardware."""

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import soxr

from app.listening.vad import (
    REASON_MAX_LENGTH,
    REASON_PUSH_TO_TALK,
    REASON_SILENCE,
    PushToTalkCollector,
    VadConfig,
    VadSegmenter,
    rms_db,
    to_pcm16,
)
from aura_model.errors import AuraError

SR = 16000
TOLERANCE_S = 0.15  # allowed error of the detected speech onset/offset
GAP_S = 1.5  # silence before, between and after utterances


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """'turn on the kitchen light' from espeak-ng at 16 kHz, and its true speech bounds in seconds."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng)")
    wav = tmp_path_factory.mktemp("vad") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), "turn on the kitchen light"], check=True)
    audio, rate = sf.read(wav, dtype="float32")
    audio = soxr.resample(audio, rate, SR).astype(np.float32)
    return audio, speech_bounds(audio)


def speech_bounds(x, threshold_db=-50.0, window=SR // 100):
    """First and last sample (as seconds) of the 10 ms windows of a clean signal louder than threshold_db."""
    n = len(x) // window
    levels = np.array([rms_db(x[i * window:(i + 1) * window]) for i in range(n)])
    loud = np.nonzero(levels > threshold_db)[0]
    return loud[0] * window / SR, (loud[-1] + 1) * window / SR


def silence(seconds):
    return np.zeros(int(seconds * SR), dtype=np.float32)


def add_noise(x, noise_db, seed=0):
    noise = np.random.default_rng(seed).standard_normal(len(x)) * 10 ** (noise_db / 20)
    return (x + noise).astype(np.float32)


def feed_randomly(segmenter, x, seed=1, max_chunk=3000):
    """Feed x in random chunk sizes (1..max_chunk samples), then flush; return all segments."""
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, max_chunk))
        out += segmenter.feed(x[i:i + n])
        i += n
    return out + segmenter.flush()


@pytest.mark.parametrize("noise_db", [-45.0, -35.0])
def test_one_utterance_in_noise(speech, noise_db):
    audio, (t0, t1) = speech
    x = add_noise(np.concatenate([silence(GAP_S), audio, silence(GAP_S)]), noise_db)
    true_start, true_end = GAP_S + t0, GAP_S + t1
    segments = feed_randomly(VadSegmenter(), x)
    assert len(segments) == 1, [(s.start_s, s.end_s) for s in segments]
    seg = segments[0]
    assert abs(seg.speech_start_s - true_start) <= TOLERANCE_S, (seg.speech_start_s, true_start)
    assert abs(seg.speech_end_s - true_end) <= TOLERANCE_S, (seg.speech_end_s, true_end)
    assert seg.start_s <= true_start - 0.3, "pre-roll must keep >= 300 ms before the true onset"
    assert seg.end_s >= seg.speech_end_s
    assert seg.reason == REASON_SILENCE
    assert seg.endpoint_delay_s == pytest.approx(VadConfig().hangover_ms / 1000)
    # the samples are exactly the stream between start_s and end_s
    assert seg.samples.dtype == np.float32
    assert len(seg.samples) == round((seg.end_s - seg.start_s) * SR)
    begin = round(seg.start_s * SR)
    np.testing.assert_array_equal(seg.samples, x[begin:begin + len(seg.samples)])


def test_two_utterances(speech):
    audio, (t0, t1) = speech
    x = add_noise(np.concatenate([silence(GAP_S), audio, silence(GAP_S), audio, silence(GAP_S)]), -45.0)
    second = GAP_S + len(audio) / SR + GAP_S
    segments = feed_randomly(VadSegmenter(), x)
    assert len(segments) == 2
    for seg, offset in zip(segments, (GAP_S, second)):
        assert abs(seg.speech_start_s - (offset + t0)) <= TOLERANCE_S
        assert abs(seg.speech_end_s - (offset + t1)) <= TOLERANCE_S
    assert segments[1].start_s >= segments[0].end_s, "segments must not share audio"


@pytest.mark.parametrize("noise_db", [None, -60.0, -45.0, -35.0])
def test_noise_alone_gives_nothing(noise_db):
    x = silence(4.0) if noise_db is None else add_noise(silence(4.0), noise_db)
    segmenter = VadSegmenter()
    assert feed_randomly(segmenter, x) == []
    if noise_db is not None:
        assert segmenter.last_level_db == pytest.approx(noise_db, abs=1.5)


def test_click_shorter_than_min_speech_is_dropped(speech):
    audio, _ = speech
    frame = SR // 100
    loudest = int(np.argmax([rms_db(audio[i:i + frame]) for i in range(0, len(audio) - frame, frame)])) * frame
    burst = audio[max(0, loudest - 800):loudest + 800]  # 100 ms of the loudest speech
    click = silence(0.01)
    click[40:44] = 0.9  # a sharp tick
    x = add_noise(np.concatenate([silence(1.0), burst, silence(1.5), click, silence(1.5)]), -45.0)
    assert feed_randomly(VadSegmenter(), x) == []


def test_max_speech_cuts_a_long_utterance(speech):
    audio, (t0, t1) = speech
    voiced = audio[int(t0 * SR):int(t1 * SR)]
    long = np.concatenate([voiced] * 3)  # ~3.5 s without a pause
    x = add_noise(np.concatenate([silence(1.0), long, silence(1.5)]), -45.0)
    config = VadConfig(max_speech_ms=1500)
    segments = feed_randomly(VadSegmenter(config), x)
    assert len(segments) >= 3
    assert segments[0].reason == REASON_MAX_LENGTH
    for seg in segments:
        assert seg.duration_s <= 1.5 + 1e-9
    for a, b in zip(segments, segments[1:]):
        assert b.start_s >= a.end_s - 1e-9, "no audio is emitted twice"
    assert segments[0].speech_start_s == pytest.approx(1.0, abs=TOLERANCE_S)
    assert segments[-1].speech_end_s == pytest.approx(1.0 + len(long) / SR, abs=TOLERANCE_S)


def test_int16_and_float32_give_the_same_segments(speech):
    audio, _ = speech
    x = add_noise(np.concatenate([silence(1.0), audio, silence(1.0), audio, silence(1.0)]), -40.0)
    pcm = to_pcm16(x)
    from_int = feed_randomly(VadSegmenter(), pcm, seed=2)
    from_float = feed_randomly(VadSegmenter(), pcm.astype(np.float32) / 32768, seed=3)
    assert len(from_int) == len(from_float) == 2
    for a, b in zip(from_int, from_float):
        times = ("start_s", "end_s", "speech_start_s", "speech_end_s")
        assert [getattr(a, t) for t in times] == [getattr(b, t) for t in times]
        np.testing.assert_array_equal(a.samples, b.samples)


def test_reset_keeps_the_callers_clock(speech):
    audio, (t0, _) = speech
    x = add_noise(np.concatenate([silence(1.0), audio, silence(1.0)]), -45.0)
    segmenter = VadSegmenter()
    segmenter.feed(x[:5000])
    segmenter.reset(start_sample=10 * SR)
    (seg,) = feed_randomly(segmenter, x)
    assert abs(seg.speech_start_s - (10.0 + 1.0 + t0)) <= TOLERANCE_S
    assert segmenter.position_s == pytest.approx(10.0 + len(x) / SR)


def test_level_callback_once_per_frame():
    levels = []
    segmenter = VadSegmenter(on_level=lambda db, voiced: levels.append((db, voiced)))
    segmenter.feed(add_noise(silence(1.0), -30.0)[:SR - 100])
    assert len(levels) == (SR - 100) // 480
    assert all(db == pytest.approx(-30.0, abs=1.5) and not voiced for db, voiced in levels)


def test_push_to_talk(speech):
    audio, _ = speech
    ptt = PushToTalkCollector()
    assert ptt.feed(silence(0.5)) == []
    ptt.press()
    assert ptt.feed(audio) == []
    (seg,) = ptt.release()
    assert seg.reason == REASON_PUSH_TO_TALK
    assert (seg.start_s, seg.end_s) == (0.5, pytest.approx(0.5 + len(audio) / SR))
    np.testing.assert_array_equal(seg.samples, audio)
    ptt.press()  # a tap shorter than min_speech_ms is dropped
    ptt.feed(audio[:1600])
    assert ptt.release() == []
    assert ptt.release() == []  # releasing twice is harmless


def test_push_to_talk_cuts_at_max_length():
    ptt = PushToTalkCollector(VadConfig(max_speech_ms=1500))
    ptt.press()
    cut = ptt.feed(add_noise(silence(2.0), -20.0))
    assert [s.duration_s for s in cut] == [1.5]
    (rest,) = ptt.release()
    assert (rest.start_s, rest.end_s) == (1.5, 2.0)


@pytest.mark.parametrize("field, value", [
    ("sample_rate", 22050),
    ("frame_ms", 25),
    ("aggressiveness", 4),
    ("pre_roll_ms", -1),
    ("hangover_ms", 10),
    ("post_roll_ms", 700),
    ("min_speech_ms", -5),
    ("onset_window", 0),
    ("onset_voiced", 6),
    ("max_speech_ms", 800),
    ("snr_gate_db", -3.0),
    ("noise_window_ms", 5),
    ("min_level_db", 3.0),
])
def test_config_validation_names_the_bad_value(field, value):
    with pytest.raises(AuraError, match=f"{field}.*{value}"):
        VadConfig(**{field: value})


def test_config_dict_round_trip():
    config = VadConfig(aggressiveness=3, hangover_ms=450)
    assert VadConfig.from_dict(config.to_dict()) == config
    with pytest.raises(AuraError, match="hangover"):
        VadConfig.from_dict({"hangover": 450})


def test_bad_input_shape_is_refused():
    with pytest.raises(ValueError, match="shape"):
        VadSegmenter().feed(np.zeros((100, 2), dtype=np.float32))
    with pytest.raises(TypeError, match="int32"):
        VadSegmenter().feed(np.zeros(100, dtype=np.int32))
