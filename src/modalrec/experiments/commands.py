"""``modalrec benchmark``, ``modalrec search`` and ``modalrec report`` (registered in modalrec.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from modalrec.console import setup_logging
from modalrec.errors import ConfigError, ModalRecError

if TYPE_CHECKING:
    from modalrec.experiments.report import Report

console = Console()


def _print_report(report: Report) -> None:
    from modalrec.experiments.tables import rich_metric_table

    for t in report.tables:
        rows = {label: {m: c.mean for m, c in cells.items() if c is not None} for label, cells in t.cells.items()}
        console.print(rich_metric_table(f"{t.dataset} ({t.split}, mean over seeds)", rows, t.metrics))
    console.print(f"tables: {report.markdown}, {report.csv}\nreport: {report.html}")


def parse_seed_option(value: str) -> tuple[int, ...]:
    """``--seeds 2,3`` as integers; anything else is a ConfigError naming the option and the value."""
    try:
        return tuple(int(part) for part in value.split(","))
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated integers such as 1 or 2,3, got {value!r}") from None


def benchmark_command(
    suite_file: Annotated[Path, typer.Argument(metavar="SUITE.yaml", help="A suite file (see suites/ and docs/experiments.md).")],
    out: Annotated[Path | None, typer.Option(help="Output directory (default: the suite's 'out').")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and what would happen to each; run nothing.")] = False,
    stop_on_error: Annotated[
        bool, typer.Option(help="Stop at the first failing run instead of recording it and going on.")
    ] = False,
    report: Annotated[bool, typer.Option(help="Build <out>/report (tables, plots, HTML) at the end.")] = True,
    quiet: Annotated[bool, typer.Option(help="Only warnings, one line per epoch and per run, and the final tables.")] = False,
    only: Annotated[str | None, typer.Option(help="Comma-separated model labels: run (and tune) only these rows now.")] = None,
    datasets: Annotated[
        str | None, typer.Option(help="Comma-separated dataset labels: run (and tune) only on these now.")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds, e.g. 1 or 2,3: run only these seeds now.")] = None,
) -> None:
    """Run a benchmark suite (models x datasets x seeds); finished runs are skipped, interrupted ones resumed."""
    from modalrec.experiments.report import build_report
    from modalrec.experiments.suite import Selection, Suite, run_suite

    setup_logging(not quiet)
    suite = Suite.load(suite_file, out)
    selection = Selection(
        labels=tuple(only.split(",")) if only else None,
        datasets=tuple(datasets.split(",")) if datasets else None,
        seeds=parse_seed_option(seeds) if seeds else None,
    )
    if dry_run:
        suite.validate()
        selection.check(suite)
        table = Table(title=f"suite {suite.name} -> {suite.out}")
        for column in ("run", "state"):
            table.add_column(column)
        for run in filter(selection.keeps, suite.plan()):
            state = (
                "done"
                if (run.path / "results.json").exists()
                else "resume"
                if (run.path / "checkpoints" / "last.pt").exists()
                else "new"
            )
            table.add_row(run.name, state)
        for d, m in selection.searches(suite):
            table.add_row(
                f"search {d.label}__{m.label} ({suite.search_settings(m).trials} trials)",
                "study exists" if (suite.search_dir(d, m) / "study.db").exists() else "new",
            )
        console.print(table)
        return
    outcomes = run_suite(suite, keep_going=not stop_on_error, progress=not quiet, selection=selection)
    table = Table(title=f"suite {suite.name}")
    for column in ("run", "status", "best epoch", "valid", "test", "note"):
        table.add_column(column)
    for o in outcomes:
        select = o.results.get("selected_by", "valid ?").split()[-1]
        cells = [
            str(o.results.get("best_epoch", "")),
            f"{o.results['valid'][select]:.4f}" if o.results else "",
            f"{o.results['test'][select]:.4f}" if o.results else "",
        ]
        table.add_row(o.run.name, o.status, *cells, o.error[:80])
    console.print(table)
    failed = [o for o in outcomes if o.status == "failed"]
    if report and any(o.results for o in outcomes):
        _print_report(build_report([suite.out], suite.out / "report", metrics=suite.metrics or None, title=f"suite {suite.name}"))
    if failed:
        console.print(f"[red]{len(failed)} run(s) failed[/red]; fix the cause and run the same command again to retry them")
        raise typer.Exit(1)


def search_command(
    overrides: Annotated[
        list[str], typer.Argument(help="The run to tune, as overrides, e.g. model=bpr dataset=ml-1m train.epochs=30.")
    ],
    out: Annotated[Path, typer.Option(help="Study directory (SQLite study, trials' runs, best.json); reuse it to resume.")],
    trials: Annotated[int, typer.Option(help="Finished trials in the study (the budget: keep it equal across models).")] = 20,
    metric: Annotated[str | None, typer.Option(help="Validation metric to maximise (default: train.select).")] = None,
    pruner: Annotated[str, typer.Option(help="median | hyperband | none.")] = "median",
    startup_trials: Annotated[int, typer.Option(help="Random trials before TPE and before pruning starts.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the sampler.")] = 0,
    sampler: Annotated[
        str, typer.Option(help="tpe | grid (every point of a space of choice keys; --trials = its size).")
    ] = "tpe",
    space: Annotated[str | None, typer.Option(help="A search space replacing the model's: JSON, or a YAML/JSON file.")] = None,
    quiet: Annotated[bool, typer.Option(help="Only warnings, one line per epoch and per trial, and the result.")] = False,
) -> None:
    """Tune a model's hyper-parameters with Optuna on the VALIDATION split (the test split is never read)."""
    import yaml

    from modalrec.experiments.search import SearchSettings, search

    setup_logging(not quiet)
    parsed = None
    if space is not None:
        text = Path(space).read_text() if Path(space).is_file() else space
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--space is not valid JSON/YAML: {err}") from None
    settings = SearchSettings(
        trials=trials, metric=metric, pruner=pruner, startup_trials=startup_trials, seed=seed, sampler=sampler
    )
    result = search(list(overrides), out, settings, parsed)
    table = Table(
        title=f"best of {result.complete} completed trials ({result.pruned} pruned, {result.failed} failed): valid "
        f"{result.metric}={result.best_value:.5f}"
    )
    table.add_column("key")
    table.add_column("value", justify="right")
    for key, value in result.best_params.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    console.print(table)
    console.print(f"train it: modalrec train {' '.join(overrides)} {' '.join(result.overrides)}")
    console.print(f"study: {out / 'study.db'}, best: {out / 'best.json'}")


def report_command(
    runs: Annotated[list[Path], typer.Argument(help="Run directories, suite output directories or folders of runs.")],
    out: Annotated[Path, typer.Option(help="Where to write results.md, results.csv, plots/ and report.html.")] = Path("report"),
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    metrics: Annotated[
        str | None, typer.Option(help="Table columns, e.g. recall@20,ndcg@20 (default: recall and ndcg at every K).")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the marks (Holm-corrected).")] = 0.05,
    title: Annotated[str, typer.Option(help="Title of the HTML page.")] = "ModalRec comparison",
    buckets: Annotated[
        str | None,
        typer.Option(
            help="History-length edges, e.g. 20,50,200: also buckets.md, the headline metric per bucket of users, "
            "tested within each bucket (against --baseline when given)."
        ),
    ] = None,
    baseline: Annotated[
        str | None, typer.Option(help="A model label: test every row against it instead of the best (e.g. the full model).")
    ] = None,
    sweep: Annotated[
        str | None,
        typer.Option(
            help="A config key varied across the runs, e.g. dataset.feature_noise: also sweep.md and a plot of the metrics "
            "against it (with --baseline: each model's change tested against the baseline's)."
        ),
    ] = None,
) -> None:
    """Rebuild tables (Markdown, CSV), plots and the HTML report from finished run directories."""
    from modalrec.experiments.report import build_report

    setup_logging()
    try:
        edges = [int(edge) for edge in buckets.split(",")] if buckets else None
    except ValueError:
        raise ModalRecError(f"--buckets must be comma-separated history lengths, e.g. 20,50,200; got '{buckets}'") from None
    report = build_report(
        list(runs),
        out,
        split=split,
        metrics=metrics.split(",") if metrics else None,
        alpha=alpha,
        title=title,
        buckets=edges,
        baseline=baseline,
        sweep=sweep,
    )
    _print_report(report)
    if report.buckets is not None:
        console.print(f"by history length: {report.buckets}")
    if report.sweep is not None:
        console.print(f"sweep: {report.sweep}, {report.sweep_plot}")
