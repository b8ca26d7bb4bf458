"""One table row per `aura eval` output: accuracy by family and "exactly heard" answers.

    python research/heard_table.py --bundle assets/default_bundle \
        --manifest .cache/demo-build/data/test/manifest.jsonl \
        "token-rate-v1=research/results/token-rate-v1.eval.jsonl" "frame-rate=...jsonl" ...

"Exactly heard" counts, per family, the correct answers among the clips that the bundle's teacher (greedy, the
cascade's ASR) transcribes exactly after ``normalize_answer`` (the measure of research/token_rate.md: 86
arithmetic and 87 calendar clips of the demo's test split). Each ``NAME=FILE`` is the JSON lines `aura eval`
printed for the same manifest, in its order.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FAMILIES = ("arithmetic", "calendar", "capital", "smart_home", "timer", "unit_conversion")
HEARD = ("arithmetic", "calendar")


def exactly_heard(bundle: Path, manifest: Path) -> tuple[list[bool], list[str]]:
    """Per item of the manifest: does the bundle's teacher transcribe it exactly; and its family."""
    from aura_model.audio import load_audio
    from aura_model.bundle import read_bundle_config
    from aura_model.config import ModelConfig
    from aura_model.evaluate import read_manifest
    from aura_model.scoring import normalize_answer
    from aura_model.transcribe import load_transcriber

    items = read_manifest(manifest)
    audio = ModelConfig.from_dict(read_bundle_config(bundle)["model"]).audio  # the clips as the bundle reads them
    transcribe = load_transcriber(bundle)
    heard = []
    for start in range(0, len(items), 32):
        batch = items[start:start + 32]
        said = transcribe([load_audio(i.audio, audio) for i in batch])
        heard += [normalize_answer(t) == normalize_answer(i.text or "") for t, i in zip(said, batch)]
    return heard, [i.family or "" for i in items]


def row(name: str, results: list[dict], heard: list[bool], families: list[str]) -> str:
    if len(results) != len(heard):
        raise SystemExit(f"heard_table: {name} scores {len(results)} items, the manifest has {len(heard)}")
    cells = [name, f"{100 * sum(r['correct'] for r in results) / len(results):.1f}"]
    for fam in FAMILIES:
        mine = [r["correct"] for r, f in zip(results, families) if f == fam]
        cells.append(f"{100 * sum(mine) / max(1, len(mine)):.0f}")
    for fam in HEARD:
        idx = [i for i, (h, f) in enumerate(zip(heard, families)) if h and f == fam]
        cells.append(f"{sum(results[i]['correct'] for i in idx)}/{len(idx)}")
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True, help="a bundle carrying its teacher")
    ap.add_argument("--manifest", type=Path, required=True)
    ap.add_argument("evals", nargs="+", metavar="NAME=FILE", help="`aura eval` JSON lines of the same manifest")
    args = ap.parse_args(argv)
    heard, families = exactly_heard(args.bundle, args.manifest)
    print("| row | acc % | " + " | ".join(FAMILIES) + " | " + " | ".join(f"heard {f}" for f in HEARD) + " |")
    print("| --- " * (2 + len(FAMILIES) + len(HEARD)) + "|")
    for spec in args.evals:
        name, path = spec.split("=", 1)
        lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines() if x.strip()]
        print(row(name, [x for x in lines if not x.get("summary")], heard, families))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
