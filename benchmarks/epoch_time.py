"""Training-epoch and validation time of the baselines on a real dataset, on this machine.

Uses the same code path as ``modalrec train`` (data preparation, views, Trainer.train_epoch,
Evaluator), and prints one row per model: epoch seconds, examples per second, validation seconds.

    python benchmarks/epoch_time.py --dataset ml-1m --models sasrec lightgcn bpr gru4rec --epochs 2
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import torch

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.dataset import VALID
from modalrec.models.base import get_model_class
from modalrec.train.checkpoint import seed_everything
from modalrec.train.experiment import build_model, prepare_data, run_identity
from modalrec.train.rundir import RunDir
from modalrec.train.trainer import Trainer


def measure(model_name: str, dataset: str, epochs: int, overrides: list[str]) -> dict[str, float]:
    cfg = resolve([f"model={model_name}", f"dataset={dataset}", "train.progress=false", *overrides])
    seed_everything(cfg.train.seed)
    ds, split_cfg = prepare_data(cfg, get_model_class(cfg.model_name).family)
    ctx = DataContext.from_dataset(ds)
    model = build_model(cfg, ctx, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, ctx, cfg, RunDir(Path(tmp)).create(), run_identity(cfg, ds), torch.device("cpu"))
        records = [trainer.train_epoch(epoch) for epoch in range(epochs)]
        start = time.perf_counter()
        result = trainer.evaluator.evaluate(model, VALID)
        valid_seconds = time.perf_counter() - start
    best = min(records, key=lambda r: r["seconds"])
    return {
        "split": split_cfg.method,
        "steps": best["steps"],
        "batch_size": cfg.train.batch_size,
        "epoch_s": best["seconds"],
        "examples_per_s": best["examples_per_s"],
        "valid_s": valid_seconds,
        f"valid_{cfg.train.select}": result.summary[cfg.train.select],
        "params": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--models", nargs="+", default=["sasrec", "gru4rec", "lightgcn", "bpr"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per model (the fastest is reported)")
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every model")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"dataset {args.dataset}; fastest of {args.epochs} epochs; default hyper-parameters of each model")
    header = f"{'model':<10} {'split':<9} {'steps':>6} {'batch':>6} {'epoch s':>9} {'examples/s':>11} {'valid s':>8} {'params':>10}  valid metric"
    print(header)
    for name in args.models:
        row = measure(name, args.dataset, args.epochs, args.overrides)
        metric = next(k for k in row if k.startswith("valid_") and k != "valid_s")
        print(
            f"{name:<10} {row['split']:<9} {row['steps']:>6} {row['batch_size']:>6} {row['epoch_s']:>9.2f} "
            f"{row['examples_per_s']:>11,.0f} {row['valid_s']:>8.2f} {row['params']:>10,}  {metric[6:]}={row[metric]:.4f}"
        )


if __name__ == "__main__":
    main()
