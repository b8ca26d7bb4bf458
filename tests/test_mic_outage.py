"""A microphone that dies while listening: no stderr flood, one report, backoff, recovery, Ctrl-C ends it.

The failure being guarded against: a PulseAudio server dying under `aura listen` made PortAudio's ALSA
thread loop for ever printing one error line (1.45 GB in 35 s), stopping the stream blocked for ever,
and Ctrl-C printed "aura: interrupted" without ending the process. That PortAudio loop is rare and
timing-dependent, so most tests here use tests/fake_portaudio.py, which imitates it; the last test
kills a real (private) PulseAudio server under `aura listen`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.assets import default_bundle
from app.listening import devices as listening_devices
from app.listening.listener import Listener
from app.listening.stream import MicrophoneStream
from aura_model.errors import AuraError
from fake_portaudio import DEVICE, LINE, FakePortAudio
from helpers import make_bundle
from pulse import SINK, _pactl_ok, _start_private_pulse, wait_for

TESTS = Path(__file__).parent
WAIT_S = 60.0  # for what takes a second or two on an idle machine; a busy one must not fail it
MAX_STDERR = 1_000_000  # bytes: the report was 1.45 GB; a handful of lines is what a user should see


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    shipped = default_bundle()
    return shipped if shipped is not None else make_bundle(tmp_path_factory.mktemp("outage"), "llama")[0]


@pytest.fixture
def fake_portaudio(monkeypatch):
    """Install a FakePortAudio (no flooding) as sounddevice; release its stuck streams afterwards."""
    made = []

    def install(plan):
        made.append(FakePortAudio(plan))
        monkeypatch.setitem(sys.modules, "sounddevice", made[-1])
        return made[-1]

    yield install
    for fake in made:
        fake.release()
    # a stream left behind by stop() is counted as open until PortAudio (here: the fake) lets go of it
    assert wait_for(lambda: listening_devices.open_stream_count() == 0, WAIT_S)


class StderrReader:
    """Reads a child's stderr as it comes: counts every byte, keeps the lines that are not the flood line."""

    def __init__(self, stream):
        self.bytes, self.flood_lines, self.lines = 0, 0, []
        self._stream = stream
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        pending = b""
        while chunk := self._stream.read1(1 << 20):
            self.bytes += len(chunk)
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line + b"\n" == LINE:
                    self.flood_lines += 1
                elif len(self.lines) < 1000:
                    self.lines.append(line.decode(errors="replace"))

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def count(self, text: str) -> int:
        return sum(text in line for line in list(self.lines))

    def join(self):
        self._thread.join(WAIT_S)

    def __repr__(self):
        return f"<{self.bytes} bytes of stderr, {self.flood_lines} flood lines, the others: {self.lines[-20:]}>"


def _ctrl_c_reaches_it() -> None:
    """In the child: Ctrl-C's default. A shell starts background jobs (a CI runner's, `cmd &`) with SIGINT
    ignored, and Python keeps an ignored SIGINT ignored, so the test's Ctrl-C would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(proc: subprocess.Popen) -> int | None:
    """Ctrl-C; the exit code, or None when the process did not end within WAIT_S (it is killed then)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None


# -- the stderr filter ----------------------------------------------------------------------------


FILTER_SCRIPT = r"""
import os, sys, threading
from app.listening import native_stderr
quiet = native_stderr.install()
os.write(2, b"before\n")
line = sys.argv[1].encode() + b"\n"
for _ in range(int(sys.argv[2])):
    os.write(2, line)
if sys.argv[3] == "for ever":  # like PortAudio's stuck thread: the flood lasts while the filter closes
    threading.Thread(target=lambda: [os.write(2, line) for _ in iter(int, 1)], daemon=True).start()
sys.stderr.write("python's own stderr\n")  # one write: print() writes its end separately, and the C thread may
sys.stderr.flush()                         # land between the two (sys.stderr is unbuffered), gluing the lines
os.write(2, b"after\n")
quiet.close()
print(native_stderr.flood_count(), quiet.hidden)
print("python after close", file=sys.stderr, flush=True)
os.write(2, b"C after close\n")
"""


def _filtered(line: str, times: int, then: str = "stop") -> tuple[list[str], list[str]]:
    """Write ``line`` ``times`` times to fd 2 in a child with the filter on, ``then`` "stop" or go on "for ever":
    (its stderr lines, its stdout words)."""
    done = subprocess.run([sys.executable, "-c", FILTER_SCRIPT, line, str(times), then], capture_output=True,
                          timeout=WAIT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(done.stderr) < 10_000, f"{len(done.stderr)} bytes of stderr"
    return done.stderr.decode().splitlines(), done.stdout.decode().split()


def test_a_flood_of_one_portaudio_line_is_shown_once_then_counted():
    line = LINE.decode().strip()
    err, out = _filtered(line, 2000, then="for ever")
    assert err[0] == "before" and err.count(line) == 1
    assert "python's own stderr" in err and "after" in err  # everything else passes, in order
    assert err.index(line) < err.index("python's own stderr") < err.index("after")
    assert sum("keeps repeating" in e for e in err) == 1
    assert out[0] == "1" and int(out[1]) >= 1999  # one flood, which a MicrophoneStream treats as its stream dying
    assert f"aura: {out[1]} repeated PortAudio/ALSA error lines were hidden" in err
    # closed while the flood lasts: Python's stderr goes to the terminal, C's (the looping thread's) nowhere
    assert err[-1] == "python after close" and "C after close" not in err


def test_a_few_repeated_alsa_lines_are_hidden_but_are_no_flood():
    line = "ALSA lib pulse.c:242:(pulse_connect) PulseAudio: Unable to connect: Connection refused"
    err, out = _filtered(line, 4)
    assert err.count(line) == 1 and not any("keeps repeating" in e for e in err)
    assert out == ["0", "3"]
    assert err[-2:] == ["python after close", "C after close"]  # fd 2 is the real stderr again


# -- the listener: backoff, one report per outage --------------------------------------------------


def test_listener_backs_off_reports_once_and_says_when_audio_is_back():
    errors, recovered, delays = [], [], []

    class Working:
        def __init__(self, reads_before_failing):
            self.reads_left = reads_before_failing

        def start(self):
            pass

        def stop(self):
            pass

        def read(self, timeout=None):
            self.reads_left -= 1
            if self.reads_left < 0:
                raise AuraError("fake device unplugged")
            time.sleep(0.003)
            return np.zeros(480, dtype=np.float32)

    def factory():
        delays.append(listener._delay)  # the wait that follows this try if it fails
        if len(delays) <= 6 or len(delays) == 8:
            raise AuraError("fake device missing")
        return Working(10 if len(delays) == 7 else 10**9)  # try 7 works for 10 chunks, try 9 for good

    listener = Listener(lambda s: None, on_error=errors.append, on_recover=lambda: recovered.append(1),
                        stream_factory=factory, retry_s=0.05, retry_max_s=0.4)
    listener.start()
    try:
        assert wait_for(lambda: len(recovered) >= 2, WAIT_S)  # tries 7 and 9 work
    finally:
        listener.stop()
    assert delays[:6] == [0.05, 0.1, 0.2, 0.4, 0.4, 0.4]  # doubling up to the cap
    assert delays[7] == 0.05  # audio flowed in between: the next outage starts from retry_s again
    # the first outage is reported once however many tries met it; the second once too
    assert errors == ["fake device missing", "fake device unplugged", "fake device missing"]
    assert recovered == [1, 1]  # once per outage, not once per chunk


# -- a PortAudio stream that gets stuck -----------------------------------------------------------


def test_stopping_a_stuck_stream_returns_and_leaves_it_counted(fake_portaudio):
    fake = fake_portaudio(["stuck"])
    mic = MicrophoneStream(DEVICE, stall_timeout_s=0.5).start()
    assert fake.broken.wait(WAIT_S)
    with pytest.raises(AuraError, match="no audio"):
        while True:
            mic.read(timeout=WAIT_S)
    assert mic.stop(timeout_s=0.2) is False  # PortAudio did not let go; stop() returned anyway
    assert listening_devices.open_stream_count() == 1
    assert listening_devices.rescan_devices() is False  # Pa_Terminate would block on the stuck stream
    fake.release()
    assert wait_for(lambda: listening_devices.open_stream_count() == 0, WAIT_S)


@pytest.mark.usefixtures("main_thread_gc")
def test_window_shows_a_banner_for_a_stuck_stream_and_recovers(qtbot, tmp_path, fake_portaudio):
    from PySide6.QtCore import Qt

    from app.settings import settings_store
    from app.widgets.main_window import MainWindow

    fake = fake_portaudio(["stuck", "refuse", "ok"])
    store = settings_store(tmp_path / "aura.ini")
    store.setValue("model/bundle", str(tmp_path / "no-bundle-here"))  # the microphone is what is tested
    store.setValue("audio/enabled", True)
    store.sync()
    window = MainWindow(store, stream_factory=lambda device: MicrophoneStream(DEVICE, stall_timeout_s=0.5),
                        play_fn=lambda samples, rate, stop: None)
    qtbot.addWidget(window)
    window.show()
    levels, errors = [], []  # recorded on the listener's thread, in the order it did things
    window.mic.level.connect(lambda db: levels.append(time.monotonic()), Qt.ConnectionType.DirectConnection)
    window.mic.error.connect(lambda m: errors.append(time.monotonic()), Qt.ConnectionType.DirectConnection)

    def banner_says(text):
        banner = window.chat.banner("mic")
        return banner is not None and text in banner.text

    qtbot.waitUntil(lambda: banner_says("Microphone unavailable: ") and banner_says("'fake microphone'")
                    and window.chat.mic_bar.state_label.text() == "no microphone", timeout=int(WAIT_S * 1000))
    qtbot.waitUntil(lambda: banner_says("The microphone is back"), timeout=int(WAIT_S * 1000))
    assert window.mic.state().ok
    working_since = fake.streams[2].started_at
    qtbot.waitUntil(lambda: levels and levels[-1] > working_since, timeout=int(WAIT_S * 1000))  # the meter moves
    assert not [t for t in levels if errors[0] < t < working_since]  # and did not while no stream delivered
    assert len(fake.streams) == 3
    listener = window.mic.listener
    window.mic.stop()
    assert not listener.running  # the listener thread ended: nothing of it waits on the stuck stream


# -- `aura listen` --------------------------------------------------------------------------------


def _aura_command() -> list[str]:
    import shutil

    exe = shutil.which("aura", path=os.path.dirname(sys.executable))
    return [exe] if exe else [sys.executable, "-m", "app.cli"]


def test_listen_survives_a_stuck_portaudio_stream_and_ctrl_c_ends_it(bundle):
    cmd = [sys.executable, str(TESTS / "fake_portaudio.py"), "stuck,ok", "listen", "--device", DEVICE,
           "--bundle", str(bundle), "--compute-device", "cpu"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_ctrl_c_reaches_it)
    err = StderrReader(proc.stderr)
    try:
        assert wait_for(lambda: err.has("listening") or proc.poll() is not None, WAIT_S * 2), err
        assert wait_for(lambda: err.has("the microphone is back") or proc.poll() is not None, WAIT_S), err
        code = _interrupt(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err.join()
    assert code == 130, f"exit {code} after Ctrl-C; {err}"
    assert err.bytes < MAX_STDERR, f"{err.bytes} bytes of stderr"
    assert err.flood_lines == 1  # shown once, then counted
    # one warning, as soon as the flood began (not after the 5 s without audio), each on a line of its own
    warnings = [line for line in err.lines if "aura: warning:" in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"aura: warning: audio input from '{DEVICE}' broke: "
                                                         "PortAudio is stuck"), err.lines
    assert warnings[0].endswith("gone?)") and err.lines.count("aura: the microphone is back: listening") == 1
    assert err.has("repeated PortAudio/ALSA error lines were hidden") and err.has("aura: interrupted")
    assert not err.has("Traceback"), err.lines


@pytest.mark.pulse
def test_listen_when_the_sound_server_dies_and_comes_back(bundle, tmp_path, monkeypatch):
    """A private PulseAudio server (not the shared fixture's: this one is killed) dies under `aura listen`."""
    import shutil

    for tool in ("pulseaudio", "pactl", "pacat"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt install pulseaudio pulseaudio-utils)")
    (tmp_path / "client.conf").write_text("autospawn = no\n")
    monkeypatch.setenv("PULSE_CLIENTCONFIG", str(tmp_path / "client.conf"))
    daemon, server = _start_private_pulse(tmp_path)
    monkeypatch.setenv("PULSE_SERVER", server)
    keepalive = _keep_sink_running()
    cmd = _aura_command() + ["listen", "--device", "pulse", "--bundle", str(bundle), "--compute-device", "cpu"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=_ctrl_c_reaches_it)
    err = StderrReader(proc.stderr)
    try:
        assert wait_for(lambda: err.has("listening") or proc.poll() is not None, WAIT_S * 2), err
        if not err.has("listening") and err.has("no audio input device named 'pulse'"):
            pytest.skip("PortAudio sees no 'pulse' input: apt install libasound2-plugins")
        daemon.kill()
        daemon.wait()
        keepalive.kill()
        assert wait_for(lambda: err.has("aura: warning:") or proc.poll() is not None, WAIT_S), err
        daemon, _ = _start_private_pulse(tmp_path)
        keepalive = _keep_sink_running()
        assert wait_for(lambda: err.has("the microphone is back") or proc.poll() is not None, WAIT_S), err
        code = _interrupt(proc)
    finally:
        for p in (proc, keepalive, daemon):
            if p.poll() is None:
                p.kill()
                p.wait()
    err.join()
    assert code == 130, f"exit {code} after Ctrl-C; {err}"
    assert err.bytes < MAX_STDERR, f"{err.bytes} bytes of stderr"
    warnings = [line for line in err.lines if line.startswith("aura: warning:")]
    assert len(warnings) == len(set(warnings)), warnings  # each problem said once, not once per retry
    assert "'pulse'" in warnings[0]
    assert err.count("the microphone is back") == 1
    assert not err.has("Traceback"), err.lines


def _keep_sink_running() -> subprocess.Popen:
    """Silence into the null sink, so its monitor delivers every 30 ms (tests/pulse.py does the same)."""
    assert _pactl_ok(os.environ)
    with open("/dev/zero", "rb") as zeros:
        return subprocess.Popen(["pacat", "--playback", f"--device={SINK}", "--format=s16le", "--rate=16000",
                                 "--channels=1", "--latency-msec=30"],
                                stdin=zeros, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
