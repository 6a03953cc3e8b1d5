"""HDRM on ML-1M clean: batched evaluation vs a per-user loop written like the official code, and
stage-1 / stage-2 epoch times.

The per-user loop follows the official ``rounding_inner``: for each user, repeat the user's point over
all items, compute -d^2 row-wise in float64, mask seen items, sort. Both paths score the same final
user vectors (one denoising pass), so the lists must agree up to exact float ties.

    python benchmarks/hdrm_eval.py [--users N] [--threads T]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from modalrec.config import TrainConfig
from modalrec.data.context import DataContext
from modalrec.data.dataset import VALID
from modalrec.data.registry import load_dataset
from modalrec.data.views import make_train_batches
from modalrec.eval.ranking import Evaluator
from modalrec.models.general.hdrm import HDRM
from modalrec.models.general.hgcf import HGCF


def epoch_seconds(model: torch.nn.Module, ctx: DataContext, batch_size: int, optimizer: torch.optim.Optimizer) -> tuple[float, int]:
    model.train()
    start, steps = time.perf_counter(), 0
    for batch in make_train_batches("triples", ctx, batch_size, seed=0):
        loss = model.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2000, help="users in the per-user loop (it is slow)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    ctx = DataContext.from_dataset(load_dataset("ml-1m-diffrec-clean"))
    print(f"ML-1M clean: {ctx.n_users} users x {ctx.n_items} items, {ctx.train.nnz} train pairs; torch threads={args.threads} (shared 2-core machine)")

    encoder = HGCF(HGCF.Config(), ctx)
    s1, steps1 = epoch_seconds(encoder, ctx, 10_000, encoder.configure_optimizer(TrainConfig(lr=1e-3, weight_decay=1e-3)))
    print(f"stage-1 (HGCF, D=64, 3 layers) epoch: {s1:.1f} s ({steps1} steps of 10,000 triples)")
    encoder.eval()
    model = HDRM(HDRM.Config(), ctx)
    model.load_stage1(encoder, ctx, ctx, "benchmark")
    s2, steps2 = epoch_seconds(model, ctx, 20_000, torch.optim.Adam(model.parameters(), lr=1e-3))
    print(f"stage-2 (two denoisers [200, 1100], T=50) epoch: {s2:.1f} s ({steps2} steps of 20,000 triples)")
    model.eval()

    evaluator = Evaluator(ctx, ks=(10, 20, 50, 100), metrics=("recall", "ndcg", "precision", "mrr"), beyond=(), user_chunk=512)
    start = time.perf_counter()
    result = evaluator.evaluate(model, VALID)
    batched = time.perf_counter() - start
    print(f"batched evaluation pass (denoising + one Lorentz GEMM per 512 users, all {len(result.users)} users): {batched:.2f} s")

    users = result.users[: args.users]
    with torch.no_grad():
        model.prepare_scoring()
        start = time.perf_counter()
        finals = [model.manifold.expmap0(model.denoise_users(torch.as_tensor(users[i : i + 512])).double()) for i in range(0, len(users), 512)]
        denoise = time.perf_counter() - start
        final = torch.cat(finals)
        items = model._items
        seen = ctx.seen(VALID)
        start = time.perf_counter()
        loop_top = np.empty((len(users), 100), dtype=np.int64)
        for row, user in enumerate(users.tolist()):  # the official per-user loop
            point = final[row].unsqueeze(0).repeat(ctx.n_items, 1)
            scores = (-model.manifold.sqdist(point, items)).numpy()
            scores[seen.indices[seen.indptr[user] : seen.indptr[user + 1]]] = -1024.0
            loop_top[row] = np.argsort(-scores, kind="stable")[:100]
        loop = time.perf_counter() - start + denoise
    agree20 = float((loop_top[:, :20] == result.topk[: len(users), :20]).mean())
    sets20 = float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(loop_top[:, :20], result.topk[: len(users), :20])]))
    per_user_batched = batched / len(result.users)
    per_user_loop = loop / len(users)
    print(f"per-user loop on {len(users)} users: {loop:.2f} s ({1e3 * per_user_loop:.2f} ms/user)")
    print(f"top-20 agreement: {100 * agree20:.2f} % of positions, {100 * sets20:.2f} % of set members")
    print(f"speed-up per user (loop / batched): {per_user_loop / per_user_batched:.1f}x")
    print(f"speed-up of the scoring alone (loop excluding the shared denoising): {(loop - denoise) / len(users) / max(per_user_batched - denoise / len(users), 1e-9):.1f}x")


if __name__ == "__main__":
    main()
