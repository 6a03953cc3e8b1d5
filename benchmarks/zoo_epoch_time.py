"""Training-epoch and validation time of every zoo model (and the ID-only LightGCN / BPR) on one
dataset, on this machine, through the code path of ``modalrec train`` (data, views, Trainer,
Evaluator), side by side in one process.

An epoch is timed over its first ``--steps`` minibatches and scaled to the epoch's number of steps
(every step of these models costs the same: full-graph propagation + a batch loss), printed with
the measured steps so the extrapolation is visible. Model construction (graph building) and one
full-ranking validation pass are timed in full.

    python benchmarks/zoo_epoch_time.py --dataset ml-1m-mm --steps 10 [--batch-size 8192]
"""

from __future__ import annotations

import argparse
import itertools
import logging
import platform
import time

import torch

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.dataset import VALID
from modalrec.data.views import make_train_batches
from modalrec.eval.ranking import Evaluator
from modalrec.train.checkpoint import seed_everything
from modalrec.train.experiment import build_model, prepare_data
from modalrec.train.trainer import view_settings

MODELS = [
    "bpr",
    "lightgcn",
    "vbpr",
    "mmgcn",
    "grcn",
    "dualgnn",
    "lattice",
    "freedom",
    "bm3",
    "slmrec",
    "mgcn",
    "lgmrec",
    "micro",
    "dmrl",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m-mm")
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--steps", type=int, default=10, help="minibatches timed per model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=None, help="train.batch_size (default: the config's)")
    args = parser.parse_args()
    logging.getLogger("modalrec").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    base = [
        f"dataset={args.dataset}",
        "dataset.split.method=random",
        "train.progress=false",
        "eval.ks=[10,20,50]",
        "train.select=recall@20",
        *([f"train.batch_size={args.batch_size}"] if args.batch_size else []),
    ]
    cfg = resolve(["model=lightgcn", *base])
    ds, _ = prepare_data(cfg, "general")
    ctx = DataContext.from_dataset(ds)
    evaluator = Evaluator(ctx, ks=(10, 20, 50), metrics=("recall", "ndcg"))
    print(
        f"{args.dataset}: {ctx.n_users:,} users, {ctx.n_items:,} items, {ctx.train.nnz:,} train pairs, "
        f"features {', '.join(f'{k} {v.shape[1]}-d' for k, v in ctx.features.items())}; random 8:1:1"
    )
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.machine()}, machine shared with other jobs")
    print(
        f"{'model':<10}{'build s':>9}{'batch':>7}{'steps/epoch':>13}{'timed':>7}{'s/step':>9}{'epoch s':>10}{'valid s':>9}{'params':>11}"
    )
    for name in args.models:
        cfg = resolve([f"model={name}", *base])
        seed_everything(cfg.train.seed)
        start = time.perf_counter()
        model = build_model(cfg, ctx, torch.device("cpu"))
        built = time.perf_counter() - start
        batch_size = cfg.train.batch_size
        batches = make_train_batches(model.train_view, ctx, batch_size, seed=0, **view_settings(model, cfg))
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
        model.train()
        model.before_epoch(0)
        start = time.perf_counter()
        steps = 0
        for batch in itertools.islice(batches, args.steps):
            out = model.loss(batch)
            optimizer.zero_grad()
            out["loss"].backward()
            optimizer.step()
            steps += 1
        per_step = (time.perf_counter() - start) / steps
        start = time.perf_counter()
        evaluator.evaluate(model, VALID)
        valid = time.perf_counter() - start
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name:<10}{built:>9.1f}{batch_size:>7}{len(batches):>13}{steps:>7}{per_step:>9.3f}{per_step * len(batches):>10.1f}{valid:>9.1f}{params:>11,}",
            flush=True,
        )


if __name__ == "__main__":
    main()
