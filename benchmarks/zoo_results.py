"""Results table of the multimodal model zoo (and ID-only baselines) under one protocol.

Every model: the same split (per-user random 8:1:1 as MMRec, or per-user temporal), full ranking,
checkpoint selected on validation Recall@20 (test never chooses anything), the same epoch budget
and patience, several training seeds; the table shows the test mean +- std over seeds.

    python benchmarks/zoo_results.py --dataset amazon-scientific-mm --seeds 1 2 --epochs 40 --jsonl runs.jsonl
    python benchmarks/zoo_results.py --summarise runs.jsonl

Hyper-parameters are each model's defaults (no per-model tuning): a same-budget comparison, not
the best each model can do.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modalrec.config import resolve
from modalrec.train.experiment import train

ZOO = ["vbpr", "mmgcn", "grcn", "dualgnn", "lattice", "freedom", "bm3", "slmrec", "mgcn", "lgmrec", "micro", "dmrl"]
BASELINES = ["bpr", "lightgcn"]
COLUMNS = ["recall@10", "recall@20", "recall@50", "ndcg@10", "ndcg@20", "ndcg@50", "precision@20", "map@20"]


def run(model: str, dataset: str, split: str, seed: int, epochs: int, patience: int, run_dir: str, extra: list[str]) -> dict:
    cfg = resolve(
        [
            f"model={model}",
            f"dataset={dataset}",
            f"dataset.split.method={split}",
            "dataset.split.seed=0",
            f"train.seed={seed}",
            f"train.epochs={epochs}",
            f"train.patience={patience}",
            "train.select=recall@20",
            "eval.ks=[10,20,50]",
            "eval.metrics=[recall,ndcg,precision,map]",
            "train.progress=false",
            f"run.dir={run_dir}",
            f"run.name={model}-{split}-s{seed}",
            *extra,
        ]
    )
    start = time.perf_counter()
    _, results = train(cfg)
    results["wall_s"] = time.perf_counter() - start
    return results


def summarise(rows: list[dict]) -> None:
    """mean +- std over seeds per model, models in first-seen order."""
    print(f"{'model':<10}{'seeds':>6}" + "".join(f"{c:>17}" for c in COLUMNS) + f"{'valid R@20':>12}")
    for model in dict.fromkeys(r["model"] for r in rows):
        runs = [r for r in rows if r["model"] == model]
        cells = [f"{np.mean([r['test'][c] for r in runs]):.4f}±{np.std([r['test'][c] for r in runs]):.4f}" for c in COLUMNS]
        valid = np.mean([r["valid"]["recall@20"] for r in runs])
        print(f"{model:<10}{len(runs):>6}" + "".join(f"{c:>17}" for c in cells) + f"{valid:>12.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-scientific-mm")
    parser.add_argument("--split", default="random", choices=["random", "temporal"])
    parser.add_argument("--models", nargs="+", default=BASELINES + ZOO)
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--jsonl", default=None, help="append every run's results here (one JSON per line)")
    parser.add_argument(
        "--summarise", nargs="+", default=None, metavar="JSONL", help="only print the mean +- std table of these files"
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for every run (e.g. train.batch_size=1024)")
    args = parser.parse_args()
    if args.summarise:
        summarise([json.loads(line) for path in args.summarise for line in Path(path).read_text().splitlines() if line.strip()])
        return
    logging.getLogger("modalrec").setLevel(logging.WARNING)
    print(
        f"dataset {args.dataset}, split {args.split} 8:1:1 (split seed 0), select valid recall@20, "
        f"epochs <= {args.epochs}, patience {args.patience}, seeds {args.seeds}, overrides {args.overrides or 'none'}"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()} (shared machine)"
    )
    print(
        f"{'model':<10}{'seed':>5}"
        + "".join(f"{c:>14}" for c in COLUMNS)
        + f"{'valid R@20':>12}{'best ep':>9}{'epochs':>8}{'s/run':>8}"
    )
    rows = []
    with tempfile.TemporaryDirectory() as run_dir:
        for seed in args.seeds:  # every model once per seed, so a cut-short run still covers all models
            for model in args.models:
                r = run(model, args.dataset, args.split, seed, args.epochs, args.patience, run_dir, args.overrides)
                row = {
                    "model": model,
                    "seed": seed,
                    "test": r["test"],
                    "valid": r["valid"],
                    "best_epoch": r["best_epoch"],
                    "epochs_run": r["epochs_run"],
                    "wall_s": r["wall_s"],
                }
                rows.append(row)
                if args.jsonl:
                    with open(args.jsonl, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                print(
                    f"{model:<10}{seed:>5}"
                    + "".join(f"{r['test'][c]:>14.4f}" for c in COLUMNS)
                    + f"{r['valid']['recall@20']:>12.4f}{r['best_epoch']:>9}{r['epochs_run']:>8}{r['wall_s']:>8.0f}",
                    flush=True,
                )
    print()
    summarise(rows)


if __name__ == "__main__":
    main()
