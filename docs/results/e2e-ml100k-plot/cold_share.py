"""What recommending cold items costs the warm targets: per finished run, the share of the test top-10 slots that hold
a cold item, and the test warm NDCG@10 / Recall@10 of the same checkpoint with cold items kept out of the lists.

python cold_share.py RUN_DIR...   (re-opens each run's selected checkpoint; evaluation only, a few seconds a run)
"""

import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from modalrec.data.dataset import TEST
from modalrec.eval.ranking import Evaluator
from modalrec.train.experiment import open_run


def measure(run: Path) -> tuple[float, float, float, float]:
    """(share of top-10 slots that are cold, cold/recall@10, warm/ndcg@10 with cold items blocked, warm/recall@10 blocked)."""
    loaded = open_run(run)
    cold = loaded.ctx.cold_items
    evaluator = Evaluator(loaded.ctx, ks=(10,), metrics=("ndcg", "recall"), beyond=(), seed=loaded.cfg.train.seed)
    mixed = evaluator.evaluate(loaded.model, TEST)
    top = mixed.topk[:, :10]
    share = float(cold[top[top >= 0]].sum() / top.size)
    loaded.model.unscored_items = lambda: cold  # the same model, cold items never listed
    warm_only = evaluator.evaluate(loaded.model, TEST).summary
    return share, mixed.summary["cold/recall@10"], warm_only["warm/ndcg@10"], warm_only["warm/recall@10"]


def main(runs: list[Path]) -> None:
    rows: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for run in runs:
        rows[f"{run.parent.name}/{run.name.rsplit('-s', 1)[0]}"].append(measure(run))
    print(
        "| runs | seeds | cold share of top-10 slots | test cold/recall@10 | test warm/ndcg@10, cold blocked | "
        "test warm/recall@10, cold blocked |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, values in rows.items():
        cells = []
        for column in np.array(values).T.tolist():
            mean = statistics.mean(column)
            cells.append(f"{mean:.4f}" if len(column) == 1 else f"{mean:.4f} ({statistics.stdev(column):.4f})")
        print(f"| {name} | {len(values)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
