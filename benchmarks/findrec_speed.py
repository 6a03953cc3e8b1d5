"""FindRec speed on CPU: the Mamba mixer against mambapy, FindRec's scaling in L, FindRec vs SASRec.

Run: python benchmarks/findrec_speed.py [--threads N] [--repeats R]
Everything is measured side by side in one process (best of R repeats, forward + backward).
Needs the ``bench`` extra (mambapy 1.2.0) for the first section; it is skipped without it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from modalrec.data.context import DataContext
from modalrec.data.split import SplitConfig, split
from modalrec.data.synthetic import make_synthetic
from modalrec.models.sequential.findrec import FindRec
from modalrec.models.sequential.sasrec import SASRec
from modalrec.nn.mamba import MambaMixer


def best_time(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()
    return step


def mixer_vs_mambapy(repeats: int) -> None:
    print("== Mamba mixer forward+backward, batch 64, length 50, d_model 64 (d_state 16, expand 2)")
    torch.manual_seed(0)
    x = torch.randn(64, 50, 64, requires_grad=True)
    ours = {b: MambaMixer(64, backend=b) for b in ("fused", "ref", "chunked")}
    for mixer in ours.values():
        mixer.load_state_dict(ours["fused"].state_dict())
    timings = {f"modalrec {b}": best_time(fwd_bwd(m, x), repeats) for b, m in ours.items()}
    try:
        from mambapy.mamba import MambaBlock, MambaConfig
    except ImportError:
        print("mambapy not installed (pip install 'modalrec[bench]'): comparison skipped")
    else:
        for pscan in (True, False):
            block = MambaBlock(MambaConfig(d_model=64, n_layers=1, d_state=16, expand_factor=2, d_conv=4, pscan=pscan))
            block.load_state_dict(ours["fused"].state_dict())  # same parameter names and shapes
            diff = (block(x) - ours["fused"](x)).abs().max().item()
            timings[f"mambapy {'pscan' if pscan else 'sequential'}"] = best_time(fwd_bwd(block, x), repeats)
            print(f"  mambapy (pscan={pscan}) vs modalrec output max |diff| = {diff:.2e}")
    base = timings["modalrec fused"]
    for name, seconds in timings.items():
        print(f"  {name:26s} {seconds * 1e3:9.1f} ms   {seconds / base:5.2f}x fused")


def context(n_items: int, dim: int) -> DataContext:
    ds = make_synthetic(n_users=50, n_items=n_items, n_clusters=10, feature_dims={"text": dim, "image": dim}, seed=0)
    return DataContext.from_dataset(split(ds, SplitConfig(method="loo")))


def train_batch(n_items: int, batch: int, length: int, all_positions: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {"seq": torch.randint(0, n_items, (batch, length), generator=g), "lengths": torch.full((batch,), length)}
    if all_positions:
        out["targets"] = torch.randint(0, n_items, (batch, length), generator=g)
    else:
        out["target"] = torch.randint(0, n_items, (batch,), generator=g)
    return out


def loss_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(batch)["loss"].backward()
    return step


def findrec_scaling(repeats: int, batch: int) -> None:
    print(f"== FindRec training step (faithful, d 128, p 256, 8 heads, 1024-d features), batch {batch}")
    print("   and the share of the ID Mamba stream and of the cross-modal attention (each forward+backward alone)")
    n_items = 1000
    ctx = context(n_items, 1024)
    base = None
    for length in (50, 100, 200, 400):
        torch.manual_seed(0)
        model = FindRec(FindRec.Config(max_len=length), ctx)
        b = train_batch(n_items, batch, length, all_positions=False)
        total = best_time(loss_step(model, b), repeats)
        ids = model.item_embedding(b["seq"]).detach().requires_grad_()
        mamba = best_time(fwd_bwd(model.id_stream, ids), repeats)
        latents = [torch.randn(batch, length, 256, requires_grad=True) for _ in range(2)]
        valid = torch.ones(batch, length, dtype=torch.bool)

        def xattn() -> None:
            model.zero_grad(set_to_none=True)
            model.cross_attention(latents, valid).sum().backward()
        attention = best_time(xattn, repeats)
        base = base or total
        print(
            f"  L={length:4d}  step {total * 1e3:8.1f} ms  time(L)/time(50) {total / base:5.2f}  "
            f"ID Mamba {mamba * 1e3:7.1f} ms ({mamba / total:4.0%})  cross-attention {attention * 1e3:7.1f} ms ({attention / total:4.0%})"
        )


def findrec_vs_sasrec(repeats: int, batches: list[int]) -> None:
    n_items = 3000
    ctx = context(n_items, 1024)
    for batch in batches:
        print(f"== FindRec vs SASRec training step at equal d 128, L 50, batch {batch} (last-position targets unless marked)")
        torch.manual_seed(0)
        sasrec, clean = SASRec(SASRec.Config(dim=128, heads=2), ctx), FindRec(FindRec.Config(mode="clean"), ctx)
        models = {
            "sasrec (2 blocks, 2 heads)": (sasrec, False),
            "findrec faithful": (FindRec(FindRec.Config(), ctx), False),
            "findrec clean": (clean, False),
            "sasrec, all positions": (sasrec, True),
            "findrec clean, all positions": (clean, True),
        }
        times = {name: best_time(loss_step(m, train_batch(n_items, batch, 50, all_pos)), repeats) for name, (m, all_pos) in models.items()}
        base = times["sasrec (2 blocks, 2 heads)"]
        for name, seconds in times.items():
            print(f"  {name:28s} {seconds * 1e3:9.1f} ms   {seconds / base:6.2f}x sasrec")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="batch of the FindRec scaling section")
    parser.add_argument("--vs-batches", default="8,128", help="batches of the FindRec vs SASRec section (128 = the released training batch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of {args.repeats}")
    mixer_vs_mambapy(args.repeats)
    findrec_scaling(args.repeats, args.batch)
    findrec_vs_sasrec(args.repeats, [int(b) for b in args.vs_batches.split(",")])


if __name__ == "__main__":
    main()
