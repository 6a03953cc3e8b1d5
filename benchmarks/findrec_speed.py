"""FindRec speed on CPU: the Mamba mixer against mambapy; FindRec vs SASRec at equal width and their scaling in L.

Run: python benchmarks/findrec_speed.py [--threads N] [--repeats R] [--batch B] [--lengths 50,200]
Everything is measured side by side in one process (best of R repeats, forward + backward): SASRec, FindRec
faithful (released last-position objective) and FindRec mmd (all positions), with and without the levers
(cheaper dropout masks, the bottleneck encoded once per distinct item, the O(L W) windowed cross-attention,
bf16 autocast = train.amp=true).
Needs the ``bench`` extra (mambapy 1.2.0) for the first section; it is skipped without it.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable, Iterator

import torch

from modalrec.data.context import DataContext
from modalrec.data.split import SplitConfig, split
from modalrec.data.synthetic import make_synthetic
from modalrec.models.sequential.findrec import FindRec
from modalrec.models.sequential.sasrec import SASRec
from modalrec.nn.dropout import Dropout
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


@contextlib.contextmanager
def torch_dropout() -> Iterator[None]:
    """Run modalrec's Dropout as torch's (bernoulli_ masks): the 'before' of the cheaper-mask lever."""
    fast = Dropout.forward
    Dropout.forward = torch.nn.Dropout.forward
    try:
        yield
    finally:
        Dropout.forward = fast


def amp_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], amp: bool) -> Callable[[], None]:
    """One training step (forward + backward), under bf16 autocast when ``amp`` (what train.amp=true does)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            loss = model.loss(batch)["loss"]
        loss.backward()

    return step


def variants(ctx: DataContext, length: int) -> dict[str, tuple[torch.nn.Module, bool, bool, bool]]:
    """name -> (model, all-position targets, torch dropout (before), bf16 autocast)."""
    torch.manual_seed(0)
    sasrec = SASRec(SASRec.Config(dim=128, heads=2, max_len=length), ctx)
    faithful = FindRec(FindRec.Config(max_len=length), ctx)
    mmd = FindRec(FindRec.Config(mode="mmd", max_len=length), ctx)
    mmd_before = FindRec(FindRec.Config(mode="mmd", max_len=length, encode_per_item=False), ctx)
    mmd_window = FindRec(FindRec.Config(mode="mmd", max_len=length, xattn_window=50), ctx)
    return {
        "sasrec last": (sasrec, False, False, False),
        "findrec faithful last": (faithful, False, False, False),
        "findrec faithful last (torch dropout)": (faithful, False, True, False),
        "sasrec all": (sasrec, True, False, False),
        "findrec mmd all": (mmd, True, False, False),
        "findrec mmd all (before: torch dropout, per-position encoder)": (mmd_before, True, True, False),
        "findrec mmd all, xattn_window=50": (mmd_window, True, False, False),
        "sasrec all, bf16": (sasrec, True, False, True),
        "findrec mmd all, bf16": (mmd, True, False, True),
    }


def findrec_vs_sasrec(repeats: int, batch: int, lengths: list[int]) -> None:
    """Every variant at every length, side by side; ratios to SASRec at the same objective and precision, and
    time(L) / time(first L) per variant."""
    n_items = 3000
    ctx = context(n_items, 1024)
    times: dict[int, dict[str, float]] = {}
    for length in lengths:
        print(
            f"== training step (forward + backward), d 128, p 256, 8 heads, 2 x 1024-d features, {n_items} items, batch {batch}, L {length}"
        )
        times[length] = {}
        for name, (model, all_positions, old_dropout, amp) in variants(ctx, length).items():
            b = train_batch(n_items, batch, length, all_positions)
            with torch_dropout() if old_dropout else contextlib.nullcontext():
                times[length][name] = best_time(amp_step(model, b, amp), repeats)
        for name, seconds in times[length].items():
            base = "sasrec " + ("last" if "last" in name else "all, bf16" if "bf16" in name else "all")
            print(f"  {name:62s} {seconds * 1e3:9.1f} ms   {seconds / times[length][base]:5.2f}x {base}")
    first, last = lengths[0], lengths[-1]
    print(f"== time(L={last}) / time(L={first})")
    for name in times[first]:
        print(f"  {name:62s} {times[last][name] / times[first][name]:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="training batch of the FindRec vs SASRec section")
    parser.add_argument("--lengths", default="50,200", help="sequence lengths of the FindRec vs SASRec section")
    parser.add_argument("--skip-mixer", action="store_true", help="skip the Mamba mixer vs mambapy section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of {args.repeats}")
    if not args.skip_mixer:
        mixer_vs_mambapy(args.repeats)
    findrec_vs_sasrec(args.repeats, args.batch, [int(n) for n in args.lengths.split(",")])


if __name__ == "__main__":
    main()
