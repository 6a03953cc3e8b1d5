"""Print the results table of the e2e-ml100k-plot runs: python summary.py <run dir> (default /tmp/w19runs)."""

import json
import sys
from pathlib import Path

ROWS = (
    ("id", "ID-only (item embedding table), 3 epochs"),
    ("frozen", "MiniLM frozen (finetune_layers=0), 3 epochs"),
    ("ft2", "MiniLM top 2 layers fine-tuned, 3 epochs"),
    ("id50", "ID-only, cap 50 epochs (patience 10)"),
    ("frozen50", "MiniLM frozen, cap 50 epochs (patience 10)"),
)


def main(root: Path) -> None:
    print("| model | NDCG@10 | Recall@10 | warm NDCG@10 | warm Recall@10 | cold NDCG@10 | cold Recall@10 | best / run epochs "
          "| train s/epoch | valid s/epoch | lower layers s (once) | parameters |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    users = None
    for name, label in ROWS:
        run = root / name
        if not (run / "results.json").exists():
            continue
        r = json.loads((run / "results.json").read_text())
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        t = r["test"]
        lower = r.get("model_provenance", {}).get("item_encoder", {}).get("lower_seconds", "-")
        train_s = sum(e["seconds"] for e in epochs) / len(epochs)
        valid_s = sum(e.get("valid_seconds", 0.0) for e in epochs) / len(epochs)
        print(f"| {label} | {t['ndcg@10']:.4f} | {t['recall@10']:.4f} | {t['warm/ndcg@10']:.4f} | {t['warm/recall@10']:.4f} "
              f"| {t['cold/ndcg@10']:.4f} | {t['cold/recall@10']:.4f} | {r['best_epoch']} / {r['epochs_run']} | {train_s:.1f} "
              f"| {valid_s:.1f} | {lower} | {r['n_parameters']:,} |")
        users = (t["warm/users"], t["cold/users"])
    print(f"\ntest users with a warm / cold target: {users}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/w19runs"))
