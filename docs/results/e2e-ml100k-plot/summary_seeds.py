"""Mean (sd) over seeds of the run_seeds.sh runs: python summary_seeds.py [run dir] (default runs/e2e-seeds);
python summary_seeds.py NEW --before OLD: each row's warm / cold / cold-only metrics of OLD and NEW side by side."""

import json
import re
import statistics
import sys
from pathlib import Path

ROWS = (
    ("id", "ID-only, cap 50 epochs (patience 10)"),
    ("frozen", "MiniLM frozen (finetune_layers=0), cap 50 epochs"),
    ("ft1", "MiniLM top 1 layer fine-tuned, 6 epochs"),
    ("ft2", "MiniLM top 2 layers fine-tuned, 3 epochs"),
)
METRICS = ("ndcg@10", "recall@10", "warm/ndcg@10", "cold/recall@10", "cold-only/ndcg@10", "cold-only/recall@10")


def cell(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ({statistics.stdev(values):.{digits}f})"


def wall_seconds(log: Path) -> float:
    """Wall clock of the whole `modalrec train` process (/usr/bin/time -v), data and lower layers included."""
    match = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", log.read_text())
    if not match:
        return float("nan")
    hours, minutes, seconds = match.groups()
    return int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


def main(root: Path) -> None:
    print("| model | seeds | " + " | ".join(f"test {m}" for m in METRICS) + " | best / run epochs | train s/epoch | wall s/run |")
    print("| --- " * (len(METRICS) + 6) + "|")
    users = None
    for name, label in ROWS:
        runs = sorted(p for p in root.glob(f"{name}-s*") if (p / "results.json").exists())
        if not runs:
            continue
        results = [json.loads((p / "results.json").read_text()) for p in runs]
        epochs = [[json.loads(line) for line in (p / "metrics.jsonl").read_text().splitlines()] for p in runs]
        per_epoch = [sum(e["seconds"] for e in run) / len(run) for run in epochs]
        walls = [wall_seconds(root / f"{p.name}.log") for p in runs]
        cells = [cell([r["test"][m] for r in results]) for m in METRICS]
        best = ", ".join(f"{r['best_epoch']}/{r['epochs_run']}" for r in results)
        print(f"| {label} | {len(runs)} | " + " | ".join(cells) + f" | {best} | {cell(per_epoch, 1)} | {cell(walls, 0)} |")
        users = (results[0]["test"]["warm/users"], results[0]["test"]["cold/users"])
    print(f"\ntest users with a warm / cold target (seed 0 split): {users}")


BEFORE_AFTER = ("ndcg@10", "warm/ndcg@10", "warm/recall@10", "cold/ndcg@10", "cold/recall@10", "cold-only/recall@10")


def before_after(new: Path, old: Path) -> None:
    """Per row: the metrics of the runs in ``old`` (seeds present in both) and in ``new``, mean (sd) over seeds."""
    print("| model | code | seeds | " + " | ".join(f"test {m}" for m in BEFORE_AFTER) + " |")
    print("| --- " * (len(BEFORE_AFTER) + 3) + "|")
    for name, label in ROWS:
        done = sorted(p.name for p in new.glob(f"{name}-s*") if (p / "results.json").exists())
        if not done:
            continue
        for code, root in (("before", old), ("after", new)):
            results = [json.loads((root / run / "results.json").read_text())["test"] for run in done]
            cells = [cell([r[m] for r in results]) for m in BEFORE_AFTER]
            print(f"| {label} | {code} | {len(done)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[2] == "--before":
        before_after(Path(sys.argv[1]), Path(sys.argv[3]))
    else:
        main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("runs/e2e-seeds"))
