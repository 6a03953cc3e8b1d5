"""Training-epoch and validation time of the baselines on a real dataset, on this machine.

Uses the same code path as ``modalrec train`` (data preparation, views, Trainer.train_epoch,
Evaluator), and prints one row per model: epoch seconds, examples per second, validation seconds.

    python benchmarks/epoch_time.py --dataset ml-1m --models sasrec lightgcn bpr gru4rec --epochs 2

Side by side, one model in several variants (same process, same data, each timed the same way); a variant is
``label:override,override`` plus two code-path switches the config does not have:
``code.attention=masked`` (SASRec's causal attention through an explicit [B, 1, L, L] boolean mask instead of
SDPA's fused ``is_causal`` kernel) and ``code.compile=true`` (the loss step under ``torch.compile``; its first,
compiling epoch is reported separately):

    python benchmarks/epoch_time.py --dataset ml-1m --models sasrec --epochs 2 \
        --variant masked:code.attention=masked --variant fused: --variant compiled:code.compile=true \
        model.max_len=200 train.batch_size=128 train.epoch_samples=1024
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.dataset import VALID
from modalrec.models.base import get_model_class
from modalrec.nn.transformer import CausalTransformer, causal_attention_mask
from modalrec.train.checkpoint import seed_everything
from modalrec.train.experiment import build_model, prepare_data, run_identity
from modalrec.train.rundir import RunDir
from modalrec.train.trainer import Trainer

CODE_SWITCHES = ("code.attention", "code.compile")


@contextlib.contextmanager
def code_path(switches: dict[str, str]) -> Iterator[None]:
    """Swap SASRec's fused causal attention for the explicit boolean mask while ``code.attention=masked``."""
    if switches.get("code.attention", "fused") == "masked":
        original = CausalTransformer.__dict__["attention_mask"]
        CausalTransformer.attention_mask = staticmethod(causal_attention_mask)
        try:
            yield
        finally:
            CausalTransformer.attention_mask = original
    else:
        yield


def measure(
    model_name: str,
    dataset: str,
    epochs: int,
    overrides: list[str],
    switches: dict[str, str] | None = None,
    validate: bool = True,
) -> dict[str, float]:
    switches = switches or {}
    cfg = resolve([f"model={model_name}", f"dataset={dataset}", "train.progress=false", *overrides])
    seed_everything(cfg.train.seed)
    ds, split_cfg = prepare_data(cfg, get_model_class(cfg.model_name).family)
    ctx = DataContext.from_dataset(ds)
    model = build_model(cfg, ctx, torch.device("cpu"))
    compiled = switches.get("code.compile", "false").lower() == "true"
    with tempfile.TemporaryDirectory() as tmp, code_path(switches):
        trainer = Trainer(model, ctx, cfg, RunDir(Path(tmp)).create(), run_identity(cfg, ds), torch.device("cpu"))
        first_s = None
        if compiled:
            trainer._step = torch.compile(trainer.step_module)
            first_s = trainer.train_epoch(0)["seconds"]  # compiles
        records = [trainer.train_epoch(epoch) for epoch in range(epochs)]
        start = time.perf_counter()
        summary = trainer.evaluator.evaluate(model, VALID).summary if validate else {cfg.train.select: float("nan")}
        valid_seconds = time.perf_counter() - start
    best = min(records, key=lambda r: r["seconds"])
    return {
        "split": split_cfg.method,
        "steps": best["steps"],
        "batch_size": cfg.train.batch_size,
        "epoch_s": best["seconds"],
        "examples_per_s": best["examples_per_s"],
        "valid_s": valid_seconds,
        f"valid_{cfg.train.select}": summary[cfg.train.select],
        "params": sum(p.numel() for p in model.parameters()),
        "compile_epoch_s": first_s,
        "loss": best["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--models", nargs="+", default=["sasrec", "gru4rec", "lightgcn", "bpr"])
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per model (the fastest is reported)")
    parser.add_argument("--variant", action="append", default=[], help="label:override,override (see the docstring); repeatable")
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every model")
    args = parser.parse_args()
    if args.variant:
        compare_variants(args)
        return
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


def compare_variants(args: argparse.Namespace) -> None:
    """Every model in every variant, one after the other in this process; ratios against the first variant
    (training epochs only: a few steps do not make a validation score worth its time)."""
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"dataset {args.dataset}; fastest of {args.epochs} epochs; common overrides: {' '.join(args.overrides) or 'none'}")
    print(
        f"{'model':<10} {'variant':<16} {'steps':>6} {'epoch s':>9} {'examples/s':>11} {'vs first':>9} {'loss':>8} {'compile s':>10}"
    )
    for name in args.models:
        baseline = None
        for spec in args.variant:
            label, _, text = spec.partition(":")
            pairs = [item for item in text.split(",") if item]
            switches = dict(item.split("=", 1) for item in pairs if item.split("=", 1)[0] in CODE_SWITCHES)
            overrides = [*args.overrides, *(item for item in pairs if item.split("=", 1)[0] not in CODE_SWITCHES)]
            row = measure(name, args.dataset, args.epochs, overrides, switches, validate=False)
            baseline = baseline or row["epoch_s"]
            compile_s = "-" if row["compile_epoch_s"] is None else f"{row['compile_epoch_s']:.1f}"
            print(
                f"{name:<10} {label:<16} {row['steps']:>6} {row['epoch_s']:>9.2f} {row['examples_per_s']:>11,.0f} "
                f"{baseline / row['epoch_s']:>8.2f}x {row['loss']:>8.4f} {compile_s:>10}",
                flush=True,
            )


if __name__ == "__main__":
    main()
