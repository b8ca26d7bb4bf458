"""Teacher cache: train the same tiny setup with a cold and with a warm teacher cache; compare samples/s.

    python benchmarks/bench_teacher_cache.py [--clips 32] [--epochs 1] [--window 1500] [--threads 1]

What is timed: everything a run spends per clip - decoding and validating the clips, filling the
caches (loading the teacher when needed, teacher forward passes, the base LLM's answers) and the
training loop - but not loading the student or writing the bundle, which cost the same either way.
samples/s = clips trained on / that time.

Runs (same data, seed and settings; only the cache differs):

* cold teacher: the teacher-state cache is empty (transcript and answer caches are warm, so only the
  teacher's cost is measured); the teacher is loaded and run on every clip;
* warm: everything is cached; the teacher is not even loaded;
* all cold (for reference): nothing cached, the base LLM also writes its answers.

The teacher is a tiny random Whisper with the real 30 s window by default (``--window 1500``
encoder positions = 3000 padded mel frames per clip, as every real Whisper checkpoint needs), the
student a tiny random Llama (4 layers x 64). Target: warm >= 2x cold.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aura_model.testing import make_clip_folder, save_tiny_base, save_tiny_whisper  # noqa: E402
from aura_model.train import ListReporter, build_spec, train  # noqa: E402


def run_once(root: Path, args, label: str) -> dict:
    out = root / f"out-{label}"
    shutil.rmtree(out, ignore_errors=True)
    overrides = {
        "train.epochs": str(args.epochs), "train.batch_size": str(args.batch_size), "train.val_fraction": "0",
        "train.eval_at_end": "false", "train.num_threads": str(args.threads), "train.cache_dir": str(root / "cache"),
        "train.response_max_tokens": "16", "train.teacher_batch_size": "8", "embedding.conv_channels": "64",
        "lora.r": "8", "train.seed": "0",
    }
    spec = build_spec(None, overrides, {"teacher": str(root / "teacher"), "student": str(root / "student"),
                                        "data": str(root / "clips"), "output": str(out)})
    t0 = time.perf_counter()
    result = train(spec, ListReporter())
    wall = time.perf_counter() - t0
    timed = sum(result.timing.get(k, 0.0) for k in ("validate", "transcripts", "teacher", "responses", "train"))
    return {"label": label, "samples": result.samples, "timed_s": timed, "samples_per_s": result.samples / timed,
            "teacher_loaded": result.teacher_loaded, "timing": result.timing, "wall_s": wall, "cache": result.cache}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clips", type=int, default=32, help="number of 0.5-1.5 s clips")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--window", type=int, default=1500, help="teacher max_source_positions (1500 = Whisper's 30 s)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=2, help="timed repetitions of each run (best is reported)")
    p.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp folder)")
    args = p.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="aura-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        save_tiny_base(root / "student")
        save_tiny_whisper(root / "teacher", max_source_positions=args.window)
        make_clip_folder(root / "clips", args.clips, seed=0)
        cache = root / "cache"
        results = {}
        for _ in range(args.repeats):
            shutil.rmtree(cache, ignore_errors=True)
            all_cold = run_once(root, args, "all cold")
            shutil.rmtree(cache / "teacher")  # only the teacher states go cold
            cold = run_once(root, args, "cold teacher")
            warm = run_once(root, args, "warm")
            for r in (all_cold, cold, warm):
                best = results.get(r["label"])
                if best is None or r["samples_per_s"] > best["samples_per_s"]:
                    results[r["label"]] = r
        assert results["cold teacher"]["teacher_loaded"] and not results["warm"]["teacher_loaded"]
        print(f"\nteacher cache benchmark: {args.clips} clips x {args.epochs} epoch(s), batch {args.batch_size}, "
              f"teacher window {args.window} positions ({2 * args.window} mel frames), {args.threads} thread(s), "
              f"best of {args.repeats}")
        print(f"{'run':<14} {'samples/s':>10} {'timed s':>8} {'teacher s':>9} {'answers s':>9} {'train s':>8}  teacher loaded")
        for label in ("all cold", "cold teacher", "warm"):
            r = results[label]
            t = r["timing"]
            print(f"{label:<14} {r['samples_per_s']:>10.1f} {r['timed_s']:>8.2f} {t.get('teacher', 0):>9.2f} "
                  f"{t.get('responses', 0):>9.2f} {t.get('train', 0):>8.2f}  {r['teacher_loaded']}")
        ratio = results["warm"]["samples_per_s"] / results["cold teacher"]["samples_per_s"]
        ratio_all = results["warm"]["samples_per_s"] / results["all cold"]["samples_per_s"]
        print(f"warm / cold teacher = {ratio:.2f}x   (warm / all cold = {ratio_all:.2f}x; target warm >= 2x cold)")
        return 0 if ratio >= 2.0 else 1
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
