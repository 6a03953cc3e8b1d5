"""One static HTML report (plus Markdown/CSV tables and PNG plots) from finished run directories.

``build_report(paths, out)`` writes::

    out/results.md      one table per dataset (mean ± std over seeds, best bold, significance marks)
    out/results.csv     the same numbers in long format, with raw and Holm-corrected p-values
    out/plots/<dataset>-{valid_curves,metric_vs_k,accuracy_vs_time,per_user}.png
    out/plots/<dataset>-diagnostics.png   per-epoch loss terms and model diagnostics (when runs recorded them)
    out/buckets.md, out/sweep.md, out/plots/sweep-<key>.png   with --buckets / --sweep
    out/report.html     everything above in one self-contained page (images embedded), plus the runs

Only files already in the run directories are read; ``modalrec report`` rebuilds a report at any time.
"""

from __future__ import annotations

import base64
import html
import time
from dataclasses import dataclass, field
from pathlib import Path

from modalrec.errors import ModalRecError
from modalrec.experiments import buckets as bucket_tables
from modalrec.experiments import plots
from modalrec.experiments.collect import RunRecord, by_dataset, load_runs
from modalrec.experiments.sweep import build_sweep
from modalrec.experiments.sweep import to_markdown as sweep_markdown
from modalrec.experiments.tables import (
    Comparison,
    build_comparison,
    default_metrics,
    legend,
    notes,
    protocol_columns,
    protocol_header,
    row_label,
    write_tables,
)
from modalrec.train.rundir import write_text_atomic

PLOT_TITLES = {
    "valid_curves": "Validation curves",
    "metric_vs_k": "Metric vs K",
    "accuracy_vs_time": "Accuracy vs training time",
    "per_user": "Per-user distribution",
    "diagnostics": "Per-epoch loss terms and diagnostics",
}


@dataclass
class Report:
    """The files a report build wrote."""

    out: Path
    markdown: Path
    csv: Path
    html: Path
    plots: dict[str, dict[str, Path]] = field(default_factory=dict)  # dataset -> kind -> png
    tables: list[Comparison] = field(default_factory=list)
    buckets: Path | None = None  # buckets.md (metrics by user history length), when asked for
    sweep: Path | None = None  # sweep.md (metrics against a swept config value), when asked for
    sweep_plot: Path | None = None


def build_report(
    paths: list[Path] | list[RunRecord],
    out: str | Path,
    split: str = "test",
    metrics: list[str] | None = None,
    alpha: float = 0.05,
    title: str = "ModalRec comparison",
    buckets: list[int] | None = None,
    baseline: str | None = None,
    sweep: str | None = None,
) -> Report:
    """Tables, plots and the HTML page for the runs under ``paths`` (or already loaded records); with
    ``buckets`` (history-length edges) also ``buckets.md``, the headline metric by history length (tested per
    bucket); with ``baseline`` (a model label) the tests compare every row with it instead of the best; with ``sweep`` (a
    dotted config key, e.g. dataset.feature_noise) also ``sweep.md`` and ``plots/sweep-<key>.png``, the
    metrics against that key's values across the runs."""
    if split not in ("valid", "test"):
        raise ModalRecError(f"split must be valid or test, got '{split}'")
    if not 0 < alpha < 1:
        raise ModalRecError(f"alpha must be in (0, 1), got {alpha}")
    records = [p for p in paths if isinstance(p, RunRecord)] or load_runs(
        [Path(p) for p in paths if not isinstance(p, RunRecord)]
    )
    if not records:
        raise ModalRecError("no runs to report")
    out = Path(out)
    metrics = [m.lower() for m in metrics] if metrics else default_metrics(records, split)
    grouped = by_dataset(records)
    if baseline is not None and baseline not in {r.label for r in records}:
        labels = ", ".join(dict.fromkeys(r.label for r in records))
        raise ModalRecError(f"--baseline {baseline} is not a model of these runs; choose one of {labels}")
    swept = build_sweep(records, sweep, split, metrics, baseline) if sweep else None  # checked before writing
    tables = [build_comparison(dataset, groups, split, metrics, alpha, baseline) for dataset, groups in grouped.items()]
    md, csv_path = write_tables(tables, out)
    report = Report(out, md, csv_path, out / "report.html", tables=tables)
    families = list(dict.fromkeys(m.split("@")[0] for m in metrics if "@" in m))[:3]
    for dataset, groups in grouped.items():
        select = next(iter(groups.values()))[0].select
        headline = select if select in metrics else metrics[0]
        base = out / "plots" / _file_name(dataset)
        report.plots[dataset] = {
            "valid_curves": plots.validation_curves(
                groups, select, base.with_name(f"{base.name}-valid_curves.png"), f"{dataset}: validation {select}"
            ),
            "metric_vs_k": plots.metric_vs_k(
                groups, families, split, base.with_name(f"{base.name}-metric_vs_k.png"), f"{dataset}: {split} metrics vs K"
            ),
            "accuracy_vs_time": plots.accuracy_vs_time(
                groups,
                headline,
                split,
                base.with_name(f"{base.name}-accuracy_vs_time.png"),
                f"{dataset}: {split} {headline} vs training time",
            ),
            "per_user": plots.per_user_distribution(
                groups, headline, split, base.with_name(f"{base.name}-per_user.png"), f"{dataset}: per-user {split} {headline}"
            ),
        }
        if plots.has_diagnostics(groups):
            report.plots[dataset]["diagnostics"] = plots.diagnostic_curves(
                groups, base.with_name(f"{base.name}-diagnostics.png"), f"{dataset}: per-epoch diagnostics"
            )
    if buckets:
        sections = []
        for dataset, groups in grouped.items():
            select = next(iter(groups.values()))[0].select
            headline = select if select in metrics else metrics[0]
            sections.append(
                bucket_tables.to_markdown(bucket_tables.bucket_table(dataset, groups, split, headline, buckets, alpha, baseline))
            )
        report.buckets = out / "buckets.md"
        write_text_atomic(report.buckets, "\n".join(sections))
    if swept is not None:
        report.sweep = out / "sweep.md"
        write_text_atomic(report.sweep, sweep_markdown(swept, alpha))
        report.sweep_plot = plots.sweep_curves(
            swept, out / "plots" / f"sweep-{_file_name(swept.key)}.png", f"{split} metrics vs {swept.key}"
        )
    write_text_atomic(report.html, _html(report, records, title, split))
    return report


def _file_name(dataset: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset)


def _html_table(t: Comparison) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["model", *t.metrics, *protocol_header(t), "params"])
    rows = []
    for label in t.labels:
        cells = []
        for m in t.metrics:
            cell = t.cells[label][m]
            if cell is None:
                cells.append("<td>-</td>")
                continue
            text = f"{cell.mean:.4f}" + (f"<small> ± {cell.std:.4f}</small>" if cell.n_seeds > 1 else "")
            if cell.best:
                text = f"<b>{text}</b>"
            tip = ""
            if cell.test is not None:
                tip = (
                    f' title="vs {html.escape(t.reference[m])}: t-test p={cell.test.t_p_holm:.3g}, Wilcoxon '
                    f'p={cell.test.w_p_holm:.3g} (Holm)"'
                )
            cells.append(f"<td{tip}>{text}<sup>{html.escape(cell.marks(t.alpha))}</sup></td>")
        protocol = "".join(f"<td>{html.escape(text)}</td>" for text in protocol_columns(t, label))
        rows.append(
            f"<tr><th>{html.escape(row_label(t, label))}</th>{''.join(cells)}{protocol}<td>{t.n_parameters[label]:,}</td></tr>"
        )
    below = "".join(f"<li>{html.escape(line[2:])}</li>" for line in notes(t))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>" + (f"<ul>{below}</ul>" if below else "")


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" '
        f'src="data:image/png;base64,{data}"><figcaption>{html.escape(alt)}</figcaption></figure>'
    )


def _protocol(records: list[RunRecord], split: str) -> str:
    selections = sorted({r.results.get("selected_by", "") for r in records})
    protocols = sorted({str(r.results.get(f"{split}_eval", {}).get("protocol", "full")) for r in records})
    ranking = (
        " ranking, seen items masked" if protocols == ["full"] else " (sampled: optimistic, not comparable with full ranking)"
    )
    return (
        f"Checkpoints selected on {', '.join(selections)}; the {split} split was scored once for the selected checkpoint. "
        f"Ranking protocol: {', '.join(protocols)}{ranking}."
    )


def _html(report: Report, records: list[RunRecord], title: str, split: str) -> str:
    sections = []
    for t in report.tables:
        figures = "".join(_img(path, f"{t.dataset}: {PLOT_TITLES[kind]}") for kind, path in report.plots[t.dataset].items())
        sections.append(f"<section><h2>{html.escape(t.title())}</h2>{_html_table(t)}<div class='plots'>{figures}</div></section>")
    if report.sweep_plot is not None:
        sections.append(f"<section><h2>Sweep</h2>{_img(report.sweep_plot, report.sweep_plot.stem)}</section>")
    run_rows = "".join(
        f"<tr><td>{html.escape(r.dataset)}</td><td>{html.escape(r.label)}</td><td>{r.seed}</td>"
        f"<td>{r.results.get('best_epoch', '')}</td><td>{r.results.get('epochs_run', '')}</td>"
        f"<td>{float(r.results.get('train_seconds', 0)):.1f}</td><td><code>{html.escape(str(r.path))}</code></td></tr>"
        for r in records
    )
    alpha, min_seeds = report.tables[0].alpha, report.tables[0].min_seeds
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:14px}td,th{border-bottom:1px solid #ddd;padding:4px "
        "10px;text-align:right}"
        "th:first-child,td:first-child{text-align:left}thead th{border-bottom:2px solid #333}sup{color:#b00}"
        ".plots{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0}img{max-width:580px;border:1px solid #eee}"
        "figcaption{font-size:12px;color:#666}code{font-size:12px}"
    )
    return (
        "<!doctype html><html lang='en'><head><meta "
        f"charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(_protocol(records, split))}</p>"
        f"<p>{html.escape(legend(alpha, min_seeds, report.tables[0].baseline))}</p>"
        f"{''.join(sections)}<h2>Runs</h2><table><thead><tr><th>dataset</th><th>model</th><th>seed</th><th>best epoch</th>"
        f"<th>epochs</th><th>train s</th><th>run directory</th></tr></thead><tbody>{run_rows}</tbody></table>"
        f"<p><small>Built {time.strftime('%Y-%m-%d %H:%M:%S')} by modalrec report from {len(records)} "
        "runs.</small></p></body></html>\n"
    )
