"""Ship distillation runs made with research/replay.py as the demo world's default bundle, with the demo build's
own evaluation, report and shipping code: for a recipe whose runs were distilled outside `aura demo build`
(same trainer, same flags and data as the build's recipe), so they need not be trained again.

    python research/ship_runs.py --main .cache/research/runs/token-rate-v1/bundle \
        --ablation "no pooling=assets/default_bundle" \
        --ablation "no layer-wise loss=.cache/research/runs/token-rate-v1-no-layer/bundle" ... \
        --data .cache/demo-build/data --models .cache/research/models --work .cache/ship [--ship assets/default_bundle]

1. copies the main run's bundle to WORK/bundle and puts the base LLM and the teacher it was distilled from
   (``--models``: the fp32 copies replay.py made) into it, stored in fp16 as the build ships them, with this
   machine's folders written as ``demo-build/...`` in its metadata;
2. scores text upper bound, cascade and AuRA on the spoken test split, and AuRA for each ablation
   (``aura_model.demo.build.evaluate_systems``), writes WORK/report.md and report.png (``demo.report.write_report``);
3. with ``--ship``, installs the bundle, sample clips and report there (``build.ship``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aura_model.bundle import (
    CONFIG_NAME,
    bundle_info,
    copy_model_files,
    read_bundle_config,
)
from aura_model.demo import build, report


def parameters(folder: Path) -> int:
    """Parameters in a model folder's safetensors weights (read from the headers)."""
    import math

    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (safe_open is not iterable)


def assemble(main: Path, models: Path, data: Path, work: Path) -> Path:
    """WORK/bundle: the main run's bundle carrying its base LLM and teacher, paths written as the build writes them."""
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(main, bundle)
    for role, name in (("student", "base"), ("teacher", "teacher")):
        shutil.rmtree(bundle / name, ignore_errors=True)
        copy_model_files(models / role, bundle / name)
    config = read_bundle_config(main)
    cache = config.get("training", {}).get("config", {}).get("train", {}).get("cache_dir") or ""
    labels = [(models / "student", "demo-build/llm"), (models / "teacher", "demo-build/teacher"),
              (data, "demo-build/data"), (main, "demo-build/bundle")] + ([(Path(cache), "demo-build/cache")] if cache else [])
    build.relabel_paths(bundle, labels)
    build._carried_models_in_fp16(bundle)
    return bundle


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--main", type=Path, required=True, help="the recipe's bundle (replay.py's runs/NAME/bundle)")
    p.add_argument("--ablation", action="append", default=[], metavar="NAME=BUNDLE", help="an ablation row")
    p.add_argument("--data", type=Path, required=True, help="the demo build's data folder (its test split is scored)")
    p.add_argument("--models", type=Path, required=True, help="folder with the student/ and teacher/ distilled from")
    p.add_argument("--work", type=Path, required=True, help="where the report and the assembled bundle go")
    p.add_argument("--ship", type=Path, help="install the bundle there (e.g. assets/default_bundle)")
    args = p.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    data_link = args.work / "data"
    if not data_link.exists():
        data_link.symlink_to(args.data.resolve(), target_is_directory=True)
    ablations = dict(a.split("=", 1) for a in args.ablation)
    ablations = {name: Path(path) for name, path in ablations.items()}
    bundle = assemble(args.main, args.models, args.data, args.work)
    results = build.evaluate_systems(bundle, ablations, args.data / "test" / "manifest.jsonl", print)
    params = {"LLM": parameters(args.models / "student"), "teacher ASR": parameters(args.models / "teacher"),
              "AuRA adapter + embedding (+ pooler)": bundle_info(bundle)["adapter_and_embedding_parameters"]}
    runs = {"AuRA": report.training_seconds(bundle),
            **{f"AuRA, {n}": report.training_seconds(b) for n, b in ablations.items() if (b / CONFIG_NAME).is_file()}}
    results.update({"runs": runs, "params": params, "quick": False,
                    "data": report.training_data(args.data / "train" / "manifest.jsonl")})
    report.write_report(args.work, results, results)
    (args.work / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    print((args.work / "report.md").read_text())
    if args.ship:
        build.ship(bundle, args.ship, args.work, print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
