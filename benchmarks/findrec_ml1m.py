"""FindRec and its baselines on ML-1M with title/genre text and poster image features ("ml-1m-mm").

Run: python benchmarks/findrec_ml1m.py --epochs E [--dim D] [--only name,...]
Leave-one-out, max length 50, full ranking, selection on validation NDCG@20, test at the selected
epoch. Every model trains with the all-positions causal objective (``train.seq_target=all``), the
only one that fits a shared CPU (one pass per user sequence); FindRec faithful needs the
last-position objective with prefix augmentation (~1M samples per epoch on ML-1M) and is not run
here. Prints one table; each run's directory holds its config and metrics.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def runs(dim: int) -> dict[str, list[str]]:
    d = f"model.dim={dim}"
    return {
        "gru4rec": ["model=gru4rec", d],
        "sasrec": ["model=sasrec", d],
        "sasrec_features": ["model=sasrec_features", d],
        "mamba4rec": ["model=mamba4rec", d],
        "findrec-clean": ["model=findrec", "model.mode=clean", d, f"model.modal_dim={2 * dim}", "model.heads=4"],
        "findrec-clean-no-stein": ["model=findrec", "model.mode=clean", d, f"model.modal_dim={2 * dim}", "model.heads=4", "model.stein_weight=0"],
        "findrec-clean-no-iicm": ["model=findrec", "model.mode=clean", d, f"model.modal_dim={2 * dim}", "model.heads=4", "model.loss_weight=0"],
        "findrec-clean-1-expert": ["model=findrec", "model.mode=clean", d, f"model.modal_dim={2 * dim}", "model.heads=4", "model.experts=1"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--only", default="", help="comma-separated run names")
    parser.add_argument("--out", default="runs/findrec-ml1m")
    args = parser.parse_args()
    common = [
        "dataset=ml-1m-mm", "model.max_len=50", "train.seq_target=all", f"train.epochs={args.epochs}",
        "train.select=ndcg@20", "train.batch_size=128", "train.progress=false", "train.threads=1",
        "eval.metrics=hit,ndcg,mrr", f"run.dir={args.out}",
    ]
    chosen = runs(args.dim)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    rows = []
    for name, overrides in chosen.items():
        command = ["modalrec", "train", *overrides, *common, f"run.name={name}"]
        print("$", " ".join(command), flush=True)
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        result = json.loads((Path(args.out) / name / "results.json").read_text())
        rows.append((name, result))
    keys = ["hit@10", "ndcg@10", "mrr@10", "hit@20", "ndcg@20", "mrr@20"]
    print(f"\n{'model':26s} " + " ".join(f"{k:>8s}" for k in keys) + "  best/run  train_s")
    for name, r in rows:
        print(f"{name:26s} " + " ".join(f"{r['test'][k]:8.4f}" for k in keys) + f"  {r['best_epoch']}/{r['epochs_run']}  {r['train_seconds']:7.0f}")


if __name__ == "__main__":
    sys.exit(main())
