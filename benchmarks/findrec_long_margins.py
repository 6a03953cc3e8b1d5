"""Does FindRec's margin over a baseline grow with the user's history length, and with the model's max length?

Reads two finished suites of the same models on the same data and split, one at a long max length and one at a
short one (issue #15, claim 2: suites/findrec-claims-long-ml100k.yaml at L 200 against the L 50 accuracy suite),
and prints, per baseline and bucket of history length (items before the test item), FindRec's per-user margin
(FindRec minus baseline, per-user values averaged over each row's seeds) at each max length, with paired tests:

- margin at L long / L short: FindRec vs the baseline over the bucket's users (t-test and Wilcoxon);
- change: the margin at L long vs at L short, paired over the bucket's users (does a longer input help FindRec
  more than the baseline?);
- Holm over the buckets of each (baseline, quantity, test) family;
- trend: Spearman correlation of the per-user margin with the history length, at each max length (does the
  margin grow with the history?);
- first, each model present in both suites against itself: long vs short max length per bucket (paired over users).

    python benchmarks/findrec_long_margins.py runs/suites/findrec-claims-long-ml100k \\
        ../wt-w15/runs/suites/findrec-claims-accuracy-ml100k [--model findrec-mmd] [--metric ndcg@20] [--buckets 20,50,200] \\
        [--same-seeds]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import stats

from modalrec.experiments.buckets import bucket_labels, history_lengths
from modalrec.experiments.collect import RunRecord, by_dataset, load_runs
from modalrec.experiments.significance import PairedTest, align, correct_family, paired_test
from modalrec.experiments.tables import seed_averaged


def rows(suite: Path) -> tuple[str, dict[str, list[RunRecord]]]:
    """The one dataset of a suite's finished runs and its rows (label -> runs over seeds)."""
    grouped = by_dataset(load_runs([suite]))
    if len(grouped) != 1:
        raise SystemExit(f"{suite}: expected the runs of one dataset, found {', '.join(grouped)}")
    return next(iter(grouped.items()))


def margins(groups: dict[str, list[RunRecord]], model: str, baseline: str, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(users sorted, per-user model minus baseline), each row's per-user values averaged over its seeds."""
    averaged = {label: seed_averaged(groups[label], "test", metric) for label in (model, baseline)}
    if any(v is None for v in averaged.values()):
        raise SystemExit(f"no per-user '{metric}' in the runs of {model} or {baseline}")
    (users, ours), (other_users, theirs) = averaged[model], averaged[baseline]  # type: ignore[misc]
    ours, theirs = align(users, ours, other_users, theirs)
    return np.sort(users), ours - theirs


def family(samples: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, PairedTest]:
    """Paired tests of a per bucket against b per bucket, Holm over the buckets."""
    return correct_family({name: paired_test(a, b) for name, (a, b) in samples.items() if len(a) >= 2})


def fmt(test: PairedTest | None) -> str:
    return "-" if test is None else f"{test.mean_diff:+.4f} (t {test.t_p_holm:.2g}, W {test.w_p_holm:.2g}; {test.n_users})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("long", type=Path, help="suite output directory at the long max length")
    parser.add_argument("short", type=Path, help="suite output directory at the short max length")
    parser.add_argument("--model", default="findrec-mmd")
    parser.add_argument("--metric", default="ndcg@20")
    parser.add_argument("--buckets", default="20,50,200")
    parser.add_argument("--same-seeds", action="store_true", help="use each row's seeds finished in both suites only")
    args = parser.parse_args()
    edges = [int(e) for e in args.buckets.split(",")]
    names = bucket_labels(edges)
    (dataset, long_rows), (short_dataset, short_rows) = rows(args.long), rows(args.short)
    if args.same_seeds:  # each row at the seeds it finished at both lengths
        for label in set(long_rows) & set(short_rows):
            both = {r.seed for r in long_rows[label]} & {r.seed for r in short_rows[label]}
            long_rows[label] = [r for r in long_rows[label] if r.seed in both]
            short_rows[label] = [r for r in short_rows[label] if r.seed in both]
    if dataset != short_dataset:
        raise SystemExit(f"the suites are on different datasets: {dataset} vs {short_dataset}")
    print(f"{dataset}, test {args.metric}: {args.model} minus each baseline, per bucket of history length")
    print(f"long: {args.long} (max length {long_rows[args.model][0].config['model'].get('max_len')})")
    print(f"short: {args.short} (max length {short_rows[args.model][0].config['model'].get('max_len')})")
    for label in dict.fromkeys([*long_rows, *short_rows]):
        where = [
            f"{'long' if r is long_rows else 'short'} seeds {','.join(str(run.seed) for run in r[label])}"
            for r in (long_rows, short_rows)
            if label in r
        ]
        print(f"  {label}: {', '.join(where)}")
    print("cells: mean per-user difference (t-test p, Wilcoxon p, Holm over the buckets; users); all: one test, raw p")
    lengths = history_lengths(long_rows[args.model][0], "test")
    print(f"\neach model at the long vs the short max length (long - short; mean {args.metric} per bucket, long / short)")
    print(f"| model | {' | '.join(names)} | all |")
    print("|---|" + "---:|" * (len(names) + 1))
    for label in [label for label in long_rows if label in short_rows]:
        users, long_values = seed_averaged(long_rows[label], "test", args.metric)  # type: ignore[misc]
        short_users, short_values = seed_averaged(short_rows[label], "test", args.metric)  # type: ignore[misc]
        long_values, short_values = align(users, long_values, short_users, short_values)
        bucket = np.digitize(lengths[np.sort(users)], edges)
        found = family({n: (long_values[bucket == b], short_values[bucket == b]) for b, n in enumerate(names)})
        cells = [
            f"{long_values[bucket == b].mean():.4f} / {short_values[bucket == b].mean():.4f}: {fmt(found.get(n))}"
            for b, n in enumerate(names)
        ]
        w = paired_test(long_values, short_values)
        print(f"| {label} | {' | '.join(cells)} | {w.mean_diff:+.4f} (t {w.t_p:.2g}, W {w.w_p:.2g}) |")
    for baseline in [label for label in dict.fromkeys([*long_rows, *short_rows]) if label != args.model]:
        found_in = {tag: rows_ for tag, rows_ in (("long", long_rows), ("short", short_rows)) if baseline in rows_}
        per_length = {tag: margins(rows_, args.model, baseline, args.metric) for tag, rows_ in found_in.items()}
        users = next(iter(per_length.values()))[0]
        margin = {tag: align(users, per_length[next(iter(per_length))][1], u, m)[1] for tag, (u, m) in per_length.items()}
        history = lengths[users]
        bucket = np.digitize(history, edges)
        pairs = {f"margin, {tag}": (m, np.zeros_like(m)) for tag, m in margin.items()}
        if len(margin) == 2:
            pairs["change long - short"] = (margin["long"], margin["short"])
        print(f"\nvs {baseline}" + ("" if len(margin) == 2 else f" (at the {next(iter(margin))} max length only)"))
        print(f"| quantity | {' | '.join(f'{n} ({(bucket == b).sum()})' for b, n in enumerate(names))} | all |")
        print("|---|" + "---:|" * (len(names) + 1))
        for quantity, (a, r) in pairs.items():
            found = family({n: (a[bucket == b], r[bucket == b]) for b, n in enumerate(names)})
            w = paired_test(a, r)
            cells = [fmt(found.get(n)) for n in names]
            print(f"| {quantity} | {' | '.join(cells)} | {w.mean_diff:+.4f} (t {w.t_p:.2g}, W {w.w_p:.2g}) |")
        for tag, m in margin.items():
            rho, p = stats.spearmanr(history, m)
            print(f"trend, {tag}: Spearman rho(history length, per-user margin) = {rho:+.3f} (p {p:.2g}, {len(m)} users)")


if __name__ == "__main__":
    main()
