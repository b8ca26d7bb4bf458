"""Cold start: how long a user waits from launching AuRA to an answer, as ratios to `import torch`.

    python benchmarks/bench_start.py [--runs 5] [--bundle DIR] [--gui] [--frozen DIST/aura] [--json OUT]

Runs, interleaved so that a busy machine slows every row alike, ``--runs`` times each:

* ``python -c "import torch"``: the floor every PyTorch program pays;
* ``aura chat --text ...`` on the bundle (default: the shipped demo bundle), wall time to exit;
* ``aura chat --audio ...`` with the bundle's first sample clip;
* with ``--gui``: the window from launch to a loaded model (offscreen; ``aura-gui --quit-when-ready`` prints
  the moment, which is what is timed; closing afterwards is not);
* with ``--frozen PATH``: a PyInstaller build's ``aura --self-test``, wall time to exit.

It prints the median of each with its ratio to the floor, then the slowest imports of the
``aura chat --text`` path (``python -X importtime``, cumulative, top-level packages only).
Nothing here asserts: the figures go into the README and issue notes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
QUESTION = "what is two plus two"


def wall(cmd: list[str], env: dict[str, str], until: str | None = None) -> float:
    """Seconds from launch to exit, or to the first stdout line starting with ``until`` (the window's "ready")."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    elapsed = None
    if until is not None:
        for line in proc.stdout:
            if line.startswith(until):
                elapsed = time.perf_counter() - t0
                break
    _, err = proc.communicate(timeout=600)
    elapsed = elapsed if elapsed is not None else time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): {err.strip()[-400:]}")
    return elapsed


def commands(args, bundle: Path) -> dict[str, list[str]]:
    sample = sorted((bundle / "samples").glob("*.wav"))[0]
    rows = {
        "import torch (floor)": [PY, "-c", "import torch"],
        "aura chat --text": [PY, "-m", "app.cli", "chat", "--bundle", str(bundle), "--text", QUESTION],
        "aura chat --audio": [PY, "-m", "app.cli", "chat", "--bundle", str(bundle), "--audio", str(sample)],
    }
    if args.gui:
        settings = Path(tempfile.mkdtemp()) / "bench.ini"  # the user's own settings stay out of it
        rows["window to ready (offscreen)"] = [PY, "-m", "app", "--bundle", str(bundle), "--settings", str(settings),
                                               "--quit-when-ready"]
    if args.frozen:
        rows["frozen aura --self-test"] = [str(args.frozen), "--self-test"]
    return rows


def import_breakdown(bundle: Path, env: dict[str, str], top: int = 12) -> list[tuple[str, float]]:
    """Cumulative import seconds of the slowest top-level modules on the `aura chat --text` path."""
    done = subprocess.run([PY, "-X", "importtime", "-m", "app.cli", "chat", "--bundle", str(bundle), "--text",
                           QUESTION], env=env, capture_output=True, text=True, timeout=600)
    rows = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line.split("|")
        if len(name) - len(name.lstrip()) <= 1:  # depth 0: what the program itself imported, children included
            rows.append((name.strip(), int(cumulative) / 1e6))
    return sorted(rows, key=lambda r: -r[1])[:top]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--bundle", type=Path, default=ROOT / "assets" / "default_bundle")
    p.add_argument("--gui", action="store_true", help="also time the window from launch to ready (offscreen)")
    p.add_argument("--frozen", type=Path, help="a PyInstaller build's `aura` executable to time too")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    rows = commands(args, args.bundle)
    times: dict[str, list[float]] = {name: [] for name in rows}
    until = {"window to ready (offscreen)": "aura-gui: model ready"}
    for name, cmd in rows.items():  # one warm-up each: the page cache, not the first run, is what users have
        wall(cmd, env, until.get(name))
    for _ in range(args.runs):
        for name, cmd in rows.items():
            times[name].append(wall(cmd, env, until.get(name)))
    floor = statistics.median(times["import torch (floor)"])
    print(f"{'what':32} {'median s':>9} {'min s':>7} {'x floor':>8}   ({args.runs} runs each, interleaved)")
    result = {"runs": args.runs, "rows": {}}
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:32} {med:9.2f} {min(values):7.2f} {med / floor:8.2f}")
        result["rows"][name] = {"median_s": med, "min_s": min(values), "ratio_to_floor": med / floor}
    print("\nslowest imports of `aura chat --text` (cumulative s):")
    breakdown = import_breakdown(args.bundle, env)
    for name, seconds in breakdown:
        print(f"  {seconds:6.2f}  {name}")
    result["imports"] = dict(breakdown)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
