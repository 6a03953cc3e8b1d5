"""Does FindRec degrade less than a baseline under noisy features, with the training run (seed) as the unit?

``modalrec report --sweep KEY --baseline B`` averages each row's per-user values over its seeds and tests the
per-user change from the first value against the baseline's over the users: the users are the sample, the trained
models are fixed, so run-to-run variation is not in its error term. This script reads one noise suite (issue #15,
claim 3: suites/findrec-claims-noise{,-shuffle}-ml100k.yaml) and prints, per metric and value p > the first, the
difference in degradation D = (model at p - model at the first p) - (baseline at p - baseline at the first p) of
the test metric, tested three ways:

- runs: Welch's t-test with each run as one observation (the four cells' means and sample variances over seeds,
  Welch-Satterthwaite degrees of freedom; no pairing of seeds assumed), two-sided; needs >= 2 seeds per cell;
- per seed s (seeds finished in all four cells): D from the four runs of seed s, paired over users (t-test and
  Wilcoxon of the per-user D against 0, raw p): does each seed show the same sign?
- seeds averaged: the report's test (per-user values averaged over the seeds, paired over users), raw p.

    python benchmarks/findrec_noise_seeds.py runs/suites/findrec-claims-noise-ml100k \\
        [--model findrec-mmd] [--baseline sasrec-features] [--key dataset.feature_noise] [--metrics ndcg@10,ndcg@20]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import stats

from modalrec.experiments.collect import RunRecord, load_runs
from modalrec.experiments.significance import align, paired_test, seed_stats
from modalrec.experiments.sweep import sweep_value
from modalrec.experiments.tables import seed_averaged

Cells = dict[str, dict[float, dict[int, RunRecord]]]  # label -> value -> seed -> run


def cells(records: list[RunRecord], key: str, labels: tuple[str, str]) -> Cells:
    """The runs of the two rows by value of ``key`` and seed."""
    out: Cells = {label: {} for label in labels}
    for r in records:
        if r.label in out:
            out[r.label].setdefault(sweep_value(r, key), {})[r.seed] = r
    return out


def welch(groups: list[tuple[np.ndarray, float]]) -> tuple[float, float, float, float]:
    """(estimate, se, df, two-sided p) of sum_i sign_i mean(x_i), the groups independent (Welch-Satterthwaite)."""
    estimate = sum(sign * x.mean() for x, sign in groups)
    parts = [x.var(ddof=1) / len(x) for x, _ in groups]
    se = float(np.sqrt(sum(parts)))
    if se == 0.0:
        return float(estimate), 0.0, float("nan"), 1.0 if estimate == 0 else 0.0
    df = sum(parts) ** 2 / sum(v**2 / (len(x) - 1) for v, (x, _) in zip(parts, groups))
    return float(estimate), se, float(df), float(2 * stats.t.sf(abs(estimate) / se, df))


def per_user_d(
    runs: dict[tuple[str, float], list[RunRecord]], model: str, baseline: str, start: float, value: float, metric: str
) -> np.ndarray:
    """Per-user D (model change minus baseline change from ``start`` to ``value``), each cell averaged over its runs."""
    v: dict[tuple[str, float], np.ndarray] = {}
    users: np.ndarray | None = None
    for cell, group in runs.items():
        found = seed_averaged(group, "test", metric)
        if found is None:
            raise SystemExit(f"no per-user '{metric}' in {group[0].path}")
        if users is None:
            users = found[0]
        v[cell] = align(users, found[1], *found)[1]  # the same users in every cell, in one order
    return (v[(model, value)] - v[(model, start)]) - (v[(baseline, value)] - v[(baseline, start)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", type=Path, help="the suite's output directory")
    parser.add_argument("--model", default="findrec-mmd")
    parser.add_argument("--baseline", default="sasrec-features")
    parser.add_argument("--key", default="dataset.feature_noise")
    parser.add_argument("--metrics", default="ndcg@10,ndcg@20")
    args = parser.parse_args()
    model, baseline = args.model, args.baseline
    table = cells(load_runs([args.suite]), args.key, (model, baseline))
    for label, by_value in table.items():
        if not by_value:
            raise SystemExit(f"{args.suite}: no finished run of '{label}'")
    values = sorted(set(table[model]) & set(table[baseline]))
    start = values[0]
    print(f"{args.suite}: test metrics, D = ({model} change) - ({baseline} change) from {args.key}={start:g}")
    for label, by_value in table.items():
        print(f"  {label}: " + "; ".join(f"{v:g} seeds {','.join(map(str, sorted(by_value[v])))}" for v in sorted(by_value)))
    for metric in args.metrics.split(","):
        print(f"\n### {metric}\n")
        print(
            f"| {args.key} | {model} change (mean ± sd over seeds) | {baseline} change | D, runs: Welch (se, df, p) "
            "| D per seed: users paired (t p / Wilcoxon p) | D, seeds averaged: users paired (t p / Wilcoxon p) |"
        )
        print("|---:|---:|---:|---:|---:|---:|")
        for value in values[1:]:
            score = {
                (label, v): np.array([float(r.summary("test")[metric]) for _, r in sorted(table[label][v].items())])
                for label in (model, baseline)
                for v in (start, value)
            }
            changes = []
            for label in (model, baseline):
                common = sorted(set(table[label][start]) & set(table[label][value]))
                c = [
                    float(table[label][value][s].summary("test")[metric] - table[label][start][s].summary("test")[metric])
                    for s in common
                ]
                mean, sd = seed_stats(c)
                changes.append(f"{mean:+.4f} ± {sd:.4f} ({len(c)})")
            if all(len(x) >= 2 for x in score.values()):
                d, se, df, p = welch(
                    [
                        (score[(model, value)], 1),
                        (score[(model, start)], -1),
                        (score[(baseline, value)], -1),
                        (score[(baseline, start)], 1),
                    ]
                )
                runs_cell = f"{d:+.4f} ({se:.4f}, {df:.1f}, {p:.2g})"
            else:
                runs_cell = "- (a cell has < 2 seeds)"
            seeds = sorted(set.intersection(*(set(table[label][v]) for label in (model, baseline) for v in (start, value))))
            per_seed = []
            for s in seeds:
                one = {(label, v): [table[label][v][s]] for label in (model, baseline) for v in (start, value)}
                d_seed = per_user_d(one, model, baseline, start, value, metric)
                t = paired_test(d_seed, np.zeros_like(d_seed))
                per_seed.append(f"s{s} {t.mean_diff:+.4f} ({t.t_p:.2g} / {t.w_p:.2g})")
            every = {(label, v): list(table[label][v].values()) for label in (model, baseline) for v in (start, value)}
            d_all = per_user_d(every, model, baseline, start, value, metric)
            t = paired_test(d_all, np.zeros_like(d_all))
            print(
                f"| {value:g} | {changes[0]} | {changes[1]} | {runs_cell} | {'; '.join(per_seed)} "
                f"| {t.mean_diff:+.4f} ({t.t_p:.2g} / {t.w_p:.2g}; {t.n_users} users) |"
            )


if __name__ == "__main__":
    main()
