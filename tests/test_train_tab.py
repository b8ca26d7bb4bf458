"""The Train tab, offscreen (pytest-qt), driving the real tab and real trainer processes with tiny settings.

A run reaches "finished", its adapter appears in the Adapters tab and answers in the Chat tab;
Pause then Resume continues from the checkpoint's step and the curves go on; Stop leaves a
resumable checkpoint (through the stop file, the Windows way); a trainer killed with SIGKILL
shows the error and Resume finishes the run; closing the window mid-run asks and leaves no
process behind. Around them: the model checks, the data preview, the presets and the trainer's
own defaults and help in the Custom form.

Every test has its own user data and cache folders (XDG_DATA_HOME, XDG_CACHE_HOME), so the
library is the real default one (platformdirs) under tmp_path, and the trainer's caches too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from app.assets import default_bundle
from app.settings import default_library_folder, load_settings, settings_store
from app.train_presets import (APP_DEFAULTS, CUSTOM, QUICK, QUICK_DEMO, check_plan, checkpoint_steps,
                               parse_extra_flags, plan_run, quick_demo_data, trainer_fields)
from app.train_probes import preview_data, probe_student, probe_teacher
from app.widgets.main_window import MainWindow
from app.widgets.train_tab import TrainTab
from app.workers.jobs import Jobs
from app.workers.trainer_process import TrainerEvent
from aura_model.assistant import Assistant
from aura_model.bundle import read_bundle_config
from aura_model.config import GenerationSettings, RuntimeConfig
from aura_model.errors import AuraError
from aura_model.testing import make_clip_folder, save_tiny_base, save_tiny_whisper
from aura_model.train.config import SECTIONS, TrainConfig, build_spec, field_comments
from helpers import clip, make_bundle, write_wav

pytestmark = pytest.mark.usefixtures("main_thread_gc")

TINY_FLAGS = "--embedding.conv_channels 32 --train.response_max_tokens 6 --train.val_fraction 0.2 --train.num_threads 1"
EVENT_TIMEOUT_MS = 60_000
RUN_TIMEOUT_MS = 300_000  # a tiny run: a process start (imports) plus a few seconds of steps, on a busy machine
MAX_NEW = 8


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-tab")
    return {"base": save_tiny_base(root / "base"), "whisper": save_tiny_whisper(root / "whisper"),
            "clips": make_clip_folder(root / "clips", 10)}


@pytest.fixture(scope="module")
def made_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("made"), "llama")[0]


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """This test's own user data and cache folders; returns the adapter library (the default one, under them)."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return default_library_folder()


@pytest.fixture
def jobs():
    jobs = Jobs(workers=3)
    yield jobs
    jobs.shutdown()


@pytest.fixture
def make_tab(qtbot, homes, jobs):
    tabs = []

    def make() -> TrainTab:
        tab = TrainTab(homes, jobs, default_bundle())
        qtbot.addWidget(tab)
        tab.resize(1100, 760)
        tab.show()
        tabs.append(tab)
        return tab

    yield make
    for tab in tabs:
        tab.trainer.kill()  # a test that failed midway leaves no trainer behind


class Events:
    """Every TrainerEvent of a tab, in order, with the time it reached the main thread."""

    def __init__(self, tab: TrainTab):
        self.all: list[tuple[float, TrainerEvent]] = []
        tab.trainer.event.connect(lambda e: self.all.append((time.perf_counter(), e)))

    def named(self, name: str) -> list[dict]:
        return [e.fields for _, e in self.all if e.name == name]

    def steps(self) -> list[int]:
        return [f["step"] for f in self.named("progress") if f.get("stage") == "train"]

    def checkpoints(self) -> list[dict]:
        return self.named("checkpoint")


def set_up(qtbot, tab: TrainTab, world, name: str, steps: int, checkpoint_every: int = 0, eval_every: int = 0):
    """The Custom preset with tiny settings, through the tab's own fields."""
    tab.options.set_preset(CUSTOM)
    qtbot.waitUntil(lambda: bool(tab.options.editors), timeout=EVENT_TIMEOUT_MS)
    tab.teacher.set_text(str(world["whisper"]))
    tab.student.set_text(str(world["base"]))
    tab.dataset.set_text(str(world["clips"]))
    tab.name.setText(name)
    for key, value in (("train.max_steps", steps), ("train.batch_size", 2), ("train.lr", "3e-3"), ("lora.r", 8),
                       ("train.eval_every", eval_every), ("train.checkpoint_every", checkpoint_every)):
        tab.options.set_value(key, str(value))
    tab.options.extra.setText(TINY_FLAGS)


def wait_state(qtbot, tab: TrainTab, *states: str, timeout: int = RUN_TIMEOUT_MS) -> None:
    qtbot.waitUntil(lambda: tab.run_state in states, timeout=timeout)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# -- checking the inputs ------------------------------------------------------------------------------


def test_models_are_checked_from_their_configs_and_an_uncached_hub_id_gets_a_message(qtbot, make_tab, world,
                                                                                      tmp_path):
    tab = make_tab()
    tab.options.set_preset(CUSTOM)
    tab.teacher.set_text(str(world["whisper"]))
    tab.student.set_text(str(world["base"]))
    qtbot.waitUntil(lambda: tab.teacher.state == "ok" and tab.student.state == "ok", timeout=EVENT_TIMEOUT_MS)
    assert tab.teacher.status.text() == "whisper · 2 layers · width 64 · transcribes · clips up to 2 s"
    assert tab.student.status.text() == "llama · 4 layers · width 64 · chat template"
    plain = tmp_path / "no-template"
    shutil.copytree(world["base"], plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    tab.student.set_text(str(plain))
    qtbot.waitUntil(lambda: tab.student.state == "error", timeout=EVENT_TIMEOUT_MS)
    assert "NO chat template" in tab.student.status.text()
    t0 = time.perf_counter()
    tab.teacher.set_text("someone/not-a-cached-model")
    qtbot.waitUntil(lambda: tab.teacher.state == "error", timeout=EVENT_TIMEOUT_MS)
    print(f"an uncached hub id was answered in {time.perf_counter() - t0:.2f} s")
    assert "not in the local Hugging Face cache" in tab.teacher.status.text()
    assert "someone/not-a-cached-model" in tab.teacher.status.text()
    with pytest.raises(AuraError, match="does not exist"):
        probe_teacher(str(tmp_path / "missing-folder"))
    assert probe_student(str(world["base"])).chat_template is True


def test_data_preview_counts_clips_length_transcripts_and_names_unusable_files(qtbot, make_tab, world, tmp_path):
    data = make_clip_folder(tmp_path / "clips", 6)
    (data / "clip_005.txt").unlink()  # one clip without a transcript
    (data / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    write_wav(data / "silent.wav", np.zeros(8000, dtype=np.float32))
    expected = preview_data(str(data))
    assert expected.found == 8 and expected.usable == 6 and expected.with_transcript == 5
    assert sorted(s["item"] for s in expected.skipped) == ["broken.wav", "silent.wav"]
    seconds = sum(sf.info(str(p)).frames for p in data.glob("clip_*.wav")) / 16000
    assert expected.seconds == pytest.approx(seconds, rel=1e-6)
    tab = make_tab()
    tab.options.set_preset(CUSTOM)
    tab.dataset.set_text(str(data))
    qtbot.waitUntil(lambda: tab.dataset.state == "ok", timeout=EVENT_TIMEOUT_MS)
    assert tab.dataset.summary.text() == expected.describe()
    assert "6 clips" in expected.describe() and "5 with transcripts" in expected.describe()
    lines = [tab.dataset.skipped.item(i).text() for i in range(tab.dataset.skipped.count())]
    assert len(lines) == 2 and lines[0].startswith("broken.wav: ") and "silent" in lines[1]
    tab.dataset.set_text(str(tmp_path / "nowhere"))
    qtbot.waitUntil(lambda: tab.dataset.state == "error", timeout=EVENT_TIMEOUT_MS)
    assert "does not exist" in tab.dataset.summary.text()


# -- presets --------------------------------------------------------------------------------------------


def test_custom_fields_carry_the_trainers_own_defaults_and_help(qtbot, make_tab):
    fields = {f.key: f for f in trainer_fields()}
    train_defaults = TrainConfig()
    assert fields["train.lr"].default == str(train_defaults.lr) and fields["train.batch_size"].default == "8"
    assert fields["lora.target_modules"].default == "q_proj,k_proj,v_proj,o_proj"
    assert fields["distill.layer_map"].default == ""  # None: the trainer's default map
    assert fields["train.quantization"].choices == ("auto", "4bit", "none") and fields["train.device"].kind == "choice"
    for key, f in fields.items():
        section, name = key.split(".")
        assert f.help.startswith(field_comments(SECTIONS[section])[name]), key
    assert fields["train.checkpoint_every"].initial == APP_DEFAULTS["train.checkpoint_every"]
    assert "trainer default 0" in fields["train.checkpoint_every"].help
    tab = make_tab()
    tab.options.set_preset(CUSTOM)
    qtbot.waitUntil(lambda: bool(tab.options.editors), timeout=EVENT_TIMEOUT_MS)
    assert tab.options.custom_values()["train.lr"] == str(train_defaults.lr)
    assert tab.options.editors["train.lr"].toolTip() == fields["train.lr"].help


def test_extra_flags_are_parsed_and_bad_settings_are_refused_before_a_process_starts(qtbot, make_tab, world, homes,
                                                                                      made_bundle):
    assert parse_extra_flags("--train.seed 3 --embedding.stack=2") == {"train.seed": "3", "embedding.stack": "2"}
    for bad in ("--output /etc", "train.seed 3", "--train.seed", "--resume x"):
        with pytest.raises(AuraError, match="extra flags"):
            parse_extra_flags(bad)
    tab = make_tab()
    set_up(qtbot, tab, world, "bad-lr", steps=5)
    tab.options.set_value("train.lr", "-1")
    tab.start()
    wait_state(qtbot, tab, "failed", timeout=EVENT_TIMEOUT_MS)
    assert "lr must be > 0" in tab.progress.state.text()
    assert tab.trainer.pid is None and not tab.trainer.running and not tab.resume_button.isEnabled()
    tab.name.setText("../escape")
    tab.options.set_value("train.lr", "3e-3")
    tab.start()
    assert "cannot be an adapter name" in tab.progress.state.text() and not tab.busy
    shutil.copytree(made_bundle, homes / "taken")  # an adapter of that name exists: the tab asks first
    tab.name.setText("taken")
    tab.start()
    box = tab.last_dialog
    assert isinstance(box, QMessageBox) and "taken" in box.text() and box.isVisible()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(200)
    assert not tab.busy and not tab.trainer.running
    (homes / "photos").mkdir()
    tab.name.setText("photos")  # a folder that is not an adapter is never written over
    tab.start()
    assert "not an adapter bundle" in tab.progress.state.text() and not tab.busy


def test_quick_demo_runs_the_demo_recipe_on_the_bundled_models(homes, tmp_path, monkeypatch):
    shipped = default_bundle()
    if shipped is None:
        pytest.skip("no demo bundle ships in this checkout")
    plan = plan_run(homes, "quick-demo", "", "", str(tmp_path / "clips"), QUICK, default_bundle=shipped)
    assert plan.teacher == str(shipped / "teacher") and plan.student == str(shipped / "base")
    o = plan.overrides
    assert o["train.max_steps"] == str(QUICK_DEMO.steps) and o["train.lr"] == str(QUICK_DEMO.lr)
    assert o["distill.w_layer"] == "3.0" and o["lora.r"] == "32" and o["lora.include_mlp"] == "true"
    assert o["embedding.conv_channels"] == str(json.loads((shipped / "teacher" / "config.json").read_text())["d_model"])
    assert o["train.bundle_base"] == "true" and o["train.checkpoint_dir"] == str(homes / ".runs" / "quick-demo" /
                                                                                  "checkpoints")
    check_plan(plan)  # the trainer takes every flag of the preset
    spec = build_spec(None, *plan.overrides_and_paths())
    assert spec.train.max_steps == 300 and spec.model.lora.r == 32 and spec.train.bundle_base
    import aura_model.demo.synth as synth

    monkeypatch.setattr(synth, "espeak_executable", lambda: (_ for _ in ()).throw(AuraError("no espeak-ng")))
    folder, how = quick_demo_data(tmp_path / "qd", shipped)
    assert "sample clips" in how
    preview = preview_data(str(folder))
    samples = (shipped / "samples" / "samples.jsonl").read_text().splitlines()
    assert preview.usable == preview.with_transcript == len([s for s in samples if s.strip()])


@pytest.mark.slow
def test_quick_demo_speaks_a_few_hundred_requests_with_espeak(tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    t0 = time.perf_counter()
    folder, how = quick_demo_data(tmp_path / "qd", default_bundle())
    print(f"spoke the Quick demo's clips in {time.perf_counter() - t0:.1f} s")
    preview = preview_data(str(folder))
    assert "espeak-ng" in how and preview.usable >= 200 and preview.with_transcript == preview.usable
    assert not preview.skipped


# -- runs -----------------------------------------------------------------------------------------------


def chat_window(qtbot, tmp_path) -> MainWindow:
    store = settings_store(tmp_path / "aura.ini")
    for key, value in {"model/device": "cpu", "chat/max_new_tokens": MAX_NEW, "audio/enabled": False}.items():
        store.setValue(key, value)
    store.sync()

    class Quiet:
        def start(self):
            pass

        def stop(self):
            pass

        def read(self, timeout=None):
            time.sleep(0.03)
            return np.zeros(480, dtype=np.float32)

    window = MainWindow(store, stream_factory=lambda device: Quiet(), play_fn=lambda samples, rate, stop: None)
    qtbot.addWidget(window)
    window.resize(1100, 760)
    window.show()
    qtbot.waitUntil(lambda: window.chat.model_state != "loading", timeout=RUN_TIMEOUT_MS)
    return window


@pytest.mark.slow
def test_a_run_finishes_its_adapter_is_listed_and_answers_in_the_chat_tab(qtbot, homes, world, tmp_path):
    window = chat_window(qtbot, tmp_path)
    tab = window.train
    window.tabs.setCurrentWidget(tab)
    events = Events(tab)
    set_up(qtbot, tab, world, "tiny-done", steps=30, eval_every=10, checkpoint_every=10)
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    started = time.perf_counter()
    tab.start()
    try:
        wait_state(qtbot, tab, "finished", "failed", "crashed")
    finally:
        timer.stop()
    assert tab.run_state == "finished", tab.progress.state.text() + "\n" + tab.log.toPlainText()[-3000:]
    print(f"tiny run of 30 steps: {time.perf_counter() - started:.1f} s from Start to finished")

    # what the tab showed along the way
    stages = {f["stage"] for f in events.named("progress") if f["stage"] != "train"}
    assert {"validate", "teacher", "responses"} <= stages
    assert events.steps() == list(range(1, 31))
    assert [e["step"] for e in events.named("eval")] == [10, 20, 30]
    assert [x for x, _ in tab.plot.points("loss")] == list(range(1, 31))
    assert len(tab.plot.points("loss_layer")) == 30 and len(tab.plot.points("loss_kl")) == 30
    assert [x for x, _ in tab.plot.points("val_loss")] == [10, 20, 30]
    assert tab.progress.bar.value() == tab.progress.bar.maximum()
    assert "Finished" in tab.progress.summary.text() and "Evaluation:" in tab.progress.summary.text()
    assert tab.metrics.rowCount() > 3 and tab.metrics.last["step"] == 30

    # the window kept serving its event loop while the trainer streamed progress
    train_times = [t for t, e in events.all if e.name == "progress" and e.fields.get("stage") == "train"]
    during = [t for t in ticks if train_times[0] <= t <= train_times[-1]]
    gaps = np.diff(ticks) * 1000
    print(f"{len(events.all)} trainer events; {len(during)} timer ticks while steps streamed; "
          f"longest event-loop gap {gaps.max():.0f} ms over the run, "
          f"{(np.diff(during).max() * 1000 if len(during) > 1 else float('nan')):.0f} ms while steps streamed")
    assert len(during) > 0, "the event loop served no timer while the trainer streamed its steps"

    # the adapter is in the library, with its metrics
    bundle = homes / "tiny-done"
    meta = read_bundle_config(bundle)
    window.tabs.setCurrentWidget(window.library)
    qtbot.waitUntil(lambda: "tiny-done" in window.library.names(), timeout=EVENT_TIMEOUT_MS)
    entry = window.library.entry("tiny-done")
    assert entry.metrics["val_cosine"] == pytest.approx(meta["metrics"]["val_cosine"])
    assert entry.base == str(world["base"]) and entry.steps == 30

    # Use this adapter: the Chat tab loads it and answers with it
    assert tab.use_button.isEnabled()
    tab.use_button.click()
    assert window.tabs.currentWidget() is window.chat
    qtbot.waitUntil(lambda: window.chat.model_state == "ready" and window.model_info is not None
                    and window.model_info.adapter == "tiny-done", timeout=RUN_TIMEOUT_MS)
    assert load_settings(window.store).model.bundle == str(bundle)
    assert window.library.table.item(window.library.names().index("tiny-done"), 6).text() == "✓"
    wav = write_wav(tmp_path / "question.wav", clip(1.0, seed=3))
    with qtbot.waitSignal(window.chat.answered, timeout=RUN_TIMEOUT_MS) as answered:
        window.chat.submit_file(wav)
    expected = Assistant.open(bundle, runtime=RuntimeConfig(device="cpu")).answer(
        audio=str(wav), gen=GenerationSettings(max_new_tokens=MAX_NEW))
    assert answered.args[0].text == expected


@pytest.mark.slow
def test_pause_then_resume_continues_from_the_checkpoint_and_stop_leaves_a_resumable_one(qtbot, make_tab, world):
    tab = make_tab()
    events = Events(tab)
    set_up(qtbot, tab, world, "paused", steps=3000)
    tab.start()
    qtbot.waitUntil(lambda: len(events.steps()) >= 3, timeout=RUN_TIMEOUT_MS)
    assert tab.pause_button.isEnabled()
    tab.pause_button.click()  # SIGTERM: a checkpoint at the end of the step, exit 143
    wait_state(qtbot, tab, "paused", "failed", "crashed")
    assert tab.run_state == "paused", tab.progress.state.text()
    (ckpt,) = events.checkpoints()
    paused_at = ckpt["step"]
    assert ckpt["reason"] == "SIGTERM" and events.steps()[-1] == paused_at
    assert checkpoint_steps(tab.plan) == [paused_at]
    assert f"checkpoint at step {paused_at}" in tab.progress.state.text()
    assert tab.resume_button.isEnabled() and not tab.pause_button.isEnabled()

    before = len(events.steps())
    tab.resume_button.click()
    qtbot.waitUntil(lambda: len(events.steps()) >= before + 3, timeout=RUN_TIMEOUT_MS)
    resumed = events.steps()[before:]
    assert resumed[0] == paused_at + 1  # the step counter goes on from the checkpoint
    xs = [x for x, _ in tab.plot.points("loss")]
    assert xs == list(range(1, len(xs) + 1)) and xs[-1] >= paused_at + 3  # one curve, continued, no repeats

    tab.trainer.use_stop_file = True  # Stop the way it works on Windows: `aura train --stop-file`
    tab.stop_button.click()
    wait_state(qtbot, tab, "stopped", "failed", "crashed")
    assert tab.run_state == "stopped", tab.progress.state.text()
    last = events.checkpoints()[-1]
    assert last["reason"] == "SIGTERM" and last["step"] > paused_at
    assert checkpoint_steps(tab.plan)[-1] == last["step"] and not tab.plan.stop_file.exists()
    assert tab.resume_button.isEnabled() and "Resume continues from it" in tab.progress.state.text()
    state = json.loads((Path(last["path"]) / "state.json").read_text())
    assert state["step"] == last["step"] and state["resumed_from"] == paused_at


@pytest.mark.slow
def test_a_killed_trainer_shows_the_error_and_resume_finishes_the_run(qtbot, make_tab, world, homes):
    tab = make_tab()
    events = Events(tab)
    set_up(qtbot, tab, world, "killed", steps=60, checkpoint_every=20)
    tab.start()
    # killed a few steps after its first checkpoint: the resumed run makes those steps again
    qtbot.waitUntil(lambda: bool(events.checkpoints()) and events.steps()[-1] >= 23, timeout=RUN_TIMEOUT_MS)
    pid = tab.trainer.pid
    os.kill(pid, signal.SIGKILL)
    wait_state(qtbot, tab, "crashed", "failed", "finished")
    assert tab.run_state == "crashed", tab.progress.state.text()
    last = tab.trainer.checkpoint_step
    assert "signal 9" in tab.progress.state.text()
    assert f"Resume continues from the checkpoint at step {last}" in tab.progress.state.text()
    assert tab.isVisible() and tab.resume_button.isEnabled() and not alive(pid)

    before = len(events.steps())
    tab.resume_button.click()
    wait_state(qtbot, tab, "finished", "failed", "crashed")
    assert tab.run_state == "finished", tab.progress.state.text()
    assert last == 20 and events.steps()[before] == last + 1 and events.steps()[-1] == 60
    assert events.steps()[before - 1] > last  # it had gone past its checkpoint when it was killed ...
    assert [x for x, _ in tab.plot.points("loss")] == list(range(1, 61))  # ... and the curve has each step once
    assert read_bundle_config(homes / "killed")["training"]["resumed_from_step"] == last


@pytest.mark.slow
def test_closing_the_window_mid_run_asks_first_and_leaves_no_process(qtbot, homes, world, tmp_path):
    window = chat_window(qtbot, tmp_path)
    tab = window.train
    window.tabs.setCurrentWidget(tab)
    events = Events(tab)
    set_up(qtbot, tab, world, "closing", steps=3000)
    tab.start()
    qtbot.waitUntil(lambda: len(events.steps()) >= 2, timeout=RUN_TIMEOUT_MS)
    pid = tab.trainer.pid
    asked = []

    def answer(button_text: str) -> None:
        box = QApplication.activeModalWidget()
        asked.append(box.objectName() if box else None)
        if isinstance(box, QMessageBox):
            next(b for b in box.buttons() if b.text() == button_text).click()

    QTimer.singleShot(200, lambda: answer("Cancel"))
    window.close()
    assert asked == ["TrainCloseDialog"] and window.isVisible() and alive(pid)  # stayed: the run goes on

    QTimer.singleShot(200, lambda: answer("Pause and quit"))
    window.close()
    assert asked[-1] == "TrainCloseDialog" and not window.isVisible()
    assert not alive(pid), "the trainer outlived the window"
    assert tab.trainer.checkpoint_step is not None  # paused: its checkpoint was written before it ended
    assert checkpoint_steps(tab.plan)[-1] == tab.trainer.checkpoint_step

    jobs = Jobs()
    again = TrainTab(homes, jobs, default_bundle())  # the next start offers to resume it
    qtbot.addWidget(again)
    try:
        assert again.plan is not None and again.plan.name == "closing" and again.resume_button.isEnabled()
        assert f"paused at step {tab.trainer.checkpoint_step}" in again.progress.state.text()
        assert dataclasses.asdict(again.plan) == dataclasses.asdict(tab.plan)
    finally:
        jobs.shutdown()


@pytest.mark.slow
def test_a_trainer_that_fails_shows_its_own_message(qtbot, make_tab, world):
    tab = make_tab()
    set_up(qtbot, tab, world, "no-teacher", steps=5)
    tab.teacher.set_text(str(world["clips"]))  # a folder of clips, not a model
    qtbot.waitUntil(lambda: tab.teacher.state == "error", timeout=EVENT_TIMEOUT_MS)
    tab.start()  # the tab lets the trainer say what is wrong
    wait_state(qtbot, tab, "failed", "finished", "crashed")
    assert tab.run_state == "failed", tab.progress.state.text()
    assert "cannot load teacher" in tab.progress.state.text() and str(world["clips"]) in tab.progress.state.text()
    assert "error: cannot load teacher" in tab.log.toPlainText()
