"""Comparison tables: runs grouped by (dataset, label), mean and std over seeds, the best per column
marked, significance marks against the best; as Markdown, CSV (long format) and rich (terminal).

Marks: the best value of a column is bold; a value followed by ``*`` differs from the best with a
Holm-corrected paired t-test p < alpha, by ``†`` likewise with the Wilcoxon signed-rank test. Metrics
without per-user values (coverage, gini, average popularity) get no marks. For ``gini`` and
``avg_popularity`` lower is better (more diverse / less popular lists).

The protocol is part of every table: the header names the selection metric (and any other metric a row was
tuned on); each row gives its seeds (marked below the protocol's 3), its best and last epoch, a ``‡`` when a
seed hit its epoch cap while still improving, its training compute (CPU-seconds over all threads, and wall
seconds), how it was tuned (budget, searched keys, sampler seed) and, when the suite gives one, a reference
value with its source.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from modalrec.experiments.collect import RunRecord
from modalrec.experiments.significance import (
    PairedTest,
    align,
    compare_to_reference,
    seed_stats,
)
from modalrec.train.rundir import write_text_atomic

LOWER_IS_BETTER = ("gini", "avg_popularity")  # beyond-accuracy metrics where less means more diverse / novel
T_MARK, W_MARK = "*", "†"
CAP_MARK = "‡"  # a seed hit its epoch cap while still improving
MIN_SEEDS = 3  # the protocol's training seeds per row (the default of a suite)


def lower_is_better(metric: str) -> bool:
    return metric.split("@")[0] in LOWER_IS_BETTER


def best_value(metric: str, values: list[float]) -> float | None:
    """The best of ``values`` for ``metric`` (max, or min where lower is better)."""
    return ((min if lower_is_better(metric) else max)(values)) if values else None


def rich_metric_table(title: str, rows: dict[str, dict[str, float]], columns: list[str] | None = None) -> Table:
    """A terminal table of runs (rows) x metrics (columns), best value per column in bold."""
    columns = columns or sorted({k for r in rows.values() for k, v in r.items() if isinstance(v, (int, float))})
    table = Table(title=title)
    table.add_column("run")
    for column in columns:
        table.add_column(column, justify="right")
    best = {c: best_value(c, [r[c] for r in rows.values() if isinstance(r.get(c), (int, float))]) for c in columns}
    for name, row in rows.items():
        cells = []
        for c in columns:
            value = row.get(c)
            if not isinstance(value, (int, float)):
                cells.append("-")
                continue
            text = f"{value:.4f}"
            cells.append(f"[bold]{text}[/bold]" if value == best[c] and len(rows) > 1 else text)
        table.add_row(name, *cells)
    return table


@dataclass
class Cell:
    """One (label, metric) entry: the seeds' mean and std, whether it is the best, its test vs the best."""

    mean: float
    std: float
    n_seeds: int
    best: bool = False
    test: PairedTest | None = None

    def marks(self, alpha: float) -> str:
        if self.test is None:
            return ""
        return (T_MARK if self.test.t_p_holm < alpha else "") + (W_MARK if self.test.w_p_holm < alpha else "")


@dataclass
class Comparison:
    """The table of one dataset and split."""

    dataset: str
    split: str
    metrics: list[str]
    alpha: float
    cells: dict[str, dict[str, Cell | None]] = field(default_factory=dict)  # label -> metric -> cell
    reference: dict[str, str] = field(default_factory=dict)  # metric -> label the tests compare with (best or baseline)
    seconds: dict[str, tuple[float, float]] = field(default_factory=dict)  # label -> train seconds mean, std
    n_parameters: dict[str, int] = field(default_factory=dict)
    n_seeds: dict[str, int] = field(default_factory=dict)
    select: str = ""  # the validation metric that selected the checkpoints ("a / b" when runs differ)
    cpu_seconds: dict[str, float | None] = field(default_factory=dict)  # label -> mean train CPU-seconds (None: not recorded)
    epochs: dict[str, str] = field(default_factory=dict)  # label -> "best/run" epochs (means over seeds), or "closed form"
    capped: dict[str, int] = field(default_factory=dict)  # label -> seeds that hit the epoch cap while still improving
    tuning: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # label -> the suite's tuning record
    searches: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # label -> the finished search's outcome
    references: dict[str, dict[str, Any] | None] = field(default_factory=dict)  # label -> {value, metric, source}
    min_seeds: int = MIN_SEEDS
    baseline: str | None = None  # the label the tests compare with where it has a value (else the best)

    @property
    def labels(self) -> list[str]:
        return list(self.cells)

    @property
    def tuned_elsewhere(self) -> dict[str, str]:
        """label -> tuning metric, for rows tuned on another metric than the table's selection metric."""
        return {
            label: str(t["metric"])
            for label, t in self.tuning.items()
            if t is not None and t.get("trials") and str(t.get("metric", self.select)) != self.select
        }

    def title(self) -> str:
        """The table's heading: dataset, split, the selection metric and any other tuning metric."""
        text = f"{self.dataset} ({self.split}) · selection metric: valid {self.select}"
        others = self.tuned_elsewhere
        if others:
            text += " · tuned on another metric: " + ", ".join(f"{label} on valid {metric}" for label, metric in others.items())
        return text

    def tuning_text(self, label: str) -> str:
        """The row's tuning cell: '20 trials × 4 keys (TPE seed 0)', a declared fixed point (tuned elsewhere, or
        declared untuned with 0 trials), or 'none' (nothing declared)."""
        tuning = self.tuning.get(label)
        if tuning and tuning.get("trials") == 0:
            return f"no tuning (fixed point: {tuning.get('source')})"
        if not tuning or not tuning.get("trials"):
            return "none"
        if tuning.get("source") == "this suite":
            sampler = str(tuning.get("sampler", "tpe")).upper() if tuning.get("sampler") != "grid" else "grid"
            n_keys = len(tuning.get("params", []))
            text = (
                f"{tuning['trials']} trials × {n_keys} key{'s' if n_keys != 1 else ''} ({sampler} seed "
                f"{tuning.get('sampler_seed')})"
            )
        else:
            text = f"fixed point from {tuning['trials']} trials ({tuning.get('source')})"
        if label in self.tuned_elsewhere:
            text += f" on valid {tuning['metric']} ≠ selection"
        return text

    def reference_text(self, label: str) -> str:
        reference = self.references.get(label)
        return "-" if not reference else f"{reference['value']:.4f} ({reference['metric']})"


def default_metrics(records: list[RunRecord], split: str = "test") -> list[str]:
    """Recall and NDCG at every cut-off of the runs, plus each run's selection metric."""
    ks = sorted({int(k.split("@")[1]) for r in records for k in r.results.get(split, {}) if "@" in k})
    metrics = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks if any(f"{m}@{k}" in r.results.get(split, {}) for r in records)]
    for r in records:
        if r.select not in metrics and r.select in r.results.get(split, {}):
            metrics.append(r.select)
    return metrics


def seed_averaged(runs: list[RunRecord], split: str, metric: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(users, per-user metric averaged over the seeds), or None when the runs have no per-user values."""
    users, per_user = runs[0].per_user(split)
    if metric not in per_user:
        return None
    order = np.argsort(users, kind="stable")
    total = per_user[metric].astype(np.float64)[order]
    for run in runs[1:]:
        other_users, other = run.per_user(split)
        _, aligned = align(users, per_user[metric], other_users, other[metric])
        total = total + aligned
    return users[order], total / len(runs)


def build_comparison(
    dataset: str,
    groups: dict[str, list[RunRecord]],
    split: str,
    metrics: list[str],
    alpha: float,
    baseline: str | None = None,
) -> Comparison:
    """Mean/std over seeds per label and metric, the best per metric, paired tests against it (against
    ``baseline`` instead where that label has a value, e.g. the full model of an ablation table)."""
    table = Comparison(dataset, split, list(metrics), alpha, baseline=baseline)
    selects = list(dict.fromkeys(r.select for runs in groups.values() for r in runs))
    table.select = " / ".join(selects)
    table.min_seeds = max(
        (int(r.protocol.get("min_seeds", MIN_SEEDS)) for runs in groups.values() for r in runs), default=MIN_SEEDS
    )
    for label, runs in groups.items():
        table.n_seeds[label] = len(runs)
        table.seconds[label] = seed_stats([float(r.results.get("train_seconds", np.nan)) for r in runs])
        cpu = [r.cpu_seconds for r in runs if r.cpu_seconds is not None]
        table.cpu_seconds[label] = float(np.mean(cpu)) if len(cpu) == len(runs) else None
        table.capped[label] = sum(r.capped_improving for r in runs)
        trained = any("loss" in record for r in runs for record in r.history)
        best, run = (np.mean([float(r.results.get(k, 0)) for r in runs]) for k in ("best_epoch", "epochs_run"))
        table.epochs[label] = f"{best:.0f}/{run:.0f}" if trained else "closed form"
        table.tuning[label] = runs[0].entry.get("tuning")
        table.searches[label] = runs[0].entry.get("search")
        table.references[label] = runs[0].entry.get("reference")
        table.n_parameters[label] = int(runs[0].results.get("n_parameters", 0))
        row: dict[str, Cell | None] = {}
        for metric in metrics:
            values = [v for r in runs if (v := r.summary(split).get(metric)) is not None]
            row[metric] = Cell(*seed_stats(values), len(runs)) if len(values) == len(runs) else None
        table.cells[label] = row
    for metric in metrics:
        present = {label: cell for label, row in table.cells.items() if (cell := row[metric]) is not None}
        top = best_value(metric, [c.mean for c in present.values()])
        if top is None:
            continue
        for cell in present.values():
            cell.best = cell.mean == top and len(table.cells) > 1
        reference = baseline if baseline in present else next(label for label, c in present.items() if c.mean == top)
        table.reference[metric] = reference
        samples = {}
        for label in present:
            averaged = seed_averaged(groups[label], split, metric)
            if averaged is None:
                break
            samples[label] = averaged
        else:
            if len(samples) > 1:
                ref_users = samples[reference][0]
                aligned = {lab: align(ref_users, samples[reference][1], u, v)[1] for lab, (u, v) in samples.items()}
                for label, test in compare_to_reference(aligned, reference).items():
                    present[label].test = test
    return table


def _fmt(cell: Cell | None, alpha: float, bold: tuple[str, str]) -> str:
    if cell is None:
        return "-"
    text = f"{cell.mean:.4f}" + (f" ± {cell.std:.4f}" if cell.n_seeds > 1 else "")
    if cell.best:
        text = f"{bold[0]}{text}{bold[1]}"
    return text + cell.marks(alpha)


def legend(alpha: float, min_seeds: int = MIN_SEEDS, baseline: str | None = None) -> str:
    other = "the best" if baseline is None else f"{baseline} (the best where {baseline} has no value)"
    return (
        f"Mean over seeds (± sample std when there are several). Best per column in bold. "
        f"{T_MARK}: differs from {other} with a paired t-test over users, {W_MARK}: with a Wilcoxon signed-rank test "
        f"(Holm-corrected over the column's comparisons, p < {alpha}; per-user values averaged over seeds). "
        f"{CAP_MARK} (k/n) after a model: k of its n seeds hit the epoch cap while still improving (best validation at "
        f"the last epoch), so the row is a lower bound. Seeds below the protocol's {min_seeds} are marked. "
        "epochs: best/run (means over seeds); CPU s: training CPU-seconds (all threads); wall s: training wall seconds."
    )


def row_label(t: Comparison, label: str) -> str:
    """The model name with the cap mark when some seed hit the epoch cap still improving."""
    capped = t.capped.get(label, 0)
    return f"{label} {CAP_MARK} ({capped}/{t.n_seeds[label]})" if capped else label


def seeds_text(t: Comparison, label: str) -> str:
    n = t.n_seeds[label]
    return f"{n} (< {t.min_seeds})" if n < t.min_seeds else str(n)


def protocol_columns(t: Comparison, label: str) -> list[str]:
    """The cells after the metrics: seeds, epochs, compute, tuning (and the reference when the table has any)."""
    cpu = t.cpu_seconds.get(label)
    cells = [
        seeds_text(t, label),
        t.epochs.get(label, "-"),
        "-" if cpu is None else f"{cpu:.1f}",
        f"{t.seconds[label][0]:.1f}",
        t.tuning_text(label),
    ]
    return [*cells, t.reference_text(label)] if has_references(t) else cells


def protocol_header(t: Comparison) -> list[str]:
    header = ["seeds", "epochs", "train CPU s", "train wall s", "tuning"]
    return [*header, "reference"] if has_references(t) else header


def has_references(t: Comparison) -> bool:
    return any(t.references.values())


def notes(t: Comparison) -> list[str]:
    """Lines under a table: each tuned row's search (keys, sampler, outcome) and each reference's source."""
    lines = []
    for label in t.labels:
        tuning, search = t.tuning.get(label), t.searches.get(label)
        if tuning and tuning.get("trials"):
            keys = ", ".join(tuning.get("params") or []) or "keys not recorded"
            if tuning.get("source") == "this suite":
                how = (
                    f"grid points (visiting-order seed {tuning.get('sampler_seed')}"
                    if tuning.get("sampler") == "grid"
                    else f"TPE trials (sampler seed {tuning.get('sampler_seed')}, {tuning.get('startup_trials')} random first"
                )
                line = (
                    f"- {label}: {tuning['trials']} {how}, pruner {tuning.get('pruner')}) over {keys} on valid {tuning['metric']}"
                )
                if search:
                    line += (
                        f"; best valid {search['metric']} {search['best_value']:.4f} "
                        f"({search['complete']} complete, {search['pruned']} pruned, {search['failed']} failed)"
                    )
            else:
                line = (
                    f"- {label}: fixed point chosen by {tuning['trials']} trials on valid {tuning['metric']} in "
                    f"{tuning.get('source')}"
                )
            lines.append(line)
        elif tuning and tuning.get("trials") == 0:
            lines.append(f"- {label}: no tuning, a declared fixed point ({tuning.get('source')})")
    for label in t.labels:
        reference = t.references.get(label)
        if reference:
            lines.append(f"- reference for {label}: {reference['metric']} {reference['value']:.4f}, {reference['source']}")
    return lines


def to_markdown(tables: list[Comparison]) -> str:
    """One Markdown table per (dataset, split), headed by its selection metric, with notes and a legend."""
    parts = []
    for t in tables:
        header = ["model", *t.metrics, *protocol_header(t)]
        lines = [f"### {t.title()}", "", "| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
        for label in t.labels:
            cells = [_fmt(t.cells[label][m], t.alpha, ("**", "**")) for m in t.metrics]
            lines.append(f"| {row_label(t, label)} | " + " | ".join([*cells, *protocol_columns(t, label)]) + " |")
        below = notes(t)
        parts.append("\n".join(lines + ([""] + below if below else [])))
    alpha = tables[0].alpha if tables else 0.05
    min_seeds = tables[0].min_seeds if tables else MIN_SEEDS
    baseline = tables[0].baseline if tables else None
    return "\n\n".join(parts) + f"\n\n{legend(alpha, min_seeds, baseline)}\n"


CSV_COLUMNS = (
    "dataset",
    "split",
    "model",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "best",
    "reference",
    "t_p",
    "t_p_holm",
    "wilcoxon_p",
    "wilcoxon_p_holm",
    "mean_diff",
    "marks",
    "train_seconds",
    "n_parameters",
    "select",
    "train_cpu_seconds",
    "epochs",
    "capped_improving",
    "tuning",
    "reference_value",
    "reference_metric",
    "reference_source",
)


def to_csv(tables: list[Comparison]) -> str:
    """Long format: one row per (dataset, split, model, metric), with the tests' raw and Holm p-values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for t in tables:
        for label in t.labels:
            for metric in t.metrics:
                cell = t.cells[label][metric]
                if cell is None:
                    continue
                test = cell.test
                tested: list[Any] = [test.t_p, test.t_p_holm, test.w_p, test.w_p_holm, test.mean_diff] if test else [""] * 5
                writer.writerow(
                    [
                        t.dataset,
                        t.split,
                        label,
                        metric,
                        repr(cell.mean),
                        repr(cell.std),
                        cell.n_seeds,
                        int(cell.best),
                        t.reference.get(metric, ""),
                        *tested,
                        cell.marks(t.alpha),
                        repr(t.seconds[label][0]),
                        t.n_parameters[label],
                        t.select,
                        "" if t.cpu_seconds.get(label) is None else repr(t.cpu_seconds[label]),
                        t.epochs.get(label, ""),
                        t.capped.get(label, 0),
                        t.tuning_text(label),
                        *_reference_fields(t.references.get(label)),
                    ]
                )
    return buffer.getvalue()


def _reference_fields(reference: dict[str, Any] | None) -> list[Any]:
    return ["", "", ""] if not reference else [repr(float(reference["value"])), reference["metric"], reference["source"]]


def write_tables(tables: list[Comparison], out: Path) -> tuple[Path, Path]:
    """``results.md`` and ``results.csv`` in ``out``."""
    md, csv_path = out / "results.md", out / "results.csv"
    write_text_atomic(md, to_markdown(tables))
    write_text_atomic(csv_path, to_csv(tables))
    return md, csv_path
