"""Before/after table of the #18 parity runs (docs/results/arch-parity): every test metric of every run, compared exactly.

Usage: python compare.py <folder> [suite ...]
The folder holds before-<suite> and after-<suite> for each suite (default: cf mm, the session-3 check)."""

import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
suites = sys.argv[2:] or ["cf", "mm"]
rows, same, total = [], 0, 0
for suite in suites:
    for run in sorted((root / f"before-{suite}" / "runs").glob("*")):
        b = json.loads((run / "results.json").read_text()) if (run / "results.json").exists() else None
        a_path = root / f"after-{suite}" / "runs" / run.name / "results.json"
        a = json.loads(a_path.read_text()) if a_path.exists() else None
        if b is None or a is None:
            rows.append(f"| {run.name} | missing ({'before' if b is None else 'after'}) | | | |")
            continue
        for metric in sorted(b["test"]):
            if metric not in a["test"] or not isinstance(b["test"][metric], float):
                continue
            vb, va = b["test"][metric], a["test"][metric]
            total += 1
            same += vb == va
            rows.append(f"| {run.name} | {metric} | {vb:.6f} | {va:.6f} | {va - vb:+.1e} |")
        rows.append(f"| {run.name} | best epoch | {b['best_epoch']} | {a['best_epoch']} | |")
print("| run | metric | before | after | after - before |\n|---|---|---:|---:|---:|")
print("\n".join(rows))
print(f"\n{same} of {total} test metrics identical to the last digit.")
