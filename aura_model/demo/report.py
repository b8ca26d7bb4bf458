"""The demo build's record and report: wall time of each stage over the build's sittings, and
report.md / report.png (accuracy per system and family, first-token latency, what each run cost).

A full build takes hours and may be stopped and started again; ``BuildClock`` keeps each stage's
wall time in ``work/timings.json`` and adds the sittings up, and each distillation run's own
training time comes from its bundle (the trainer carries it across resumes).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

Log = Callable[[str], None]

TIMINGS_NAME = "timings.json"


class BuildClock:
    """Wall seconds per stage, added up over the sittings of one build folder (``work/timings.json``)."""

    def __init__(self, work: Path, log: Log = print):
        self.path = Path(work) / TIMINGS_NAME
        self.log = log
        try:
            self.stages: dict[str, dict] = json.loads(self.path.read_text())["stages"]
        except (OSError, ValueError, KeyError, TypeError):
            self.stages = {}

    @contextmanager
    def stage(self, name: str, reused: bool = False, redone: bool = False) -> Iterator[None]:
        """Time one stage; ``reused``: this sitting only found the stage's output from an earlier one;
        ``redone``: the stage runs whole each sitting (evaluation), so this sitting's time replaces the earlier.
        The time is kept even when the stage is interrupted (what it did stays in the build folder)."""
        self.log(f"== {name}" + (" (reused from an earlier sitting)" if reused else ""))
        t0 = time.time()
        try:
            yield
        finally:
            spent = time.time() - t0
            if redone:
                self.stages.pop(name, None)
            entry = self.stages.setdefault(name, {"seconds": 0.0, "sittings": 0, "worked": False})
            entry["seconds"] = round(entry["seconds"] + spent, 1)
            entry["sittings"] += 1
            entry["worked"] = entry["worked"] or not reused
            self.path.write_text(json.dumps({"stages": self.stages}, indent=1) + "\n")
        self.log(f"   {name}: {spent:.0f} s")

    def seconds(self) -> dict[str, float]:
        return {name: entry["seconds"] for name, entry in self.stages.items()}


def training_seconds(bundle: Path) -> float:
    """A distillation run's training time (the trainer's, carried across resumes), 0 when it is not recorded."""
    from ..bundle import read_bundle_config

    return float(read_bundle_config(bundle).get("training", {}).get("elapsed_s") or 0.0)


def training_data(manifest: Path) -> dict:
    """What the adapter was distilled from: clips, distinct requests, renditions per request."""
    from .synth import read_manifest

    rows = read_manifest(manifest)
    requests = {r["index"] for r in rows}
    return {"train_clips": len(rows), "train_requests": len(requests),
            "renditions": max((r.get("rendition", 0) for r in rows), default=0) + 1}


def write_report(work: Path, results: dict, extra: dict) -> tuple[Path, Path]:
    """report.md (tables) and report.png (accuracy per family, time to first token)."""
    systems = results["systems"]
    families = sorted({f for r in systems.values() for f in r.get("accuracy_by_family", {})})
    md = work / "report.md"
    md.write_text(report_markdown(results, extra, families))
    png = work / "report.png"
    plot_report(systems, families, png)
    return md, png


def report_markdown(results: dict, extra: dict, families: list[str]) -> str:
    """report.md: accuracy per system and family, the headline ratios, then the build's timings and sizes.

    ``extra`` may carry ``data`` (training_data), ``stages`` (BuildClock entries) and ``runs`` (training
    seconds per distillation run); it has ``params``."""
    systems = results["systems"]
    text_acc = systems["text upper bound"]["accuracy"]
    aura, cascade = systems["AuRA"], systems["cascade (ASR -> LLM)"]
    lines = [
        "# Demo world: evaluation on the held-out spoken test split", "",
        f"{results['n']} spoken requests: new compositions, spoken by voices no training split uses. "
        "Exact match after `normalize_answer`. Time to first token runs from the end of audio "
        "(the utterance in memory) to the first answer token, on this machine's CPU, one request at a time.", "",
        "| system | accuracy | " + " | ".join(families) + " | median first token (ms) |",
        "| --- | --- | " + " | ".join("---" for _ in families) + " | --- |",
    ]
    for name, r in systems.items():
        fam = r.get("accuracy_by_family", {})
        lines.append(f"| {name} | {100 * r['accuracy']:.1f}% | " + " | ".join(f"{100 * fam.get(f, 0):.0f}" for f in families)
                     + f" | {1000 * (r['median_first_token_s'] or 0):.1f} |")
    lines += [
        "", f"- Teacher ASR word error rate on the spoken test split: **{100 * results['teacher_wer']:.2f}%**",
        f"- AuRA / text upper bound: **{aura['accuracy'] / max(text_acc, 1e-9):.3f}**",
        f"- AuRA - cascade: **{100 * (aura['accuracy'] - cascade['accuracy']):+.1f} points**",
        f"- Median time to first token, AuRA / cascade: "
        f"**{(aura['median_first_token_s'] or 0) / max(cascade['median_first_token_s'] or 1e-9, 1e-9):.2f}x**",
        "", "## Build", "",
    ]
    if "data" in extra:
        d = extra["data"]
        lines += [f"Distilled from {d['train_clips']:,} training clips: {d['train_requests']:,} requests, "
                  f"{d['renditions']} rendition(s) each.", ""]
    lines += _build_tables(extra)
    lines += ["", "| model | parameters |", "| --- | --- |"]
    lines += [f"| {k} | {v:,} |" for k, v in extra["params"].items()]
    return "\n".join(lines) + "\n"


def _build_tables(extra: dict) -> list[str]:
    """What the build cost: wall time per stage over its sittings, training time per distillation run."""
    sections: list[list[str]] = []
    if extra.get("stages"):
        sittings = max(e["sittings"] for e in extra["stages"].values())
        sections.append([f"Wall time of each stage, added up over the build's {sittings} sitting(s); a stage whose "
                         "output an earlier build left counts only the time spent checking it.", "",
                         "| stage | wall seconds | sittings |", "| --- | --- | --- |",
                         *(f"| {name} | {e['seconds']:.0f}{'' if e['worked'] else ' (reused)'} | {e['sittings']} |"
                           for name, e in extra["stages"].items())])
    if extra.get("runs"):
        sections.append(["Training time of each distillation run (the trainer's own clock, across resumes; the runs "
                         "share the machine's cores).", "", "| run | training seconds |", "| --- | --- |",
                         *(f"| {name} | {seconds:.0f} |" for name, seconds in extra["runs"].items())])
    lines: list[str] = []
    for section in sections:
        lines += ([""] if lines else []) + section
    return lines


def plot_report(systems: dict, families: list[str], png: Path) -> None:
    """report.png: accuracy per family of every system, and the median time to first token of the main three."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(systems)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 5.0), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        fam = systems[name].get("accuracy_by_family", {})
        ax1.bar([j + i * width for j in range(len(families))], [100 * fam.get(f, 0) for f in families], width, label=name)
    ax1.set_xticks([j + 0.4 - width / 2 for j in range(len(families))], [f.replace("_", "\n") for f in families])
    ax1.set_ylabel("exact-match accuracy (%)")
    ax1.set_ylim(0, 105)
    ax1.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=4)  # below: never over a bar
    ax1.set_title("Accuracy per family (held-out spoken test split)")
    main = ["text upper bound", "cascade (ASR -> LLM)", "AuRA"]
    ax2.bar(range(3), [1000 * (systems[n]["median_first_token_s"] or 0) for n in main], color=["C0", "C1", "C2"])
    ax2.set_xticks(range(3), ["text", "cascade", "AuRA"])
    ax2.set_ylabel("median ms, end of audio -> first token")
    ax2.set_title("Latency")
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
