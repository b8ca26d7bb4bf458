"""The Chat window, offscreen (pytest-qt): turns in, streamed answers out, Stop, settings, errors.

Every window gets its own QSettings ini file in tmp_path, a fake microphone (no
audio hardware), and, where speech is involved, a fake TTS engine and speaker.
Answers are compared exactly with a direct greedy ``Assistant.answer`` call on the
same input, so the tests hold for the shipped demo bundle and for the tiny random
bundle used while none ships (whose answers are noise).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import QApplication

from app.assets import default_bundle
from app.listening.vad import REASON_PUSH_TO_TALK, REASON_SILENCE
from app.settings import Settings, load_settings, settings_store
from app.widgets.main_window import MainWindow
from app.widgets.message_bubble import ASSISTANT, USER
from app.workers.speech import Voice
from aura_model.assistant import Assistant
from aura_model.config import GenerationSettings, RuntimeConfig
from aura_model.errors import AuraError
from aura_model.testing import save_tiny_base
from helpers import clip, make_bundle, write_wav

pytestmark = pytest.mark.usefixtures("main_thread_gc")  # no Qt object dies in a worker thread


MAX_NEW = 12
GEN = GenerationSettings(max_new_tokens=MAX_NEW)
ANSWER_TIMEOUT_MS = 60_000
EVENT_TIMEOUT_MS = 30_000  # for things that take milliseconds when the machine is idle; a busy one must not fail them


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The shipped demo bundle when there is one, else a tiny random one."""
    shipped = default_bundle()
    return shipped if shipped is not None else make_bundle(tmp_path_factory.mktemp("gui"), "llama")[0]


@pytest.fixture(scope="module")
def chatty_bundle(tmp_path_factory, bundle):
    """A model that talks on and on (the tiny random one): what Stop and the event-loop test need."""
    return bundle if default_bundle() is None else make_bundle(tmp_path_factory.mktemp("chatty"), "llama")[0]


@pytest.fixture(scope="module")
def assistant(bundle):
    return Assistant.open(bundle, runtime=RuntimeConfig(device="cpu"))


class FakeMic:
    """A microphone that plays ``signal`` (then silence) in 30 ms chunks; ``fail_after`` samples, it breaks."""

    def __init__(self, signal=None, fail_after=None, speed=10.0):
        self.signal = np.zeros(0, np.float32) if signal is None else signal
        self.fail_after, self.speed, self.pos = fail_after, speed, 0

    def start(self):
        pass

    def stop(self):
        pass

    def read(self, timeout=None):
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise AuraError("fake microphone unplugged")
        time.sleep(0.03 / self.speed)
        chunk = self.signal[self.pos:self.pos + 480]
        self.pos += 480
        return chunk if len(chunk) == 480 else np.zeros(480, dtype=np.float32)


def silent_mic(device):
    return FakeMic(speed=1.0)


def utterance() -> np.ndarray:
    quiet = np.zeros(8000, dtype=np.float32)
    return np.concatenate([quiet, clip(1.2, seed=5), quiet, quiet])


class FakeEngine:
    """A TTS engine that 'says' half a second of tone."""

    name = "fake"

    def available(self):
        return True

    def voices(self):
        return [Voice("fake-voice", "Fake voice")]

    def synthesize(self, text, voice, rate):
        t = np.arange(8000) / 16000
        return (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000


class FakeSpeaker:
    """Stands in for the sound card: 'plays' for the sound's duration (or until stopped)."""

    def __init__(self):
        self.played = []

    def __call__(self, samples, rate, stop):
        self.played.append((len(samples), rate))
        stop.wait(len(samples) / rate)


@pytest.fixture
def ini(tmp_path):
    return tmp_path / "aura.ini"


@pytest.fixture
def make_window(qtbot, ini, bundle):
    """make_window(**settings) -> a shown MainWindow whose model is loaded (unless wait=False)."""

    def make(store_path: Path | None = None, mic=silent_mic, engine=None, speaker=None, wait=True,
             **values) -> MainWindow:
        store = settings_store(store_path or ini)
        if store_path is None:
            preset = {"model/bundle": str(bundle), "model/device": "cpu", "chat/max_new_tokens": MAX_NEW}
            for key, value in {**preset, **{k.replace("__", "/"): v for k, v in values.items()}}.items():
                store.setValue(key, value)
            store.sync()
        window = MainWindow(store, stream_factory=mic, speech_engine=engine or FakeEngine(),
                            play_fn=speaker or FakeSpeaker())
        qtbot.addWidget(window)
        window.show()
        if wait:
            qtbot.waitUntil(lambda: window.chat.model_state != "loading", timeout=ANSWER_TIMEOUT_MS)
            assert window.chat.model_state == "ready", window.chat.banner("model") and window.chat.banner("model").text
        return window

    return make


def answer_of(qtbot, window, action):
    """Run ``action`` and return (AnswerDone, streamed pieces) of the turn it starts."""
    pieces = []
    window.model.worker.token.connect(lambda p: pieces.append(p.text))  # runs on the worker thread
    with qtbot.waitSignal(window.chat.answered, timeout=ANSWER_TIMEOUT_MS) as blocker:
        action()
    return blocker.args[0], pieces


def drop(window, path: Path) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    if not enter.isAccepted():
        return False
    event = QDropEvent(QPointF(20, 20), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                       Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, event)
    return True


# -- turns ------------------------------------------------------------------------------------------


def test_dropped_wav_yields_the_streamed_answer(qtbot, make_window, assistant, tmp_path):
    speaker = FakeSpeaker()
    window = make_window(speaker=speaker)
    wav = write_wav(tmp_path / "question.wav", clip(1.2, seed=4))
    done, pieces = answer_of(qtbot, window, lambda: drop(window, wav))
    expected = assistant.answer(audio=str(wav), gen=GEN)
    assert done.text == expected
    assert "".join(pieces) == expected and (len(pieces) > 1 or len(expected) < 3)  # streamed piece by piece
    user, answer = window.chat.view.bubbles
    assert user.role == USER and user.clip.caption.text().startswith("1.2 s") and "question.wav" in user.clip.caption.text()
    assert answer.role == ASSISTANT and answer.text == expected and answer.state == "done"
    user.clip.play_button.click()  # the recording plays back
    qtbot.waitUntil(lambda: bool(speaker.played), timeout=EVENT_TIMEOUT_MS)
    assert speaker.played[0] == (len(clip(1.2, seed=4)), 16000)


def test_not_an_audio_file_is_refused_with_a_message(qtbot, make_window, tmp_path):
    window = make_window()
    text_file = tmp_path / "notes.txt"
    text_file.write_text("hello")
    assert not drop(window, text_file)  # the drag is not even accepted
    corrupt = tmp_path / "broken.wav"
    corrupt.write_bytes(b"RIFF....WAVEfmt garbage")
    assert not window.chat.submit_file(corrupt)
    assert "broken.wav" in window.chat.banner("file").text
    assert window.chat.view.bubbles == []


def test_silent_file_fails_in_its_bubble_and_the_next_turn_works(qtbot, make_window, assistant, tmp_path):
    window = make_window()
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32))
    window.chat.submit_file(silent)
    qtbot.waitUntil(lambda: window.chat.view.bubbles[-1].state == "failed", timeout=ANSWER_TIMEOUT_MS)
    assert "silent" in window.chat.view.bubbles[-1].text
    done, _ = answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    assert done.text == assistant.answer(text="hello", gen=GEN)


def test_typed_question_yields_the_answer(qtbot, make_window, assistant):
    window = make_window()
    field = window.chat.composer.input
    qtbot.keyClicks(field, "what is the capital of france")
    done, pieces = answer_of(qtbot, window, lambda: qtbot.keyClick(field, Qt.Key.Key_Return))
    expected = assistant.answer(text="what is the capital of france", gen=GEN)
    assert done.text == expected == "".join(pieces)
    assert field.text() == ""
    assert [b.text for b in window.chat.view.bubbles] == ["what is the capital of france", expected]
    assert "latency" in window.status.latency.text() and "ms" in window.status.latency.text()
    assert window.status.device.text().startswith("CPU")
    assert "RAM" in window.status.memory.text()


def test_stop_interrupts_generation(qtbot, make_window, chatty_bundle):
    window = make_window(model__bundle=str(chatty_bundle), chat__max_new_tokens=200)
    first = []
    window.model.worker.token.connect(lambda p: first.append(time.perf_counter()))
    with qtbot.waitSignal(window.chat.answered, timeout=ANSWER_TIMEOUT_MS) as blocker:
        window.chat.submit_text("hello")
        qtbot.waitUntil(lambda: len(first) >= 3, timeout=ANSWER_TIMEOUT_MS)
        assert window.chat.composer.stop.isVisible()
        stopped_at = time.perf_counter()
        window.chat.composer.stop.click()
    done = blocker.args[0]
    print(f"stop -> answer_done: {(time.perf_counter() - stopped_at) * 1000:.0f} ms")  # information, not a limit
    assert done.stopped
    full = Assistant.open(chatty_bundle, runtime=RuntimeConfig(device="cpu")).answer(
        text="hello", gen=GenerationSettings(max_new_tokens=200))
    assert full.startswith(done.text) and len(done.text) < len(full)  # between two tokens, not at max_new_tokens
    assert window.chat.view.bubbles[-1].state == "stopped"
    assert not window.chat.composer.stop.isVisible()
    done, _ = answer_of(qtbot, window, lambda: window.chat.submit_text("hi"))  # the worker takes the next turn
    assert not done.stopped


def test_turns_are_answered_one_at_a_time_in_order(qtbot, make_window, assistant):
    window = make_window()
    done = []
    window.chat.answered.connect(done.append)
    window.chat.submit_text("hello")
    window.chat.submit_text("what is the capital of france")
    waiting = window.chat.view.bubbles[3]
    assert window.chat.busy and waiting.state == "waiting" and "previous answer" in waiting.meta.text()
    qtbot.waitUntil(lambda: len(done) == 2, timeout=2 * ANSWER_TIMEOUT_MS)
    assert [d.text for d in done] == [assistant.answer(text=t, gen=GEN) for t in ("hello", "what is the capital of france")]
    assert done[0].turn < done[1].turn and not window.chat.busy


def test_stop_drops_the_waiting_turns(qtbot, make_window, chatty_bundle):
    window = make_window(model__bundle=str(chatty_bundle), chat__max_new_tokens=200)
    asked = []
    window.model.worker.token.connect(lambda p: asked.append(p.turn))  # on the worker thread
    with qtbot.waitSignal(window.chat.answered, timeout=ANSWER_TIMEOUT_MS) as blocker:
        window.chat.submit_text("hello")
        window.chat.submit_text("hi")
        qtbot.waitUntil(lambda: len(asked) >= 3, timeout=ANSWER_TIMEOUT_MS)
        window.chat.stop()
    running, waiting = window.chat.view.bubbles[1], window.chat.view.bubbles[3]
    assert blocker.args[0].stopped and running.state == "stopped" and waiting.state == "stopped"
    assert not window.chat.busy  # the dropped turn was not sent when the stopped one ended
    assert set(asked) == {blocker.args[0].turn}


def test_event_loop_keeps_serving_timers_during_generation(qtbot, make_window, chatty_bundle):
    window = make_window(model__bundle=str(chatty_bundle), chat__max_new_tokens=300)
    stamps: list[float] = []
    token_times: list[float] = []
    window.model.worker.token.connect(lambda p: token_times.append(time.perf_counter()))  # on the worker thread
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: stamps.append(time.perf_counter()))
    timer.start()
    try:
        done, pieces = answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    finally:
        timer.stop()
    assert len(pieces) > 50 and done.total_ms > 300  # a real stretch of generation was watched
    during = [t for t in stamps if token_times[0] < t < token_times[-1]]
    gaps = np.diff(stamps) * 1000
    # How smooth the window stays depends on the machine's load: printed, not asserted. A blocked event loop
    # (the model on the GUI thread) would serve no timer at all between the first and the last token.
    print(f"{len(during)} timer ticks while the model answered; longest event-loop gap {gaps.max():.0f} ms")
    assert len(during) > 0, "the event loop served no timer while the model answered"


def test_copy_and_clear(qtbot, make_window, assistant):
    window = make_window()
    done, _ = answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    window.chat.copy_button.click()
    assert QGuiApplication.clipboard().text() == f"You: hello\n\nAuRA: {done.text}"
    window.chat.view.bubbles[-1].copy_button.click()
    assert QGuiApplication.clipboard().text() == done.text
    window.chat.clear_button.click()
    assert window.chat.view.bubbles == [] and window.chat.view.empty.isVisibleTo(window)


# -- microphone -------------------------------------------------------------------------------------


def test_spoken_utterance_yields_an_answer_and_latency(qtbot, make_window, assistant):
    heard = []
    window = make_window(mic=lambda device: FakeMic(utterance()), wait=False)
    window.mic.segment.connect(heard.append)
    done, _ = answer_of(qtbot, window, lambda: None)
    segment = heard[0].segment
    assert segment.reason == REASON_SILENCE
    assert done.text == assistant.answer(audio=segment.samples, gen=GEN)
    assert done.first_token_ms >= segment.endpoint_delay_s * 1000 * 0.9  # counted from the end of speech
    assert window.chat.view.bubbles[0].clip.caption.text().endswith("microphone")
    assert window.mic.listener.running


def test_push_to_talk_with_the_space_key(qtbot, make_window, assistant):
    heard = []
    speech = np.tile(clip(1.0, seed=6), 30)
    window = make_window(mic=lambda device: FakeMic(speech), audio__mode="ptt")
    window.mic.segment.connect(heard.append)
    levels = []
    window.mic.level.connect(levels.append)
    assert window.chat.mic_bar.talk.isVisible()
    qtbot.waitUntil(lambda: len(levels) >= 20, timeout=EVENT_TIMEOUT_MS)
    assert heard == []  # speech plays, but nothing is sent without the key
    with qtbot.waitSignal(window.chat.answered, timeout=ANSWER_TIMEOUT_MS) as blocker:
        qtbot.keyPress(window.chat.view, Qt.Key.Key_Space)
        levels.clear()
        qtbot.waitUntil(lambda: len(levels) >= 20, timeout=EVENT_TIMEOUT_MS)  # ~0.6 s of audio held: over min_speech_ms
        qtbot.keyRelease(window.chat.view, Qt.Key.Key_Space)
    assert heard[0].segment.reason == REASON_PUSH_TO_TALK
    assert blocker.args[0].text == assistant.answer(audio=heard[0].segment.samples, gen=GEN)
    window.chat.composer.input.setFocus()
    qtbot.keyClick(window.chat.composer.input, Qt.Key.Key_Space)  # in the text box, Space is a space
    assert window.chat.composer.input.text() == " "


def test_no_input_device_shows_a_banner_and_typing_still_works(qtbot, make_window, assistant):
    def no_device(device):
        raise AuraError("no audio input device found (is a microphone connected and PortAudio installed?)")

    window = make_window(mic=no_device)
    qtbot.waitUntil(lambda: window.chat.banner("mic") is not None, timeout=EVENT_TIMEOUT_MS)
    assert "no audio input device found" in window.chat.banner("mic").text
    assert "type" in window.chat.banner("mic").text
    assert window.chat.mic_bar.state_label.text() == "no microphone"
    done, _ = answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    assert done.text == assistant.answer(text="hello", gen=GEN)


def test_unplugged_microphone_shows_a_message_and_recovers(qtbot, make_window, assistant):
    opened = []

    def flaky(device):
        opened.append(device)
        if len(opened) == 1:
            return FakeMic(fail_after=16000)  # dies after a second of audio
        if len(opened) == 2:
            raise AuraError("fake microphone still unplugged")
        return FakeMic(utterance())  # back, and someone speaks

    heard = []
    window = make_window(mic=flaky)
    window.mic.segment.connect(heard.append)
    qtbot.waitUntil(lambda: window.chat.banner("mic") is not None, timeout=EVENT_TIMEOUT_MS)
    assert "unplugged" in window.chat.banner("mic").text
    with qtbot.waitSignal(window.chat.answered, timeout=ANSWER_TIMEOUT_MS) as blocker:
        qtbot.waitUntil(lambda: len(opened) >= 3, timeout=EVENT_TIMEOUT_MS)
    assert "back" in window.chat.banner("mic").text
    assert blocker.args[0].text == assistant.answer(audio=heard[0].segment.samples, gen=GEN)


def test_microphone_is_muted_while_the_answer_is_spoken(qtbot, make_window):
    speaker = FakeSpeaker()
    window = make_window(speaker=speaker, speech__enabled=True)
    states = []
    window.mic.state_changed.connect(lambda s: states.append(s.muted))
    answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    qtbot.waitUntil(lambda: window.mic.muted and window.mic.listener.muted, timeout=EVENT_TIMEOUT_MS)
    assert window.chat.mic_bar.state_label.text() == "muted while speaking"
    qtbot.waitUntil(lambda: not window.mic.muted, timeout=EVENT_TIMEOUT_MS)
    assert not window.mic.listener.muted
    assert speaker.played == [(8000, 16000)]
    assert states[-2:] == [True, False]


def test_barge_in_keeps_the_microphone_open_while_speaking(qtbot, make_window):
    speaker = FakeSpeaker()
    window = make_window(speaker=speaker, speech__enabled=True, audio__barge_in=True)
    muted = []
    window.playback.started.connect(lambda s: muted.append(window.mic.listener.muted))
    answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    qtbot.waitUntil(lambda: bool(speaker.played) and window.playback.playing is None, timeout=EVENT_TIMEOUT_MS)
    assert muted and not any(muted) and not window.mic.muted


# -- model loading and its errors -------------------------------------------------------------------


def test_loading_reports_progress(qtbot, make_window, bundle):
    stages = []
    window = make_window(wait=False)
    window.model.worker.loading.connect(lambda p: stages.append((p.stage, p.fraction)))
    qtbot.waitUntil(lambda: window.chat.model_state == "ready", timeout=ANSWER_TIMEOUT_MS)
    stages.clear()
    window.load_model()  # again, from the start
    assert window.chat.model_state == "loading" and window.status.progress.isVisible()
    qtbot.waitUntil(lambda: window.chat.model_state == "ready", timeout=ANSWER_TIMEOUT_MS)
    assert [s for s, _ in stages][:1] == ["releasing the previous model"] and stages[-1] == ("ready", 1.0)
    assert not window.status.progress.isVisible()
    assert Path(bundle).name in window.status.model.text()


def test_missing_bundle_shows_a_dialog_and_the_app_keeps_running(qtbot, make_window, tmp_path, bundle, assistant):
    window = make_window(model__bundle=str(tmp_path / "no-such-bundle"), wait=False)
    qtbot.waitUntil(lambda: window.last_dialog is not None, timeout=ANSWER_TIMEOUT_MS)
    assert "no-such-bundle" in window.last_dialog.informativeText() and "does not exist" in window.last_dialog.informativeText()
    assert window.chat.model_state == "none"
    window.chat.submit_text("hello")  # no crash: the turn says why it is not answered
    assert "No model" in window.chat.view.bubbles[-1].text
    window.last_dialog.accept()
    fixed = Settings(model=type(window.settings.model)(bundle=str(bundle), device="cpu"), chat=window.settings.chat)
    window.apply_settings(fixed)
    qtbot.waitUntil(lambda: window.chat.model_state == "ready", timeout=ANSWER_TIMEOUT_MS)
    done, _ = answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    assert done.text == assistant.answer(text="hello", gen=GEN)


def test_adapter_that_does_not_fit_the_base_names_both(qtbot, make_window, tmp_path, bundle):
    other = save_tiny_base(tmp_path / "other-base", "llama", layers=2)
    window = make_window(model__base=str(other), wait=False)
    qtbot.waitUntil(lambda: window.last_dialog is not None, timeout=ANSWER_TIMEOUT_MS)
    message = window.last_dialog.informativeText()
    bundle_base = json.loads((Path(bundle) / "aura_config.json").read_text())["base"]["id"]
    assert bundle_base in message and "other-base" in message
    assert message in window.chat.banner("model").text
    assert window.isVisible() and window.chat.model_state == "none"


def test_cuda_unavailable_falls_back_to_cpu_with_a_notice(qtbot, make_window, assistant):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: there is no fallback to see")
    window = make_window(model__device="cuda:0")
    assert "CUDA is not available" in window.chat.banner("notice").text
    assert window.status.device.text().startswith("CPU")
    done, _ = answer_of(qtbot, window, lambda: window.chat.submit_text("hello"))
    assert done.text == assistant.answer(text="hello", gen=GEN)


# -- settings ---------------------------------------------------------------------------------------


def test_settings_survive_a_restart(qtbot, make_window, ini, bundle):
    window = make_window()
    dialog = window.settings_dialog()
    dialog.mode.setCurrentIndex(dialog.mode.findData("ptt"))
    dialog.aggressiveness.setValue(3)
    dialog.pre_roll.setValue(510)
    dialog.hangover.setValue(900)
    dialog.min_speech.setValue(300)
    dialog.max_speech.setValue(12000)
    dialog.system_prompt.setPlainText("Answer briefly.")
    dialog.max_new_tokens.setValue(64)
    dialog.temperature.setValue(0.5)
    dialog.tts_enabled.setChecked(True)
    dialog.voice.setCurrentIndex(dialog.voice.findData("fake-voice"))
    dialog.barge_in.setChecked(True)
    dialog.quantization.setCurrentText("none")
    dialog.accept()
    assert dialog.result() == dialog.DialogCode.Accepted
    window.apply_settings(dialog.result_settings)
    expected = dialog.result_settings
    window.close()

    again = make_window(store_path=ini)
    assert again.settings == expected
    a = again.settings
    assert (a.audio.mode, a.audio.aggressiveness, a.audio.pre_roll_ms, a.audio.hangover_ms) == ("ptt", 3, 510, 900)
    assert (a.audio.min_speech_ms, a.audio.max_speech_ms, a.audio.barge_in) == (300, 12000, True)
    assert (a.chat.system_prompt, a.chat.max_new_tokens, a.chat.temperature) == ("Answer briefly.", 64, 0.5)
    assert (a.speech.enabled, a.speech.voice, a.model.quantization) == (True, "fake-voice", "none")
    assert a.model.bundle == str(bundle)
    assert again.mic.listener.vad_config.hangover_ms == 900  # and they are in force
    assert again.chat.mic_bar.push_to_talk.isChecked()


def test_settings_dialog_refuses_a_bad_value(qtbot, make_window):
    window = make_window()
    dialog = window.settings_dialog()
    qtbot.addWidget(dialog)
    dialog.compute.setCurrentText("gpu-nine")
    dialog.accept()
    assert dialog.result() != dialog.DialogCode.Accepted
    assert "gpu-nine" in dialog.error.text()


def test_unreadable_settings_fall_back_to_defaults(ini):
    store = settings_store(ini)
    store.setValue("audio/hangover_ms", "not a number")
    store.setValue("audio/pre_roll_ms", 100)  # below the 300 ms minimum
    store.setValue("audio/aggressiveness", 3)
    store.setValue("chat/temperature", "0.7")
    store.sync()
    loaded = load_settings(settings_store(ini))
    assert loaded.audio.hangover_ms == 600 and loaded.audio.pre_roll_ms == 450
    assert loaded.audio.aggressiveness == 3 and loaded.chat.temperature == 0.7
