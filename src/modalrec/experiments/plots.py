"""PNG plots of a comparison (matplotlib, the ``report`` extra; imported only when plots are drawn).

Per dataset: validation curves per epoch, metric vs cut-off K, accuracy vs training time, the
per-user metric distributions of the split, and (for models that record them) the per-epoch training
loss terms and model diagnostics. Across datasets: metrics against a swept config value (``--sweep``).
Figures are built with ``matplotlib.figure.Figure`` (no pyplot state), so drawing is safe inside a
long-lived process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modalrec.errors import ModalRecError
from modalrec.experiments.collect import RunRecord
from modalrec.experiments.sweep import Sweep
from modalrec.experiments.tables import seed_averaged


def _figure(width: float = 6.4, height: float = 4.2) -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ModalRecError("plots need matplotlib: pip install 'modalrec[report]'") from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _colours(labels: list[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {label: cmap(i % cmap.N) for i, label in enumerate(labels)}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


def validation_curves(groups: dict[str, list[RunRecord]], metric: str, path: Path, title: str) -> Path:
    """Validation ``metric`` per epoch: one line per run (seeds share a colour); closed-form models, which
    validate once, are horizontal dashed lines."""
    fig = _figure()
    ax = fig.add_subplot()
    colours = _colours(list(groups))
    max_epoch = max((h["epoch"] for runs in groups.values() for r in runs for h in r.history), default=1)
    for label, runs in groups.items():
        for i, run in enumerate(runs):
            points = [(h["epoch"], h["valid"][metric]) for h in run.history if metric in h.get("valid", {})]
            if not points:
                continue
            x, y = zip(*points)
            name = label if i == 0 else None
            if len(points) == 1:
                ax.axhline(y[0], color=colours[label], linestyle="--", linewidth=1, label=name)
            else:
                ax.plot(
                    x, y, color=colours[label], marker="." if len(points) < 30 else None, linewidth=1.2, label=name, alpha=0.9
                )
                ax.plot([run.results.get("best_epoch", x[-1])], [max(y)], color=colours[label], marker="o", markersize=5)
    from matplotlib.ticker import MaxNLocator

    ax.set_xlim(0.5, max(max_epoch, 1) + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel=f"valid {metric}", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def metric_vs_k(groups: dict[str, list[RunRecord]], families: list[str], split: str, path: Path, title: str) -> Path:
    """Each family (recall, ndcg, ...) against its cut-offs, seed means with std error bars."""
    fig = _figure(4.2 * len(families), 3.8)
    axes = fig.subplots(1, len(families), squeeze=False)[0]
    colours = _colours(list(groups))
    for ax, family in zip(axes, families):
        for label, runs in groups.items():
            keys = sorted((int(k.split("@")[1]), k) for k in runs[0].summary(split) if k.split("@")[0] == family and "@" in k)
            if not keys:
                continue
            ks = [k for k, _ in keys]
            values = np.array([[r.summary(split).get(key, np.nan) for _, key in keys] for r in runs], dtype=float)
            std = values.std(axis=0, ddof=1) if len(runs) > 1 else None
            ax.errorbar(ks, values.mean(axis=0), yerr=std, color=colours[label], marker="o", markersize=3, capsize=2, label=label)
            ax.set_xticks(ks)
        ax.set(xlabel="K", ylabel=f"{split} {family}@K")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def accuracy_vs_time(groups: dict[str, list[RunRecord]], metric: str, split: str, path: Path, title: str) -> Path:
    """One point per run: training seconds (log scale) against the split's ``metric``."""
    fig = _figure()
    ax = fig.add_subplot()
    colours = _colours(list(groups))
    for label, runs in groups.items():
        x = [max(float(r.results.get("train_seconds", 0.0)), 1e-3) for r in runs]
        y = [r.summary(split).get(metric, np.nan) for r in runs]
        ax.scatter(x, y, color=colours[label], label=label, s=28)
        centre = (float(np.exp(np.mean(np.log(x)))), float(np.nanmean(y)))  # geometric mean: the axis is logarithmic
        ax.annotate(label, centre, fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="training time (s, log scale)", ylabel=f"{split} {metric}", title=title)
    ax.grid(alpha=0.3, which="both")
    return _save(fig, path)


def per_user_distribution(groups: dict[str, list[RunRecord]], metric: str, split: str, path: Path, title: str) -> Path:
    """Box plots of the per-user ``metric`` (averaged over seeds), mean marked; the share of users at 0
    is in each label, since top-K metrics are zero for most users."""
    fig = _figure(max(6.4, 0.9 * len(groups) + 2), 4.2)
    ax = fig.add_subplot()
    data, names = [], []
    for label, runs in groups.items():
        averaged = seed_averaged(runs, split, metric)
        if averaged is None:
            continue
        values = averaged[1]
        data.append(values)
        names.append(f"{label}\n{np.mean(values == 0):.0%} at 0")
    if not data:
        raise ModalRecError(f"no run has per-user '{metric}' values for {split}")
    ax.boxplot(data, showmeans=True, showfliers=False, meanprops={"marker": "D", "markersize": 4})
    ax.set_xticks(range(1, len(names) + 1), names, fontsize=7)
    ax.set(ylabel=f"per-user {split} {metric}", title=title)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


# per-epoch bookkeeping in metrics.jsonl that is not a loss term
_NOT_TERMS = ("epoch", "seconds", "examples_per_s", "steps", "valid", "diagnostics")


def has_diagnostics(groups: dict[str, list[RunRecord]]) -> bool:
    """Whether any run recorded model diagnostics (``Recommender.diagnostics``) in its metrics.jsonl."""
    return any("diagnostics" in h for runs in groups.values() for r in runs for h in r.history)


def diagnostic_curves(groups: dict[str, list[RunRecord]], path: Path, title: str) -> Path:
    """One panel per training loss term (``train <term>``, the epoch mean) and per model diagnostic, against
    the epoch; one line per run (seeds share a colour). Only runs that recorded diagnostics are drawn."""
    series: dict[str, dict[str, list[tuple[list[int], list[float]]]]] = {}
    for label, runs in groups.items():
        for run in runs:
            if not any("diagnostics" in h for h in run.history):
                continue
            values: dict[str, list[tuple[int, float]]] = {}
            for h in run.history:
                named = {f"train {k}": v for k, v in h.items() if k not in _NOT_TERMS and isinstance(v, (int, float))}
                named.update(h.get("diagnostics", {}))
                for key, value in named.items():
                    values.setdefault(key, []).append((h["epoch"], float(value)))
            for key, points in values.items():
                epochs, measured = zip(*points)
                series.setdefault(key, {}).setdefault(label, []).append((list(epochs), list(measured)))
    if not series:
        raise ModalRecError("no run recorded diagnostics")
    keys = sorted(series, key=lambda k: (not k.startswith("train "), k))
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig = _figure(3.6 * cols, 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colours = _colours(list(groups))
    from matplotlib.ticker import MaxNLocator

    for ax, key in zip(axes, keys):
        for label, lines in series[key].items():
            for i, (x, y) in enumerate(lines):
                ax.plot(
                    x,
                    y,
                    color=colours[label],
                    marker="." if len(x) < 30 else None,
                    linewidth=1.2,
                    label=label if i == 0 else None,
                )
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return _save(fig, path)


def sweep_curves(sweep: Sweep, path: Path, title: str) -> Path:
    """One panel per metric: each model's mean over seeds (bars: sample std) against the swept config value."""
    n = len(sweep.metrics)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = _figure(4.2 * cols, 3.4 * rows)
    colours = _colours(list(sweep.runs))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, metric in zip(axes, sweep.metrics):
        for line in sweep.runs:
            points = [(v, p) for v in sweep.values if (p := sweep.mean_std(line, v, metric)) is not None]
            x = [v for v, _ in points]
            ax.errorbar(
                x,
                [p[0] for _, p in points],
                yerr=[p[1] for _, p in points],
                color=colours[line],
                marker="o",
                capsize=3,
                label=line,
            )
        ax.set(xlabel=sweep.key, ylabel=f"{sweep.split} {metric}")
        ax.grid(alpha=0.3)
    for ax in axes[n:]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(title)
    return _save(fig, path)
