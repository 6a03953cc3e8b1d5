"""Training throughput of 1 vs 2 processes (DDP, gloo on CPU / NCCL on CUDA) for SASRec and LightGCN.

Each configuration runs the trainer's own epoch loop (``Trainer.train_epoch``: sharded batches, DDP
gradient all-reduce, the same global batch) under torchrun, and reports the examples per second of
its fastest epoch. Configurations, side by side in one table:

- 1 process x 1 thread, 1 process x T threads (the honest single-process alternative on T cores),
- N processes x 1 thread (DDP), with the speed-up over both and the scaling efficiency
  (speed-up over 1 x 1 divided by N).

    python benchmarks/ddp_throughput.py --dataset ml-1m --models sasrec lightgcn --nproc 2 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

RESULT = "DDP-BENCH-RESULT "


def worker(args: argparse.Namespace) -> None:
    """One rank: prepare data and model as ``modalrec train`` does, time ``args.epochs`` epochs."""
    import torch

    from modalrec.config import resolve
    from modalrec.data.context import DataContext
    from modalrec.devices import resolve_device
    from modalrec.models.base import get_model_class
    from modalrec.train import distributed
    from modalrec.train.checkpoint import seed_everything
    from modalrec.train.experiment import build_model, prepare_data, run_identity
    from modalrec.train.rundir import RunDir
    from modalrec.train.trainer import Trainer

    cfg = resolve(
        [f"model={args.model}", f"dataset={args.dataset}", "train.progress=false", f"train.device={args.device}", *args.overrides]
    )
    dist = distributed.env_dist()
    device = distributed.setup(dist, resolve_device(cfg.train.device, "train.device"))
    seed_everything(cfg.train.seed)
    with distributed.local_main_first(dist):
        ds, _ = prepare_data(cfg, get_model_class(cfg.model_name).family)
    ctx = DataContext.from_dataset(ds)
    model = build_model(cfg, ctx, device)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, ctx, cfg, RunDir(Path(tmp)).create(), run_identity(cfg, ds), device, dist=dist)
        records = [trainer.train_epoch(epoch) for epoch in range(args.epochs)]
    if device.type == "cuda":
        torch.cuda.synchronize()
    best = min(records, key=lambda r: r["seconds"])
    if dist.is_main:
        print(
            RESULT
            + json.dumps(
                {
                    "epoch_s": best["seconds"],
                    "examples_per_s": best["examples_per_s"],
                    "steps": best["steps"],
                    "batch_size": cfg.train.batch_size,
                    "loss": records[-1]["loss"],
                }
            ),
            flush=True,
        )
    distributed.teardown(dist)


def run_config(args: argparse.Namespace, model: str, nproc: int, threads: int) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        __file__,
        "--worker",
        "--model",
        model,
        "--dataset",
        args.dataset,
        "--epochs",
        str(args.epochs),
        "--device",
        args.device,
        *args.overrides,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"{model} with {nproc} processes failed:\n{done.stderr[-4000:]}")
    return json.loads(lines[-1][len(RESULT) :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--models", nargs="+", default=["sasrec", "lightgcn"])
    parser.add_argument(
        "--nproc", type=int, default=2, help="processes of the DDP configuration (and threads of the 1-process one)"
    )
    parser.add_argument("--epochs", type=int, default=2, help="epochs per configuration; the fastest is reported")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (then N processes use N GPUs)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides applied to every model (e.g. train.batch_size=4096)")
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    n = args.nproc
    print(
        f"# torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
        f"device {args.device}, dataset {args.dataset}, best of {args.epochs} epochs, overrides {args.overrides or 'none'}"
    )
    header = f"{'model':<10} {'config':<16} {'batch':>6} {'steps':>6} {'epoch s':>8} {'ex/s':>10} {'vs 1x1':>7} {f'vs 1x{n}':>7} {'eff.':>6}"
    print(header)
    print("-" * len(header))
    for model in args.models:
        one = run_config(args, model, 1, 1)
        threaded = run_config(args, model, 1, n)
        ddp = run_config(args, model, n, 1)
        for label, row in (("1 proc x 1 thr", one), (f"1 proc x {n} thr", threaded), (f"{n} proc x 1 thr", ddp)):
            speedup = row["examples_per_s"] / one["examples_per_s"]
            vs_threads = row["examples_per_s"] / threaded["examples_per_s"]
            procs = n if row is ddp else 1
            print(
                f"{model:<10} {label:<16} {row['batch_size']:>6} {row['steps']:>6} {row['epoch_s']:>8.2f} "
                f"{row['examples_per_s']:>10,.0f} {speedup:>6.2f}x {vs_threads:>6.2f}x {speedup / procs:>6.2f}"
            )


if __name__ == "__main__":
    main()
