"""Metrics by bucket of user history length: does a model's margin grow with the length of the history?

``bucket_table(groups, split, metric, edges)`` reads each run's per-user metric file
(``per_user_<split>.npz``) and the length of every user's history before that split (train items for
``valid``; train + valid items for ``test``, rebuilt from the run's saved config), cuts the users at
``edges`` (e.g. ``[20, 50, 200]``: <20, 20-49, 50-199, >=200) and averages the metric per bucket and
model (per-user values averaged over seeds first). Within each bucket every model is tested against the
bucket's best (or ``baseline``) with the paired t-test and Wilcoxon test over that bucket's users, Holm-corrected
over the bucket's comparisons: a bucket's margin is read with its own test, not from the whole table's. Runs on
different splits of one dataset (e.g. Pop on a ratio split beside sequential models on leave-one-out) put a user
in their own buckets; a test then pairs the users that both models put in the bucket.
``modalrec report --buckets 20,50,200`` writes it to ``buckets.md``.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field

import numpy as np

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.dataset import TRAIN, VALID
from modalrec.errors import ModalRecError
from modalrec.experiments.collect import RunRecord
from modalrec.experiments.significance import PairedTest, align, correct_family, paired_test
from modalrec.experiments.tables import T_MARK, W_MARK, best_value, seed_averaged
from modalrec.models.base import get_model_class
from modalrec.train.experiment import prepare_data


@dataclass
class BucketTable:
    """One dataset's metric by history-length bucket: per model the bucket means and the paired tests against
    each bucket's reference (the best, or the baseline)."""

    dataset: str
    split: str
    metric: str
    edges: list[int]
    counts: list[int]  # users per bucket
    means: dict[str, list[float]] = field(default_factory=dict)  # label -> per-bucket mean (NaN: empty bucket)
    reference: list[str | None] = field(default_factory=list)  # per bucket: the label the tests compare with
    tests: dict[str, list[PairedTest | None]] = field(default_factory=dict)  # label -> per-bucket test (None: none)
    alpha: float = 0.05


def bucket_labels(edges: list[int]) -> list[str]:
    """'<20', '20-49', ..., '>=200' for edges [20, 50, 200]."""
    if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < 1:
        raise ModalRecError(f"--buckets must be increasing positive history lengths, e.g. 20,50,200; got {edges}")
    inner = [f"{a}-{b - 1}" for a, b in zip(edges, edges[1:])]
    return [f"<{edges[0]}", *inner, f">={edges[-1]}"]


def history_lengths(run: RunRecord, split: str, cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Per user index, the number of items known before ``split`` (the run's data, rebuilt from its config)."""
    key = json.dumps(run.config.get("dataset", {}), sort_keys=True, default=str) + split
    if cache is not None and key in cache:
        return cache[key]
    cfg = resolve(config_file=run.path / "config.yaml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ds, _ = prepare_data(cfg, get_model_class(cfg.model_name).family)
    ctx = DataContext.from_dataset(ds)
    parts = [TRAIN] if split == "valid" else [TRAIN, VALID]
    lengths = sum(np.diff(ctx.histories[p].indptr) for p in parts)
    if cache is not None:
        cache[key] = lengths
    return lengths


def bucket_table(
    dataset: str,
    groups: dict[str, list[RunRecord]],
    split: str,
    metric: str,
    edges: list[int],
    alpha: float = 0.05,
    baseline: str | None = None,
) -> BucketTable:
    """Per model label and bucket: the metric averaged over the bucket's users (per-user values averaged over
    the seeds), and each model's paired tests against the bucket's best (``baseline`` where given), over the
    users in that bucket for both models (the same users when the two share their data and split)."""
    labels = bucket_labels(edges)
    cache: dict[str, np.ndarray] = {}
    users: dict[str, np.ndarray] = {}
    values: dict[str, np.ndarray] = {}
    buckets: dict[str, np.ndarray] = {}  # label -> bucket of each of its users, 0 .. len(edges)
    for label, runs in groups.items():
        averaged = seed_averaged(runs, split, metric)
        if averaged is None:
            names = ", ".join(sorted(runs[0].per_user(split)[1]))
            raise ModalRecError(f"{runs[0].path} has no per-user '{metric}'; choose one of {names}")
        users[label], values[label] = averaged
        buckets[label] = np.digitize(history_lengths(runs[0], split, cache)[users[label]], edges)
    first = next(iter(groups))
    counts = [int((buckets[first] == b).sum()) for b in range(len(labels))]
    table = BucketTable(dataset, split, metric, list(edges), counts, alpha=alpha)
    table.means = {
        label: [float(v[buckets[label] == b].mean()) if (buckets[label] == b).any() else float("nan") for b in range(len(labels))]
        for label, v in values.items()
    }
    table.tests = {label: [None] * len(labels) for label in values}
    for b in range(len(labels)):
        top = best_value(metric, [m[b] for m in table.means.values() if not np.isnan(m[b])])
        if top is None:
            table.reference.append(None)
            continue
        reference = baseline if baseline in values else next(label for label, m in table.means.items() if m[b] == top)
        table.reference.append(reference)
        family: dict[str, PairedTest] = {}
        for label in values:
            if label == reference:
                continue
            ref_values, other = align(users[reference], values[reference], users[label], values[label])
            ref_bucket, other_bucket = align(users[reference], buckets[reference], users[label], buckets[label])
            both = (ref_bucket == b) & (other_bucket == b)
            if both.sum() >= 2:
                family[label] = paired_test(other[both], ref_values[both])
        for label, test in correct_family(family).items():  # Holm over the bucket's comparisons
            table.tests[label][b] = test
    return table


def _marks(test: PairedTest | None, alpha: float) -> str:
    if test is None:
        return ""
    return (T_MARK if test.t_p_holm < alpha else "") + (W_MARK if test.w_p_holm < alpha else "")


def to_markdown(table: BucketTable) -> str:
    """The bucket means (best per bucket in bold, marks against the bucket's reference) and, per model and
    bucket, the mean per-user difference from the reference with its Holm-corrected p-values."""
    labels = bucket_labels(table.edges)
    head = " | ".join(f"{name} ({n:,} users)" for name, n in zip(labels, table.counts))
    cols = "|---|" + "---:|" * len(labels)
    lines = [f"### {table.dataset}: {table.split} {table.metric} by history length", "", f"| model | {head} |", cols]
    best = [best_value(table.metric, [m[b] for m in table.means.values() if not np.isnan(m[b])]) for b in range(len(labels))]
    for label, means in table.means.items():
        cells = [
            "-" if np.isnan(v) else (f"**{v:.4f}**" if v == best[b] else f"{v:.4f}") + _marks(table.tests[label][b], table.alpha)
            for b, v in enumerate(means)
        ]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    lines += [
        "",
        f"Per-user values averaged over seeds. {T_MARK} / {W_MARK}: differs from the bucket's reference with a paired "
        f"t-test / Wilcoxon signed-rank test over the bucket's users (Holm-corrected over the bucket's comparisons, "
        f"p < {table.alpha}); no test in a bucket of fewer than 2 users.",
        "",
        f"Difference from the reference per bucket (mean per-user {table.metric}; t-test p / Wilcoxon p, Holm):",
        "",
        f"| model | {' | '.join(labels)} |",
        cols,
    ]
    for label in table.means:
        cells = []
        for b, test in enumerate(table.tests[label]):
            if table.reference[b] == label:
                cells.append("(reference)")
            elif test is None:
                cells.append("-")
            else:
                cells.append(f"{test.mean_diff:+.4f} ({test.t_p_holm:.2g} / {test.w_p_holm:.2g})")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"
