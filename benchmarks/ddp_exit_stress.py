"""Stress test of a 2-rank run's exit: the command of
``tests/train/test_distributed.py::test_torchrun_two_ranks_match_one_process`` repeated N times in a row.

Each repeat is ``torchrun --standalone --nproc-per-node=2 -m modalrec train model=bpr ...`` (gloo on CPU,
4 epochs, gradient accumulation 2) on the tests' synthetic dataset (200 users, 100 items). A repeat
fails when the job exits non-zero or leaves no results.json; the stderr tail of each failure is
printed (a rank dying with SIGABRT, "terminate called without an active exception", was the flake).
``PYTHONFAULTHANDLER=1`` makes an aborting rank print every Python thread's stack.

    /work/bin/slot python benchmarks/ddp_exit_stress.py --repeats 50
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = [
    "model=bpr",
    "train.epochs=4",
    "train.batch_size=50",
    "train.lr=0.01",
    "train.patience=100",
    "train.progress=false",
    "model.dim=16",
    "train.grad_accum=2",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--stop-on-failure", action="store_true")
    args = parser.parse_args()

    import torch

    from modalrec.data.storage import save_dataset
    from modalrec.data.synthetic import make_synthetic

    print(
        f"torch {torch.__version__}, python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0", PYTHONFAULTHANDLER="1")
    failures, seconds = 0, []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synthetic"
        save_dataset(make_synthetic(n_users=200, n_items=100, seed=0), data)
        for i in range(args.repeats):
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc-per-node=2",
                "-m",
                "modalrec",
                "train",
                *ARGS,
                f"dataset={data}",
                f"run.dir={tmp}/runs",
                f"run.name=r{i}",
                "--quiet",
            ]
            start = time.perf_counter()
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, check=False)
            seconds.append(time.perf_counter() - start)
            ok = done.returncode == 0 and (Path(tmp) / "runs" / f"r{i}" / "results.json").exists()
            failures += not ok
            print(
                f"repeat {i + 1:3d}/{args.repeats}: {'ok' if ok else 'FAILED'} (exit {done.returncode}, {seconds[-1]:.1f}s)",
                flush=True,
            )
            if not ok:
                print("  stderr tail:\n    " + "\n    ".join(done.stderr[-4000:].splitlines()), flush=True)
                if args.stop_on_failure:
                    break
    runs = len(seconds)
    print(f"\n{runs - failures}/{runs} repeats passed, {failures} failed; median {sorted(seconds)[runs // 2]:.1f}s per run")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
