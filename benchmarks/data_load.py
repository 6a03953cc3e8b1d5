"""Time the data path on a named dataset: cold load (fetch + read + save), warm load (processed
cache, memory-mapped), preprocessing (rating >= 4 binarised, 5-core) and leave-one-out / temporal
splits, printing the sizes after each step.

    python benchmarks/data_load.py [--dataset ml-1m] [--home DIR] [--repeats 5]

Without ``--home`` the cache is a fresh temporary folder, so the cold load really is cold.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from modalrec.data.dataset import Dataset
from modalrec.data.registry import load_dataset

T = TypeVar("T")


def timed(label: str, run: Callable[[], T], repeats: int = 1) -> T:
    """Run ``run`` ``repeats`` times, print the median (and min) wall time, return the last result."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        seconds.append(time.perf_counter() - start)
    spread = f" (min {min(seconds):.4f} s over {repeats} runs)" if repeats > 1 else ""
    print(f"{label:<44} {statistics.median(seconds):9.4f} s{spread}")
    return result


def show(ds: Dataset) -> None:
    """The dataset's stats, indented under the timing line."""
    print("\n".join("    " + line for line in ds.describe().splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="ml-1m")
    parser.add_argument("--home", type=Path, help="cache root (default: a fresh temporary folder)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the fast steps")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    with tempfile.TemporaryDirectory(prefix="modalrec-bench-") as scratch:
        home = args.home or Path(scratch)
        print(f"dataset {args.dataset}, cache root {home}")
        raw = timed("load_dataset cold (fetch + read + save)", lambda: load_dataset(args.dataset, data_home=home, progress=False))
        timed("load_dataset refresh (re-fetch + read + save)",
              lambda: load_dataset(args.dataset, data_home=home, refresh=True, progress=False))  # fmt: skip
        warm = timed(
            "load_dataset warm (processed cache, mmap)", lambda: load_dataset(args.dataset, data_home=home), args.repeats
        )
        assert warm.content_hash() == raw.content_hash(), "processed cache differs from the raw read"
        source = warm.meta.get("source", {})
        print(
            f"    source: {source.get('via')} {source.get('url') or source.get('wheel', {}).get('requirement') or source.get('path')}"
        )
        show(warm)
        _preprocess_and_split(warm, args.repeats)


def _preprocess_and_split(ds: Dataset, repeats: int) -> None:
    """Binarise + 5-core, then leave-one-out and temporal splits, when those modules exist."""
    if importlib.util.find_spec("modalrec.data.preprocess") is None:
        print("preprocess: modalrec.data.preprocess is not available; skipped")
        return
    from modalrec.data.preprocess import PreprocessConfig, preprocess

    config = PreprocessConfig(rating_threshold=4.0, user_core=5, item_core=5)
    clean = timed("preprocess (rating >= 4, 5-core)", lambda: preprocess(ds, config), repeats)
    show(clean)
    if importlib.util.find_spec("modalrec.data.split") is None:
        print("split: modalrec.data.split is not available; skipped")
        return
    from modalrec.data.split import SplitConfig, split

    for method in ("loo", "temporal"):
        parts = timed(f"split method={method}", lambda m=method: split(clean, SplitConfig(method=m)), repeats)
        show(parts)


if __name__ == "__main__":
    main()
