"""A private PulseAudio server with a null sink: the virtual microphone of the capture tests.

Shared by the capture, listen and spoken-reply tests (tests/conftest.py offers the
``pulse_device`` fixture to every test module). The fixture starts a PulseAudio daemon
owned by the test (unless one is already reachable, which it borrows) with a null
sink ``aura_test`` whose monitor is the default source; :func:`play` plays a wav
into the sink with paplay, and PortAudio records it through ALSA's ``pulse``
device (ALSA's pulse plugin, libasound2-plugins). ``PULSE_SERVER`` is set in the
environment while the fixture lives, so child processes (``aura listen``) reach
the same server.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from app.listening.devices import list_input_devices, rescan_devices

SINK = "aura_test"


def synthesize(path: Path, text: str = "turn on the kitchen light") -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt install espeak-ng)")
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
    return path


def wait_for(condition, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _pactl_ok(env) -> bool:
    try:
        return subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _start_private_pulse(root: Path) -> tuple[subprocess.Popen, str]:
    """A PulseAudio daemon owned by this test (works as root without --system), and its server address."""
    socket = root / "native"
    script = root / "aura_test.pa"
    script.write_text(
        f"load-module module-native-protocol-unix auth-anonymous=1 socket={socket}\n"
        f"load-module module-null-sink sink_name={SINK}\n"
        f"set-default-sink {SINK}\n"
        f"set-default-source {SINK}.monitor\n"
    )
    env = dict(os.environ, HOME=str(root), XDG_RUNTIME_DIR=str(root), XDG_CONFIG_HOME=str(root / "config"),
               PULSE_RUNTIME_PATH=str(root / "runtime"), PULSE_STATE_PATH=str(root / "state"))
    env.pop("PULSE_SERVER", None)
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "-n", f"--file={script}", "--exit-idle-time=-1", "--use-pid-file=no",
         "--disallow-exit", f"--log-target=file:{root / 'pulse.log'}"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = f"unix:{socket}"
    if not wait_for(lambda: daemon.poll() is None and _pactl_ok(dict(os.environ, PULSE_SERVER=server)), 10.0):
        daemon.kill()
        log = (root / "pulse.log").read_text(errors="replace") if (root / "pulse.log").exists() else ""
        pytest.fail(f"private PulseAudio did not start:\n{log[-2000:]}")
    return daemon, server


@pytest.fixture(scope="module")
def pulse_device(tmp_path_factory):
    """Name of the PortAudio device recording from the null sink's monitor; the daemon lives for this module."""
    for tool in ("pulseaudio", "pactl", "paplay", "pacat"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt install pulseaudio pulseaudio-utils)")
    root = tmp_path_factory.mktemp("pulse")
    (root / "client.conf").write_text("autospawn = no\n")
    patch = pytest.MonkeyPatch()
    patch.setenv("PULSE_CLIENTCONFIG", str(root / "client.conf"))  # never autospawn a user daemon
    daemon, module_id, old_source = None, None, None
    if _pactl_ok(os.environ):  # a server is already running: borrow it
        module_id = subprocess.run(["pactl", "load-module", "module-null-sink", f"sink_name={SINK}"],
                                   capture_output=True, text=True, check=True).stdout.strip()
        old_source = subprocess.run(["pactl", "get-default-source"], capture_output=True, text=True).stdout.strip()
        subprocess.run(["pactl", "set-default-source", f"{SINK}.monitor"], check=True)
    else:
        daemon, server = _start_private_pulse(root)
        patch.setenv("PULSE_SERVER", server)
    # Keep the null sink rendering at a 30 ms latency, like a real microphone: an idle null sink feeds its
    # monitor in bursts up to 2 s apart.
    with open("/dev/zero", "rb") as zeros:  # pacat plays raw PCM from stdin: endless silence
        keepalive = subprocess.Popen(["pacat", "--playback", f"--device={SINK}", "--format=s16le", "--rate=16000",
                                      "--channels=1", "--latency-msec=30"],
                                     stdin=zeros, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rescan_devices()  # PortAudio enumerated its devices before the server existed
        names = [d["name"] for d in list_input_devices()]
        device = next((n for n in ("pulse", "default") if n in names), None)
        if device is None:
            pytest.skip(f"PortAudio sees no 'pulse' or 'default' input (devices: {names}); "
                        "install ALSA's pulse plugin: apt install libasound2-plugins")
        yield device
    finally:
        keepalive.kill()
        keepalive.wait()
        if module_id:
            if old_source:
                subprocess.run(["pactl", "set-default-source", old_source])
            subprocess.run(["pactl", "unload-module", module_id])
        if daemon is not None:
            daemon.terminate()
            try:
                daemon.wait(5)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
        patch.undo()
        rescan_devices()


def play(wav: Path) -> None:
    subprocess.run(["paplay", f"--device={SINK}", str(wav)], check=True, timeout=20)
