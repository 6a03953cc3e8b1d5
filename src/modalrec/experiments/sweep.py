"""A metric against one config setting varied across runs (``modalrec report --sweep KEY``).

For example ``--sweep dataset.feature_noise`` over a suite whose datasets differ only in the share p of items
with noisy features: per model, the metric at every value of the key (seeds averaged) and its change from the
smallest value. With a baseline model (``--baseline LABEL``) each other model's change is tested against the
baseline's change at the same value, paired over users (the users are the same at every value, so the per-user
change of one model minus that of the baseline is the paired sample; t-test and Wilcoxon, Holm-corrected over the
comparisons at one value): "does model A degrade less than the baseline?" as a test, not a reading of two means.
Written to ``sweep.md`` and ``plots/sweep-<key>.png``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modalrec.errors import ModalRecError
from modalrec.experiments.collect import RunRecord
from modalrec.experiments.significance import PairedTest, align, compare_to_reference, seed_stats
from modalrec.experiments.tables import T_MARK, W_MARK, seed_averaged


@dataclass
class Sweep:
    """Per line (a model label, prefixed by its dataset when runs of several datasets are swept) and value."""

    key: str
    split: str
    metrics: list[str]
    values: list[float]  # the key's values, increasing
    runs: dict[str, dict[float, list[RunRecord]]] = field(default_factory=dict)  # line -> value -> seeds
    baseline: str | None = None
    # metric -> line -> value -> the test of (line's per-user change from values[0]) vs its dataset's baseline's
    tests: dict[str, dict[str, dict[float, PairedTest]]] = field(default_factory=dict)

    def mean_std(self, line: str, value: float, metric: str) -> tuple[float, float, int] | None:
        """(mean, std over seeds, seeds) of ``metric`` at ``value``, or None when the line has no run there."""
        runs = self.runs[line].get(value)
        if not runs:
            return None
        mean, std = seed_stats([float(r.summary(self.split)[metric]) for r in runs])
        return mean, std, len(runs)


def sweep_value(run: RunRecord, key: str) -> float:
    """The number at dotted ``key`` of the run's saved config."""
    node: Any = run.config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ModalRecError(f"--sweep {key}: {run.path / 'config.yaml'} has no such key")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float) or not math.isfinite(node):
        raise ModalRecError(f"--sweep {key}: {run.path / 'config.yaml'} has {node!r} there, not a finite number")
    return float(node)


def build_sweep(records: list[RunRecord], key: str, split: str, metrics: list[str], baseline: str | None = None) -> Sweep:
    """Group the runs by line and value of ``key``; with ``baseline`` (a line), test every line's changes against it."""
    names = {_data_name(r) for r in records}
    runs: dict[str, dict[float, list[RunRecord]]] = {}
    for r in records:
        runs.setdefault(_line(r, len(names) > 1), {}).setdefault(sweep_value(r, key), []).append(r)
    values = sorted({v for by_value in runs.values() for v in by_value})
    if len(values) < 2:
        raise ModalRecError(f"--sweep {key}: every run has the same value ({values[0]:g}); nothing to plot against")
    for line, by_value in runs.items():
        for value, seeds in by_value.items():
            if len({r.seed for r in seeds}) < len(seeds):
                raise ModalRecError(f"--sweep {key}: {line} has two runs of one seed at {value:g} ({seeds[0].path}, ...)")
    for r in records:
        missing = [m for m in metrics if m not in r.summary(split)]
        if missing:
            raise ModalRecError(f"{r.path}/results.json has no {split} {', '.join(missing)}")
    if baseline is not None and baseline not in {r.label for r in records}:
        raise ModalRecError(f"--baseline {baseline} is not a swept model; choose one of {', '.join(runs)}")
    sweep = Sweep(key, split, metrics, values, runs, baseline)
    if baseline is not None:
        for name in sorted(names):  # each dataset's lines against that dataset's baseline
            lines = {_line(r, len(names) > 1) for r in records if _data_name(r) == name}
            base = next((_line(r, len(names) > 1) for r in records if _data_name(r) == name and r.label == baseline), None)
            for metric in metrics:
                if base is not None:
                    sweep.tests.setdefault(metric, {}).update(_change_tests(sweep, metric, base, lines))
    return sweep


def _data_name(run: RunRecord) -> str:
    """The dataset a run was trained on, before any per-run variation (the suite's dataset label otherwise)."""
    return str(run.config.get("dataset", {}).get("name", run.dataset))


def _line(run: RunRecord, several: bool) -> str:
    return f"{_data_name(run)}: {run.label}" if several else run.label


def _change(
    runs: dict[float, list[RunRecord]], start: float, value: float, split: str, metric: str
) -> tuple[np.ndarray, np.ndarray] | None:
    """(users, per-user metric at ``value`` minus at ``start``, seeds averaged), or None without both or per-user files."""
    if start not in runs or value not in runs:
        return None
    first, last = seed_averaged(runs[start], split, metric), seed_averaged(runs[value], split, metric)
    if first is None or last is None:
        return None
    return first[0], align(first[0], first[1], last[0], last[1])[1] - first[1]


def _change_tests(sweep: Sweep, metric: str, baseline: str, lines: set[str]) -> dict[str, dict[float, PairedTest]]:
    """Per line and value > the first: the line's per-user change vs the baseline line's (Holm per value)."""
    start = sweep.values[0]
    out: dict[str, dict[float, PairedTest]] = {}
    for value in sweep.values[1:]:
        changes = {}
        for line in sorted(lines):
            by_value = sweep.runs[line]
            change = _change(by_value, start, value, sweep.split, metric)
            if change is not None:
                changes[line] = change
        if baseline not in changes or len(changes) < 2:
            continue
        users = changes[baseline][0]
        aligned = {line: align(users, changes[baseline][1], u, v)[1] for line, (u, v) in changes.items()}
        for line, test in compare_to_reference(aligned, baseline).items():
            out.setdefault(line, {})[value] = test
    return out


def to_markdown(sweep: Sweep, alpha: float) -> str:
    """One table per metric: the value at every point and the change from the first, tests below."""
    start = sweep.values[0]
    parts = []
    for metric in sweep.metrics:
        head = " | ".join(f"{sweep.key}={v:g}" for v in sweep.values)
        lines = [f"### {sweep.split} {metric} vs {sweep.key}", "", f"| model | {head} |", "|---|" + "---:|" * len(sweep.values)]
        tests = sweep.tests.get(metric, {})
        for line in sweep.runs:
            cells = []
            for value in sweep.values:
                point = sweep.mean_std(line, value, metric)
                if point is None:
                    cells.append("-")
                    continue
                mean, std, n = point
                text = f"{mean:.4f}" + (f" ± {std:.4f}" if n > 1 else "")
                first = sweep.mean_std(line, start, metric)
                if value != start and first is not None:
                    delta = mean - first[0]
                    rel = f", {100 * delta / first[0]:+.1f} %" if first[0] else ""
                    test = tests.get(line, {}).get(value)
                    marks = (
                        ""
                        if test is None
                        else (T_MARK if test.t_p_holm < alpha else "") + (W_MARK if test.w_p_holm < alpha else "")
                    )
                    text += f" ({delta:+.4f}{rel}){marks}"
                cells.append(text)
            lines.append(f"| {line} | {' | '.join(cells)} |")
        below = [
            f"- {line} vs {sweep.baseline}, change {start:g} -> {value:g}: mean per-user difference {test.mean_diff:+.4f} "
            f"over {test.n_users:,} users, t-test p = {test.t_p_holm:.3g}, Wilcoxon p = {test.w_p_holm:.3g} (Holm)"
            for line, by_value in tests.items()
            for value, test in by_value.items()
        ]
        parts.append("\n".join(lines + ([""] + below if below else [])))
    legend = f"Mean over seeds (± sample std when there are several); in brackets the change from {sweep.key}={start:g}." + (
        f" {T_MARK} / {W_MARK}: the model's per-user change differs from {sweep.baseline}'s (paired t-test / Wilcoxon over "
        f"users, Holm-corrected over the models at each value, p < {alpha})."
        if sweep.baseline
        else ""
    )
    return "\n\n".join(parts) + f"\n\n{legend}\n"
