"""HDRM rows against the HGCF run they load as frozen stage 1, in one suite: paired tests over test users, per seed
and on seed-averaged per-user values (the report's tables test every row against the column's best instead, which
on the DiffRec splits is EASE). Holm-corrected over the compared rows, per metric.

    python benchmarks/hdrm_vs_stage1.py runs/suites/cf-ml1m-diffrec-hdrm-denoise ml-1m-diffrec-clean \\
        hdrm-faithful hdrm-denoise-blend0.2 [--stage1 hgcf] [--metrics recall@20,ndcg@20]
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from modalrec.experiments.significance import align, compare_to_reference


def per_user(run: Path, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(users, values) of one finished run's test split."""
    data = np.load(run / "per_user_test.npz")
    return data["users"], data[metric]


def seeds_of(runs: Path, dataset: str, label: str) -> dict[int, Path]:
    """Finished runs of one row, by seed."""
    found = {}
    for path in runs.glob(f"{dataset}__{label}__seed*"):
        match = re.fullmatch(rf"{re.escape(dataset)}__{re.escape(label)}__seed(\d+)", path.name)
        if match and (path / "results.json").exists():
            found[int(match.group(1))] = path
    return found


def compare(runs: Path, dataset: str, stage1: str, labels: list[str], metric: str, seeds: list[int]) -> dict:
    """Paired tests of each label against stage 1 over the users, per-user values averaged over ``seeds``."""
    users, ref = per_user(runs / f"{dataset}__{stage1}__seed{seeds[0]}", metric)
    samples = {}
    for label in [stage1, *labels]:
        values = []
        for seed in seeds:
            u, v = per_user(runs / f"{dataset}__{label}__seed{seed}", metric)
            values.append(align(users, ref, u, v)[1])
        samples[label] = np.mean(values, axis=0)
    return {label: (float(samples[label].mean()), test) for label, test in compare_to_reference(samples, stage1).items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("suite_out", type=Path, help="the suite's out folder (holds runs/)")
    parser.add_argument("dataset")
    parser.add_argument("labels", nargs="+")
    parser.add_argument("--stage1", default="hgcf")
    parser.add_argument("--metrics", default="recall@20,ndcg@20,recall@10,ndcg@10")
    args = parser.parse_args()
    runs = args.suite_out / "runs"
    common = set(seeds_of(runs, args.dataset, args.stage1))
    for label in args.labels:
        common &= set(seeds_of(runs, args.dataset, label))
    seeds = sorted(common)
    if not seeds:
        raise SystemExit(f"no seed has finished runs of {args.stage1} and every one of {', '.join(args.labels)} in {runs}")
    print(
        f"{args.dataset}: {', '.join(args.labels)} vs {args.stage1}, seeds {seeds}, test users; t = paired t-test, w = Wilcoxon"
    )
    print(
        "metric     | seeds      | row                        | row mean | stage-1 mean | diff     | t p     | t p Holm | w p     | w p Holm"
    )
    for metric in args.metrics.split(","):
        for group in [[s] for s in seeds] + ([seeds] if len(seeds) > 1 else []):
            results = compare(runs, args.dataset, args.stage1, args.labels, metric, group)
            for label, (mean, test) in results.items():
                print(
                    f"{metric:<10} | {','.join(map(str, group)):<10} | {label:<26} | {mean:.4f}   | {mean - test.mean_diff:.4f}       | "
                    f"{test.mean_diff:+.4f}  | {test.t_p:<7.2g} | {test.t_p_holm:<8.2g} | {test.w_p:<7.2g} | {test.w_p_holm:.2g}"
                )


if __name__ == "__main__":
    main()
