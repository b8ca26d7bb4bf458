"""The desktop app's settings: one dataclass per concern, persisted with QSettings.

Values are validated in ``__post_init__`` (naming the bad value, like the library's
configs). Reading never fails: a missing, unparsable or invalid value falls back to
its default, so a hand-edited or old settings file cannot stop the app from starting.
Nothing here imports torch; the model side gets plain ``RuntimeConfig`` /
``GenerationSettings`` objects built from these.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from aura_model.config import QUANTIZATION_MODES, GenerationSettings, RuntimeConfig, check
from aura_model.errors import AuraError
from app.listening.vad import VadConfig

ORGANIZATION = "AuRA"
APPLICATION = "AuRA"
LISTEN_MODES = ("vad", "ptt")  # hands-free (VAD endpointing) or push-to-talk
MIN_PRE_ROLL_MS = 300  # less lead-in cuts soft first syllables (see app/listening/vad.py)

log = logging.getLogger(__name__)


@dataclass
class AudioSettings:
    """Microphone and endpointing."""

    input_device: str = ""  # PortAudio device name; "" = the system default input
    enabled: bool = True  # listen to the microphone at start
    mode: str = "vad"  # "vad" = hands-free (webrtcvad endpointing), "ptt" = push-to-talk
    ptt_key: str = "Space"  # key held to talk (QKeySequence text), while the window has focus
    aggressiveness: int = 2  # webrtcvad mode 0..3; higher calls more frames non-speech
    pre_roll_ms: int = 450  # audio kept before the detected onset, so first syllables are not cut
    hangover_ms: int = 600  # silence that ends an utterance: the endpoint delay
    min_speech_ms: int = 250  # shorter utterances are dropped as clicks and coughs
    max_speech_ms: int = 30000  # longer utterances are cut (30 s is the model's audio limit)
    barge_in: bool = False  # keep the microphone open while the assistant speaks

    def __post_init__(self) -> None:
        check(self.mode in LISTEN_MODES, f"listening mode must be one of {LISTEN_MODES}, got {self.mode!r}")
        check(self.pre_roll_ms >= MIN_PRE_ROLL_MS,
               f"pre-roll must be >= {MIN_PRE_ROLL_MS} ms so first syllables are kept, got {self.pre_roll_ms}")
        check(bool(self.ptt_key.strip()), "the push-to-talk key must not be empty")
        self.vad_config()  # the VAD's own checks (aggressiveness, hang-over, min/max length)

    def vad_config(self) -> VadConfig:
        return VadConfig(aggressiveness=self.aggressiveness, pre_roll_ms=self.pre_roll_ms,
                         hangover_ms=self.hangover_ms, post_roll_ms=min(150, self.hangover_ms),
                         min_speech_ms=self.min_speech_ms, max_speech_ms=self.max_speech_ms)


@dataclass
class ModelSettings:
    """Which model runs, and where."""

    bundle: str = ""  # AuRA bundle folder; "" = the bundled demo model
    base: str = ""  # base LLM override (hub id or folder); "" = the one the bundle names or carries
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    quantization: str = "auto"  # auto | 4bit | 8bit | none

    def __post_init__(self) -> None:
        self.runtime()  # RuntimeConfig validates device and quantization
        check(self.quantization in QUANTIZATION_MODES, f"bad quantization {self.quantization!r}")

    def runtime(self) -> RuntimeConfig:
        return RuntimeConfig(device=self.device, quantization=self.quantization)


@dataclass
class ChatSettings:
    """How answers are generated."""

    system_prompt: str = ""  # "" = the bundle's own system prompt
    max_new_tokens: int = 128  # cap on the answer length in tokens
    temperature: float = 0.0  # 0 = greedy (deterministic)
    context_turns: int = 0  # earlier typed exchanges sent along; 0 = every request stands alone (as the demo model was trained)

    def __post_init__(self) -> None:
        self.generation()
        check(0 <= self.context_turns <= 50, f"context turns must be in [0, 50], got {self.context_turns}")

    def generation(self) -> GenerationSettings:
        return GenerationSettings(max_new_tokens=self.max_new_tokens, temperature=self.temperature)


@dataclass
class SpeechSettings:
    """Spoken replies (text-to-speech)."""

    enabled: bool = False  # read answers aloud
    voice: str = ""  # voice id of the TTS engine; "" = its default
    rate: int = 175  # words per minute

    def __post_init__(self) -> None:
        check(80 <= self.rate <= 450, f"speech rate must be in [80, 450] words/min, got {self.rate}")


@dataclass
class Settings:
    """Everything the Settings dialog edits."""

    audio: AudioSettings = field(default_factory=AudioSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    chat: ChatSettings = field(default_factory=ChatSettings)
    speech: SpeechSettings = field(default_factory=SpeechSettings)

    SECTIONS = ("audio", "model", "chat", "speech")


# ---------------------------------------------------------------------- QSettings
def settings_store(path: str | Path | None = None) -> QSettings:
    """The app's QSettings: the platform's native store, or an ini file at ``path`` (tests, portable installs)."""
    if path is not None:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(ORGANIZATION, APPLICATION)


def _convert(value: Any, default: Any) -> Any:
    """A stored value as the type of its default; ValueError when it cannot be."""
    if isinstance(default, bool):  # ini files store "true"/"false"
        if isinstance(value, str):
            if value.lower() in ("true", "1", "yes", "on"):
                return True
            if value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        return bool(value)
    if isinstance(default, int):
        return int(value)
    if isinstance(default, float):
        return float(value)
    return "" if value is None else str(value)


def _load_section(store: QSettings, name: str, cls: type) -> Any:
    defaults = cls()
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{name}/{f.name}"
        if not store.contains(key):
            continue
        try:
            values[f.name] = _convert(store.value(key), getattr(defaults, f.name))
        except (TypeError, ValueError):
            log.warning("settings: ignoring unreadable %s = %r", key, store.value(key))
    try:
        return cls(**values)
    except AuraError as exc:
        # One bad value must not lose the others: drop fields one at a time until it validates.
        log.warning("settings: %s: %s", name, exc)
        for key in list(values):
            trial = {k: v for k, v in values.items() if k != key}
            try:
                return cls(**trial)
            except AuraError:
                continue
        return defaults


# ---------------------------------------------------------------------- the adapter library
LIBRARY_KEY = "library/folder"  # the adapter library's folder; absent or "" = default_library_folder()


def default_library_folder() -> Path:
    """Where trained and imported adapters live: <user data folder>/AuRA/adapters (platformdirs)."""
    import platformdirs

    return Path(platformdirs.user_data_dir(APPLICATION, ORGANIZATION)) / "adapters"


def library_folder(store: QSettings) -> Path:
    value = store.value(LIBRARY_KEY)
    return Path(str(value)).expanduser() if value else default_library_folder()


def with_active_adapter(settings: Settings, bundle: str) -> Settings:
    """``settings`` with ``bundle`` as the active adapter ("" = the bundled default).

    The active adapter is the Chat tab's model, ``model.bundle``: changing it through
    ``MainWindow.apply_settings`` reloads the model as a Settings change does."""
    return dataclasses.replace(settings, model=dataclasses.replace(settings.model, bundle=bundle))


def load_settings(store: QSettings) -> Settings:
    return Settings(**{name: _load_section(store, name, type(getattr(Settings(), name))) for name in Settings.SECTIONS})


def save_settings(store: QSettings, settings: Settings) -> None:
    for name in Settings.SECTIONS:
        section = getattr(settings, name)
        for f in dataclasses.fields(section):
            store.setValue(f"{name}/{f.name}", getattr(section, f.name))
    store.sync()
