"""HDRM's stage 2 at D = 64 (ModalRec's default) and at the release's D = 512, faithful and denoise modes,
side by side in one process on ML-1M clean: seconds per training step (batch 20,000, bf16 autocast as the
suites train) and per evaluation pass over all users (50 reverse steps + Lorentz scoring). The stage-1
embeddings are an untrained HGCF's (timing only: the cost does not depend on their values).

    python benchmarks/hdrm_width.py [--steps N] [--threads T]
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import VALID
from modalrec.data.registry import load_dataset
from modalrec.data.views import make_train_batches
from modalrec.eval.ranking import Evaluator
from modalrec.models.general.hdrm import HDRM
from modalrec.models.general.hgcf import HGCF


def step_seconds(model: HDRM, ctx: DataContext, steps: int) -> float:
    """Mean seconds of ``steps`` optimiser steps (after one warm-up step), bf16 autocast."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    batches = iter(make_train_batches("triples", ctx, 20_000, seed=0))
    times = []
    for _ in range(steps + 1):
        batch = next(batches)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per (width, mode)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    ctx = DataContext.from_dataset(load_dataset("ml-1m-diffrec-clean"))
    print(f"ML-1M clean: {ctx.n_users} users x {ctx.n_items} items, {ctx.train.nnz} train pairs; torch threads={args.threads}")
    evaluator = Evaluator(ctx, ks=(20,), metrics=("recall",), beyond=(), user_chunk=512)
    rows = {}
    for dim in (64, 512):
        encoder = HGCF(HGCF.Config(dim=dim), ctx).eval()
        for mode in ("faithful", "denoise"):
            model = HDRM(HDRM.Config(dim=dim, mode=mode), ctx)
            model.load_stage1(encoder, ctx, ctx, "benchmark")
            step = step_seconds(model, ctx, args.steps)
            model.eval()
            start = time.perf_counter()
            evaluator.evaluate(model, VALID)
            rows[dim, mode] = (step, time.perf_counter() - start, sum(p.numel() for p in model.parameters()))
            print(
                f"D={dim:>3} {mode:<8}: {rows[dim, mode][2] / 1e6:.2f} M denoiser parameters, {step:.2f} s/step "
                f"(epoch of 21 steps ~ {21 * step:.0f} s), evaluation pass {rows[dim, mode][1]:.1f} s",
                flush=True,
            )
    for mode in ("faithful", "denoise"):
        print(
            f"{mode}: D=512 / D=64 = {rows[512, mode][0] / rows[64, mode][0]:.2f}x per step, {rows[512, mode][1] / rows[64, mode][1]:.2f}x per evaluation pass"
        )


if __name__ == "__main__":
    main()
