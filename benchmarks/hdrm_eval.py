"""HDRM on ML-1M clean: the evaluation pass, batched vs written like the official code, and the stage-1 /
stage-2 step costs.

Official evaluation (spec hdrm.md 4.8, 8.4), per test batch of 512 users: re-propagate the frozen encoder,
average each user's history items in a Python loop, noise to T-1 and run the S reverse steps (batched),
then ``rounding_inner``: for each user, repeat the user's point over all items, -d^2 row-wise in float64,
mask seen items, sort. ModalRec: cached stage-1 embeddings, history means as one sparse product, the
same batched reverse steps, then one float32 Lorentz GEMM (the Minkowski product, same order as -d^2)
per chunk with a running top-K. Both paths use the same denoiser and noise, so the top-K must agree.

    python benchmarks/hdrm_eval.py [--loop-users N] [--threads T] [--stage2-steps S]
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


def train_steps(
    model: torch.nn.Module,
    ctx: DataContext,
    batch_size: int,
    optimizer: torch.optim.Optimizer,
    steps: int | None,
    amp: bool = False,
) -> tuple[float, int, int]:
    """(seconds, steps, steps per epoch) of ``steps`` optimiser steps (None: one whole epoch)."""
    model.train()
    batches = make_train_batches("triples", ctx, batch_size, seed=0)
    start, done = time.perf_counter(), 0
    for batch in batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss = model.loss(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        done += 1
        if steps is not None and done == steps:
            break
    return time.perf_counter() - start, done, len(batches)


@torch.no_grad()
def official_pass(
    model: HDRM, encoder: HGCF, ctx: DataContext, users: np.ndarray, chunk: int = 512
) -> tuple[np.ndarray, float, float]:
    """Top-100 of ``users`` the official way; returns (top-100, total seconds, seconds of the per-user rounding)."""
    seen = ctx.seen(VALID)
    train = ctx.train.tocsr()
    top = np.empty((len(users), 100), dtype=np.int64)
    rounding = 0.0
    start = time.perf_counter()
    for lo in range(0, len(users), chunk):
        batch = users[lo : lo + chunk]
        _, z_items = encoder.tangent_embeddings()  # re-propagated for every test batch
        model._history[batch] = torch.stack(
            [z_items[train.indices[train.indptr[u] : train.indptr[u + 1]]].mean(0) for u in batch.tolist()]
        )
        final = model.manifold.expmap0(model.denoise_users(torch.as_tensor(batch)).double())
        items = model.manifold.expmap0(z_items.double())
        tick = time.perf_counter()
        for row, user in enumerate(batch.tolist()):
            point = final[row].unsqueeze(0).repeat(ctx.n_items, 1)
            scores = (-model.manifold.sqdist(point, items)).numpy()
            scores[seen.indices[seen.indptr[user] : seen.indptr[user + 1]]] = -1024.0
            top[lo + row] = np.argsort(-scores, kind="stable")[:100]
        rounding += time.perf_counter() - tick
    return top, time.perf_counter() - start, rounding


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop-users", type=int, default=1024, help="users of the official-style pass (it is slow)")
    parser.add_argument("--stage2-steps", type=int, default=4, help="stage-2 steps timed per precision")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    ctx = DataContext.from_dataset(load_dataset("ml-1m-diffrec-clean"))
    print(
        f"ML-1M clean: {ctx.n_users} users x {ctx.n_items} items, {ctx.train.nnz} train pairs; torch threads={args.threads} (shared 2-core machine)"
    )

    encoder = HGCF(HGCF.Config(), ctx)
    s1, steps1, _ = train_steps(encoder, ctx, 10_000, encoder.configure_optimizer(TrainConfig(lr=1e-3, weight_decay=1e-3)), None)
    print(
        f"stage 1 (HGCF, D=64, 3 layers): one epoch {s1:.1f} s ({steps1} steps of 10,000 triples, {1e3 * s1 / steps1:.0f} ms/step)"
    )
    encoder.eval()
    model = HDRM(HDRM.Config(), ctx)
    model.load_stage1(encoder, ctx, ctx, "benchmark")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    per_step = {}
    for amp in (False, True):
        train_steps(model, ctx, 20_000, optimizer, 1, amp)  # warm-up
        seconds, steps, epoch_steps = train_steps(model, ctx, 20_000, optimizer, args.stage2_steps, amp)
        per_step[amp] = seconds / steps
        print(
            f"stage 2 (two denoisers [200, 1100], T=50, {'bf16 autocast (train.amp)' if amp else 'float32'}): "
            f"{per_step[amp]:.2f} s/step, one epoch of {epoch_steps} steps of 20,000 triples ~ {per_step[amp] * epoch_steps:.0f} s"
        )
    print(f"stage-2 speed-up of train.amp: {per_step[False] / per_step[True]:.2f}x")
    model.eval()

    evaluator = Evaluator(ctx, ks=(10, 20, 50, 100), metrics=("recall", "ndcg", "precision", "mrr"), beyond=(), user_chunk=512)
    start = time.perf_counter()
    result = evaluator.evaluate(model, VALID)
    batched = time.perf_counter() - start
    with torch.no_grad():
        model.prepare_scoring()
        start = time.perf_counter()
        for lo in range(0, ctx.n_users, 512):
            model.denoise_users(torch.arange(lo, min(lo + 512, ctx.n_users)))
        denoise = time.perf_counter() - start
    n_all = len(result.users)
    print(
        f"ModalRec evaluation pass, all {n_all} users: {batched:.2f} s (of which the 50 reverse steps: {denoise:.2f} s; "
        f"scoring, masking and top-K: {batched - denoise:.2f} s)"
    )

    users = result.users[: args.loop_users]
    with torch.no_grad():
        model.prepare_scoring()
        loop_top, loop, rounding = official_pass(model, encoder, ctx, users)
    agree20 = float((loop_top[:, :20] == result.topk[: len(users), :20]).mean())
    sets20 = float(np.mean([len(set(a) & set(b)) / 20 for a, b in zip(loop_top[:, :20], result.topk[: len(users), :20])]))
    loop_all = loop / len(users) * n_all
    print(
        f"official-style pass on {len(users)} users: {loop:.2f} s (per-user rounding {rounding:.2f} s) -> {loop_all:.1f} s for all {n_all} users"
    )
    print(
        f"top-20 agreement (float64 -d^2 per user vs float32 Minkowski GEMM): {100 * agree20:.2f} % of positions, {100 * sets20:.2f} % of set members"
    )
    print(f"speed-up of the whole evaluation pass: {loop_all / batched:.1f}x")
    scoring_loop = rounding / len(users) * n_all
    print(
        f"speed-up of the scoring alone (per-user float64 rounding vs GEMM + top-K): {scoring_loop / max(batched - denoise, 1e-9):.0f}x"
    )
    print(f"the shared reverse steps bound the whole-pass speed-up at {loop_all / denoise:.1f}x")


if __name__ == "__main__":
    main()
