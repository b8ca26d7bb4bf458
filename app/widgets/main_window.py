"""MainWindow: tabs (Chat, Train, Adapters), menus, status bar, settings, drag-and-drop, the push-to-talk key.

It owns the app-wide services — the model worker thread, the microphone, audio
playback and text-to-speech — and hands them to the tabs. It loads the model the
settings name, reloads it when they change, and turns every failure into a
message: loading errors in a dialog (the app keeps running without a model),
device problems and fallbacks in banners.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QEvent, QObject, QSettings
from PySide6.QtGui import QAction, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (QAbstractSpinBox, QApplication, QFileDialog, QKeySequenceEdit, QLineEdit, QMainWindow,
                               QMessageBox, QPlainTextEdit, QTabWidget, QTextEdit, QWidget)

from app.assets import default_bundle
from app.settings import (Settings, library_folder, load_settings, save_settings, settings_store,
                          with_active_adapter)
from app.workers.jobs import Jobs
from app.workers.microphone import MicrophoneBridge
from app.workers.model_worker import AnswerDone, LoadProgress, LoadRequest, ModelInfo, ModelThread
from app.workers.playback import Playback, PlayFn
from app.workers.speech import SpeechEngine, SpeechOutput

from app.audio_file import AUDIO_SUFFIXES

from .chat_tab import ChatTab
from .library_tab import LibraryTab
from .settings_dialog import SettingsDialog
from .status_bar import StatusBar
from .theme import stylesheet
from .train_tab import TrainTab

log = logging.getLogger(__name__)

_TEXT_INPUTS = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox, QKeySequenceEdit)


class MainWindow(QMainWindow):
    def __init__(self, store: QSettings | None = None, *, stream_factory: Callable | None = None,
                 speech_engine: SpeechEngine | None = None, play_fn: PlayFn | None = None,
                 settings_override: Callable[[Settings], Settings] | None = None) -> None:
        """``stream_factory``, ``speech_engine`` and ``play_fn`` replace the real microphone, TTS and speakers
        (tests); ``settings_override`` adjusts the loaded settings for this run only (command-line options)."""
        super().__init__()
        self.setWindowTitle("AuRA")
        self.setObjectName("MainWindow")
        self.store = store if store is not None else settings_store()
        self.settings = load_settings(self.store)
        if settings_override is not None:
            self.settings = settings_override(self.settings)
        self.model_info: ModelInfo | None = None
        self.last_dialog: QMessageBox | None = None  # the latest error dialog (tests read it)
        self._ptt_down = False
        self._closed = False

        self.model = ModelThread(self)
        self.mic = MicrophoneBridge(self, stream_factory=stream_factory)
        self.playback = Playback(self, play_fn=play_fn)
        self.speech = SpeechOutput(self, engine=speech_engine)
        self.chat = ChatTab(self.settings, self.model, self.mic, self.playback, self.speech)
        self.jobs = Jobs(self, workers=3)  # the Train and Adapters tabs' background calls
        self.train = TrainTab(library_folder(self.store), self.jobs, default_bundle())
        self.library = LibraryTab(library_folder(self.store), self.jobs, default_bundle())
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.chat, "Chat")
        self.tabs.addTab(self.train, "Train")
        self.tabs.addTab(self.library, "Adapters")
        self.setCentralWidget(self.tabs)
        self.status = StatusBar()
        self.setStatusBar(self.status)
        self._menus()
        self.setAcceptDrops(True)
        self.apply_theme()
        hints = QGuiApplication.styleHints()
        hints.colorSchemeChanged.connect(lambda _scheme: self.apply_theme())

        w = self.model.worker
        w.loading.connect(self._on_loading)
        w.loaded.connect(self._on_loaded)
        w.load_failed.connect(self._on_load_failed)
        self.chat.answered.connect(self._on_answered)
        self.chat.composer.attach_requested.connect(self.open_audio)
        self.chat.mic_bar.enabled_toggled.connect(self._on_mic_toggled)
        self.chat.mic_bar.mode_changed.connect(self._on_mode_changed)
        self.chat.mic_bar.device_changed.connect(self._on_device_changed)
        self.train.use_adapter.connect(self.use_adapter)
        self.train.adapter_written.connect(lambda _bundle: self.library.refresh())
        self.library.activate_requested.connect(self.use_adapter)
        self.library.renamed.connect(self._adapter_renamed)
        self.library.deleted.connect(self._adapter_deleted)
        self.library.set_active(self.settings.model.bundle)
        QApplication.instance().installEventFilter(self)

        self._restore_geometry()
        self._refresh_devices()
        self.chat.mic_bar.set_mode(self.settings.audio.mode, self.settings.audio.ptt_key)
        self.load_model()
        if self.settings.audio.enabled:
            self.mic.start(self.settings.audio)
        else:
            self.chat.mic_bar.set_enabled_state(False)

    # -- setup ------------------------------------------------------------------------------------

    def _menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        self.open_action = QAction("&Open audio file…", self, shortcut=QKeySequence.StandardKey.Open,
                                   triggered=self.open_audio)
        file_menu.addAction(self.open_action)
        file_menu.addAction(QAction("&Import adapter…", self, triggered=self._import_adapter))
        file_menu.addSeparator()
        file_menu.addAction(QAction("&Quit", self, shortcut=QKeySequence.StandardKey.Quit, triggered=self.close))
        chat_menu = self.menuBar().addMenu("&Chat")
        chat_menu.addAction(QAction("&Stop", self, shortcut=QKeySequence("Esc"), triggered=self.chat.stop))
        chat_menu.addAction(QAction("&Copy conversation", self, shortcut=QKeySequence("Ctrl+Shift+C"),
                                    triggered=self.chat.copy_conversation))
        chat_menu.addAction(QAction("C&lear conversation", self, shortcut=QKeySequence("Ctrl+L"),
                                    triggered=self.chat.clear))
        chat_menu.addSeparator()
        chat_menu.addAction(QAction("&Reload model", self, triggered=self.load_model))
        settings_action = QAction("Se&ttings…", self, shortcut=QKeySequence("Ctrl+,"), triggered=self.open_settings)
        settings_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        chat_menu.addAction(settings_action)
        help_menu = self.menuBar().addMenu("&Help")
        help_menu.addAction(QAction("&About AuRA", self, triggered=self._about))

    def apply_theme(self) -> None:
        self.setStyleSheet(stylesheet(QApplication.palette()))

    def changeEvent(self, event) -> None:
        if event.type() == QEvent.Type.ApplicationPaletteChange:
            self.apply_theme()  # the platform switched between light and dark
        super().changeEvent(event)

    def _restore_geometry(self) -> None:
        geometry = self.store.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(980, 720)

    # -- model ------------------------------------------------------------------------------------

    def model_request(self) -> LoadRequest | None:
        m = self.settings.model
        bundle = m.bundle or (str(default_bundle()) if default_bundle() is not None else None)
        if bundle is None and not m.base:
            return None
        return LoadRequest(bundle=bundle, base=m.base or None, runtime=m.runtime())

    def load_model(self) -> None:
        request = self.model_request()
        self.chat.stop()
        self.chat.hide_banner("model")
        if request is None:
            self.model_info = None
            self.chat.set_model_state("none")
            self.status.set_no_model()
            self.chat.show_banner("model", "warning",
                                  "No model: this build ships no default bundle yet. Choose an AuRA bundle "
                                  "(or a base LLM for typed chat) in Settings.")
            return
        self.chat.set_model_state("loading")
        self.status.set_no_model("loading…")
        self.status.show_progress("loading the model", 0.0)
        self.model.load(request)

    def _on_loading(self, progress: LoadProgress) -> None:
        self.status.show_progress(progress.stage, progress.fraction)

    def _on_loaded(self, info: ModelInfo) -> None:
        self.model_info = info
        self.status.hide_progress()
        self.status.set_model(info.device, info.model, info.adapter)
        self.status.set_memory(info.memory_kind, info.memory_bytes)
        self.status.showMessage(f"Model ready in {info.load_s:.1f} s", 4000)
        self.chat.hide_banner("model")
        if info.notices:
            self.chat.show_banner("notice", "warning", " ".join(info.notices))
        else:
            self.chat.hide_banner("notice")
        if not info.can_hear:
            self.chat.show_banner("model", "info", "This is a plain base model without an AuRA adapter: "
                                  "it answers typed text, not speech.")
        self.chat.set_model_state("ready")

    def _on_load_failed(self, message: str) -> None:
        self.model_info = None
        self.status.hide_progress()
        self.status.set_no_model("no model")
        self.chat.set_model_state("none")
        self.chat.show_banner("model", "error", f"Could not load the model: {message}")
        box = QMessageBox(QMessageBox.Icon.Critical, "Could not load the model", "Could not load the model.",
                          QMessageBox.StandardButton.Ok, self)
        box.setInformativeText(message)
        box.setObjectName("LoadFailedDialog")
        box.open()  # not exec(): the window (and its event loop) keep going
        self.last_dialog = box

    def _on_answered(self, done: AnswerDone) -> None:
        if self.model_info is not None:
            self.status.set_memory(self.model_info.memory_kind, done.memory_bytes)
        if done.first_token_ms is not None:
            detail = f"model {done.model_first_token_ms:.0f} ms of it (features, embedding, prefill, first token)"
            self.status.set_latency(done.first_token_ms, f"End of speech (or send) to first token. {detail}")

    # -- microphone -------------------------------------------------------------------------------

    def _refresh_devices(self) -> None:
        names = [d["name"] for d in self.mic.devices()]
        self.chat.mic_bar.set_devices(names, self.settings.audio.input_device)

    def _save_audio(self, **changes) -> None:
        self.settings.audio = dataclasses.replace(self.settings.audio, **changes)
        save_settings(self.store, self.settings)

    def _on_mic_toggled(self, on: bool) -> None:
        self._save_audio(enabled=on)
        if on:
            self._refresh_devices()
            self.mic.start(self.settings.audio)
        else:
            self.mic.stop()

    def _on_mode_changed(self, mode: str) -> None:
        self._save_audio(mode=mode)
        self.chat.mic_bar.set_mode(mode, self.settings.audio.ptt_key)
        self.mic.set_push_to_talk(mode == "ptt")
        if mode == "ptt":
            self.chat.view.setFocus()  # so the push-to-talk key is not typed into the message box

    def _on_device_changed(self, name: str) -> None:
        self._save_audio(input_device=name)
        if self.mic.running:
            self.mic.start(self.settings.audio)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        """The push-to-talk key, anywhere in this window except in a text field."""
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease) or self._closed:
            return False
        if self.settings.audio.mode != "ptt" or not self.mic.running or event.isAutoRepeat():
            return False
        if not isinstance(obj, QWidget) or obj.window() is not self:
            return False
        typing = isinstance(obj, _TEXT_INPUTS) or isinstance(QApplication.focusWidget(), _TEXT_INPUTS)
        if typing and not self._ptt_down:  # in a text field the key types (Space is a space)
            return False
        key = QKeySequence(self.settings.audio.ptt_key)
        if key.isEmpty() or event.keyCombination() != key[0]:
            return False
        if kind == QEvent.Type.KeyPress and not self._ptt_down:
            self._ptt_down = True
            self.chat.mic_bar.talk.setDown(True)
            self.mic.ptt_press()
        elif kind == QEvent.Type.KeyRelease and self._ptt_down:
            self._ptt_down = False
            self.chat.mic_bar.talk.setDown(False)
            self.mic.ptt_release()
        return True

    # -- files ------------------------------------------------------------------------------------

    def open_audio(self) -> None:
        patterns = " ".join(f"*{s}" for s in AUDIO_SUFFIXES)
        path, _ = QFileDialog.getOpenFileName(self, "Open an audio file", str(Path.home()),
                                              f"Audio ({patterns});;All files (*)")
        if path:
            self.chat.submit_file(path)

    @staticmethod
    def _dropped_files(event) -> list[str]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]

    def dragEnterEvent(self, event) -> None:
        files = self._dropped_files(event)
        if files and any(Path(f).suffix.lower() in AUDIO_SUFFIXES for f in files):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        files = self._dropped_files(event)
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        for path in files:
            self.chat.submit_file(path)

    # -- settings ---------------------------------------------------------------------------------

    def settings_dialog(self) -> SettingsDialog:
        """The dialog, filled in (tests drive it directly; open_settings shows it)."""
        devices = [d["name"] for d in self.mic.devices()]
        bundle = default_bundle()
        voices = self.speech.engine.voices() if self.speech.available() else []
        cuda = self.model_info.cuda_devices if self.model_info is not None else 0
        return SettingsDialog(self.settings, devices, voices, self.speech.available(),
                              str(bundle) if bundle else None, cuda_devices=cuda, parent=self)

    def open_settings(self) -> None:
        dialog = self.settings_dialog()
        dialog.accepted.connect(lambda: self.apply_settings(dialog.result_settings))
        dialog.open()

    def apply_settings(self, new: Settings) -> None:
        """Persist ``new`` and act on what changed: reload the model, restart the microphone."""
        old = self.settings
        self.settings = new
        self.chat.settings = new
        save_settings(self.store, new)
        self.library.set_active(new.model.bundle)
        if new.model != old.model:
            self.load_model()
        # barge-in only changes the mute rule; "enabled" is the Mic button's: neither needs a new Listener
        audio_changed = dataclasses.replace(new.audio, barge_in=False, enabled=False) != \
            dataclasses.replace(old.audio, barge_in=False, enabled=False)
        self.chat.mic_bar.set_mode(new.audio.mode, new.audio.ptt_key)
        self._refresh_devices()
        if audio_changed and self.mic.running:
            self.mic.start(new.audio)
        self.chat.update_mute()
        if not new.speech.enabled:
            self.chat.silence()

    # -- adapters ---------------------------------------------------------------------------------

    def use_adapter(self, bundle: str) -> None:
        """Make ``bundle`` ("" = the bundled default) the active adapter: the model reloads, the Chat tab shows."""
        self.apply_settings(with_active_adapter(self.settings, bundle))
        self.tabs.setCurrentWidget(self.chat)

    def _is_active(self, bundle: str) -> bool:
        active = self.settings.model.bundle
        return bool(active) and Path(active).resolve() == Path(bundle).resolve()

    def _adapter_renamed(self, old: str, new: str) -> None:
        if self._is_active(old):  # same files under a new name: remember it, no reload
            self.settings = with_active_adapter(self.settings, new)
            self.chat.settings = self.settings
            save_settings(self.store, self.settings)
            self.library.set_active(new)

    def _adapter_deleted(self, bundle: str) -> None:
        if self._is_active(bundle):
            self.use_adapter("")

    def _import_adapter(self) -> None:
        self.tabs.setCurrentWidget(self.library)
        self.library.import_dialog()

    def _about(self) -> None:
        QMessageBox.about(self, "About AuRA",
                          "<b>AuRA</b> — a local voice assistant whose LLM hears speech directly "
                          "(a LoRA adapter distilled from an ASR encoder; no speech recognizer at run time).")

    # -- shutdown ---------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        if not self._closed and not self.train.confirm_close():
            event.ignore()  # a training run is in progress and the user chose to stay
            return
        if not self._closed:
            self._closed = True
            self.train.shutdown()  # pauses a running trainer (checkpoint) and waits: no process outlives the window
            self.jobs.shutdown()
            QApplication.instance().removeEventFilter(self)
            self.store.setValue("window/geometry", self.saveGeometry())
            self.store.sync()
            self.chat.stop()
            self.playback.stop()
            self.mic.stop()
            self.model.shutdown()
        super().closeEvent(event)
