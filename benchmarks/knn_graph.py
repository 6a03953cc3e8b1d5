"""Content kNN item-graph construction: time and peak memory vs number of items, chunked.

Each size runs in a fresh subprocess so its peak resident memory (ru_maxrss) is its own; the dense
alternative (a full n x n float32 similarity) is shown for scale.

    python benchmarks/knn_graph.py --items 10000 100000 --dim 128 --k 10
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def child(n: int, dim: int, k: int, budget: int) -> None:
    import torch

    from modalrec.nn.knn import cosine_knn

    torch.set_num_threads(int(sys.argv[sys.argv.index("--threads") + 1]))
    x = np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    graph = cosine_knn(x, k, chunk_budget=budget)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"n": n, "seconds": seconds, "peak_mib": peak / 1024, "growth_mib": (peak - before) / 1024, "nnz": int(graph.nnz)}
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", nargs="+", type=int, default=[10_000, 100_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--chunk-budget", type=int, default=1 << 24, help="entries of the dense block per chunk")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.dim, args.k, args.chunk_budget)
        return
    print(
        f"cosine kNN, d={args.dim}, k={args.k}, chunk budget {args.chunk_budget:,} entries "
        f"({args.chunk_budget * 4 / 2**20:.0f} MiB per block), {args.threads} thread(s), shared 2-core machine"
    )
    print(
        f"{'items':>8} {'seconds':>9} {'peak RSS MiB':>13} {'build growth MiB':>17} {'edges':>10} {'dense n x n MiB':>16} {'dense / growth':>15}"
    )
    for n in args.items:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                str(n),
                "--dim",
                str(args.dim),
                "--k",
                str(args.k),
                "--chunk-budget",
                str(args.chunk_budget),
                "--threads",
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        dense = n * n * 4 / 2**20
        print(
            f"{n:>8,} {r['seconds']:>9.2f} {r['peak_mib']:>13.0f} {r['growth_mib']:>17.0f} {r['nnz']:>10,} {dense:>16,.0f} {dense / max(r['growth_mib'], 1):>15.0f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
