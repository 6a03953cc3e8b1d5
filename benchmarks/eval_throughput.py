"""Full-ranking evaluation throughput and peak memory against the bare floor.

    python benchmarks/eval_throughput.py [--sizes ml1m,100k,1m] [--repeats 2] [--seconds 0] [--threads 2] [--out FILE]

A dot-product model with random d=64 embeddings is ranked on synthetic catalogues: ML-1M-like
(6,040 users x 3,706 items, ~160 seen items per user drawn with a popularity skew) and 100k / 1M
items (4,096 users, ~20 seen items per user); every user has one test target and TEST masks train +
valid. For each size the Evaluator (masking, exact ties, hits, metrics) is timed against the floor in
the same process: ``U @ I.T`` chunked the same way over users and items plus ``torch.topk`` (merging
per-chunk top-k with another topk), no masking, no tie handling, no metrics. The two alternate, at
least ``--repeats`` times and until each has run ``--seconds`` (so a fast size gets many tries at a
quiet moment of a shared machine); the best time of each is kept. ``--threads`` sets torch's intra-op
threads of both; the report names them and OMP_WAIT_POLICY (libgomp's idle workers spin by default,
which costs a single-threaded step between two torch ops its core when the cores are oversubscribed).
Besides wall clock, each pass's process CPU time is taken: with ``--threads 1`` it is the work itself,
unaffected by the other jobs of a shared machine taking the core away (the ``cpu ratio`` column; with
more threads it also counts spinning idle workers).

Memory: tracemalloc does not see torch's allocations and torch keeps no CPU allocator statistics, so
each (size, item_chunk) runs in its own subprocess that, once the model, context and embeddings are
loaded, returns freed heap to the OS (malloc_trim), resets the kernel's peak-RSS mark (writing 5 to
/proc/self/clear_refs resets VmHWM) and reports VmHWM - VmRSS after ``evaluate``: the evaluator's
peak working memory. Where the reset is not allowed it falls back to ru_maxrss growth (a lower
bound, marked). It should follow user_chunk x item_chunk (1024 x 100k float32 = 391 MiB,
1024 x 25k = 98 MiB), not the catalogue size.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.eval.ranking import Evaluator
from modalrec.models.base import EmbeddingScorer, GeneralRecommender, NoConfig

SIZES = {  # name: (users, items, seen items per user, popularity-skewed)
    "ml1m": (6_040, 3_706, 160, True),
    "100k": (4_096, 100_000, 20, False),
    "1m": (4_096, 1_000_000, 20, False),
}
ITEM_CHUNKS = {"ml1m": (100_000,), "100k": (100_000, 25_000), "1m": (100_000, 25_000)}
USER_CHUNK = 1024
DIM = 64
K = 20


class RandomDotModel(EmbeddingScorer, GeneralRecommender):
    """Scores users x items by a dot product of fixed random embeddings."""

    name = "random-dot"

    def __init__(self, ctx: DataContext, users: torch.Tensor, items: torch.Tensor):
        super().__init__(NoConfig(), ctx)
        self.register_buffer("user_table", users)
        self.register_buffer("item_table", items)

    def query_vectors(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.user_table[batch["users"]]

    def item_vectors(self, items: slice) -> torch.Tensor:
        return self.item_table[items]


def synthetic_context(n_users: int, n_items: int, n_seen: int, skewed: bool, seed: int = 0) -> DataContext:
    """Per user n_seen - 1 train items, 1 valid and 1 test item (repeats within a user merge)."""
    rng = np.random.default_rng(seed)
    per_user = n_seen + 1
    uniform = rng.random((n_users, per_user))
    items = (n_items * (uniform**2 if skewed else uniform)).astype(np.int64)  # squared: popular head
    split = np.full((n_users, per_user), TRAIN, dtype=np.int8)
    split[:, -2], split[:, -1] = VALID, TEST
    ds = Dataset(
        name=f"synthetic-{n_items}",
        user=np.repeat(np.arange(n_users), per_user),
        item=items.ravel(),
        user_ids=np.arange(n_users).astype(str),
        item_ids=np.arange(n_items).astype(str),
        split=split.ravel(),
    )
    return DataContext.from_dataset(ds)


def floor_topk(users: torch.Tensor, items: torch.Tensor, k: int, user_chunk: int, item_chunk: int) -> torch.Tensor:
    """The bare floor: chunked U @ I.T and topk, no masking, ties as torch leaves them."""
    out = []
    for start in range(0, len(users), user_chunk):
        query = users[start : start + user_chunk]
        best_values = best_items = None
        for item_start in range(0, len(items), item_chunk):
            scores = None  # free the previous tile first, as the evaluator does
            scores = query @ items[item_start : item_start + item_chunk].T
            values, columns = torch.topk(scores, min(k, scores.shape[1]), dim=1)
            columns = columns + item_start
            if best_values is not None:
                values, order = torch.topk(torch.cat([best_values, values], 1), k, dim=1)
                columns = torch.cat([best_items, columns], 1).gather(1, order)
            best_values, best_items = values, columns
        out.append(best_items)
    return torch.cat(out)


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def reset_peak() -> bool:
    """Return freed heap to the OS and reset the peak-RSS mark to the current RSS; False if refused."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_mb(exact: bool) -> float:
    """Peak RSS in MiB since the last reset (VmHWM), or since start (ru_maxrss) when not resettable."""
    return _status_mb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(size: str, item_chunk: int, repeats: int, min_seconds: float, threads: int) -> dict[str, float]:
    """One size and chunk in this process: evaluator peak memory, evaluator and floor throughput."""
    torch.set_num_threads(threads)
    n_users, n_items, n_seen, skewed = SIZES[size]
    ctx = synthetic_context(n_users, n_items, n_seen, skewed)
    generator = torch.Generator().manual_seed(0)
    user_table = torch.randn(n_users, DIM, generator=generator) / DIM**0.25
    item_table = torch.randn(n_items, DIM, generator=generator) / DIM**0.25
    model = RandomDotModel(ctx, user_table, item_table)
    evaluator = Evaluator(ctx, ks=(10, K), user_chunk=USER_CHUNK, item_chunk=item_chunk)
    floor_topk(user_table[:64], item_table[:item_chunk], K, USER_CHUNK, item_chunk)  # warm up BLAS threads

    exact = reset_peak()
    resident_before = _status_mb("VmRSS")
    result = evaluator.evaluate(model, TEST)  # the peak is measured on this first pass alone
    peak_after = peak_mb(exact)
    eval_users = user_table[torch.from_numpy(result.users)]
    seconds, floor_seconds, cpu, floor_cpu = [], [], [], []
    while len(seconds) < repeats or min(sum(seconds), sum(floor_seconds)) < min_seconds:  # interleaved: same load
        start, start_cpu = time.perf_counter(), time.process_time()
        evaluator.evaluate(model, TEST)
        seconds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        start, start_cpu = time.perf_counter(), time.process_time()
        floor_topk(eval_users, item_table, K, USER_CHUNK, item_chunk)
        floor_seconds.append(time.perf_counter() - start)
        floor_cpu.append(time.process_time() - start_cpu)
    n_eval = len(result.users)
    return {
        "users": n_eval,
        "items": n_items,
        "seen_per_user": float(np.diff(ctx.seen(TEST).indptr).mean()),
        "item_chunk": item_chunk,
        "eval_users_per_s": n_eval / min(seconds),
        "floor_users_per_s": n_eval / min(floor_seconds),
        "cpu_ratio": min(floor_cpu) / min(cpu),
        "eval_peak_growth_mb": peak_after - resident_before,
        "peak_exact": exact,
        "recall@20": result.summary[f"recall@{K}"],
        "repeats": len(seconds),
    }


def run_child(size: str, item_chunk: int, repeats: int, min_seconds: float, threads: int) -> dict[str, float]:
    """``measure`` in a fresh interpreter, so its peak RSS is its own."""
    command = [sys.executable, __file__, "--child", size, str(item_chunk)]
    command += ["--repeats", str(repeats), "--seconds", str(min_seconds), "--threads", str(threads)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict[str, float]], threads: int) -> str:
    header = (
        f"{'items':>9} {'users':>6} {'seen/u':>6} {'item_chunk':>10} {'eval u/s':>10} {'floor u/s':>10} "
        f"{'ratio':>6} {'cpu ratio':>9} {'peak MiB':>9} {'repeats':>7}"
    )
    lines = [header]
    for r in rows:
        lines.append(
            f"{r['items']:>9,} {r['users']:>6,} {r['seen_per_user']:>6.1f} {r['item_chunk']:>10,} "
            f"{r['eval_users_per_s']:>10,.0f} {r['floor_users_per_s']:>10,.0f} "
            f"{r['eval_users_per_s'] / r['floor_users_per_s']:>6.2f} {r['cpu_ratio']:>9.2f} {r['eval_peak_growth_mb']:>8.0f}"
            + ("" if r["peak_exact"] else "*")
            + f" {r['repeats']:>7}"
        )
    lines += [
        "",
        f"user_chunk={USER_CHUNK}, d={DIM}, k=10,{K}, torch threads={threads}, OMP_WAIT_POLICY="
        f"{os.environ.get('OMP_WAIT_POLICY', 'unset')}; eval and floor alternate, best of repeats each;",
        "ratio = eval / floor throughput, wall clock on a shared 2-core machine (other jobs running);",
        "cpu ratio = the same from the best process CPU time of each (the work alone when threads=1).",
        "peak MiB: VmHWM - VmRSS around evaluate(), peak mark reset after setup, one subprocess per row",
        "(* = reset refused: ru_maxrss growth, a lower bound). Score tile: user_chunk x item_chunk x 4 bytes.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated subset of {list(SIZES)}")
    parser.add_argument("--repeats", type=int, default=2, help="at least this many timed passes of each")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads of both")
    parser.add_argument("--seconds", type=float, default=0.0, help="and go on until each has run this long")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here (command on line 1)")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "ITEM_CHUNK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args.repeats, args.seconds, args.threads)))
        return
    rows = []
    for size in args.sizes.split(","):
        for item_chunk in ITEM_CHUNKS[size]:
            rows.append(run_child(size, item_chunk, args.repeats, args.seconds, args.threads))
            print(report(rows[-1:], args.threads).splitlines()[1], flush=True)
    text = report(rows, args.threads)
    print("\n" + text)
    if args.out:
        command = "$ python benchmarks/eval_throughput.py " + " ".join(sys.argv[1:])
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=args.out.parent, delete=False, suffix=".tmp") as f:
            f.write(command.rstrip() + "\n" + text + "\n")
        os.replace(f.name, args.out)


if __name__ == "__main__":
    main()
