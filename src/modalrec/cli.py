"""The ``modalrec`` command line: data, train, evaluate, recommend, compare, models, datasets.

User mistakes (unknown names, bad config values, malformed files, foreign checkpoints) print one
clear message and exit with status 2; they never print a traceback.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from modalrec.errors import ModalRecError
from modalrec.serve.command import serve_command

app = typer.Typer(
    help="ModalRec: multimodal recommendation — train, evaluate and compare models under one protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Inspect and prepare datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
from modalrec.data.features.commands import features_app  # noqa: E402

app.add_typer(features_app, name="features")
app.command("serve")(serve_command)
from modalrec.experiments.commands import benchmark_command, report_command, search_command  # noqa: E402

app.command("benchmark")(benchmark_command)
app.command("search")(search_command)
app.command("report")(report_command)

console = Console()
err_console = Console(stderr=True)

OVERRIDES_HELP = "Config overrides as key=value, e.g. model=sasrec dataset=ml-1m train.lr=0.001 model.dim=64."


def _setup_logging(verbose: bool = True) -> None:
    from rich.logging import RichHandler

    logger = logging.getLogger("modalrec")
    if not any(isinstance(h, RichHandler) for h in logger.handlers):
        handler = RichHandler(console=err_console, show_path=False, show_time=False)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logging.captureWarnings(True)
    warnings.simplefilter("default")


# ---------------------------------------------------------------------- commands
@app.command()
def train(
    overrides: Annotated[Optional[list[str]], typer.Argument(help=OVERRIDES_HELP)] = None,
    config: Annotated[Optional[Path], typer.Option("--config", "-c", help="A YAML config (e.g. a run's config.yaml).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the interrupted run in this run directory.")] = None,
    quiet: Annotated[bool, typer.Option(help="Only warnings and the final table.")] = False,
    nproc: Annotated[int, typer.Option(help="Processes on this machine (DDP through torchrun); see docs/distributed.md.")] = 1,
) -> None:
    """Train a model, select it on validation, score it on test; writes runs/<name>/."""
    from modalrec.config import resolve
    from modalrec.train import distributed
    from modalrec.train.experiment import train as run_training

    _setup_logging(not quiet)
    if resume is not None and (overrides or config):
        raise ModalRecError("--resume continues a run with its saved config; do not pass overrides or --config with it")
    if nproc != 1:
        return distributed.launch_train(nproc, overrides or [], config, resume, quiet)
    cfg = resolve(overrides or [], config) if resume is None else None
    run_dir, results = run_training(cfg, resume=resume)
    if not distributed.is_main_process():
        return
    table = Table(title=f"{results['model']} on {results['dataset']} (selected on {results['selected_by']}, epoch {results['best_epoch']})")
    for column in ("metric", "valid", "test"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for metric, value in results["test"].items():
        if isinstance(value, (int, float)):
            table.add_row(metric, f"{results['valid'].get(metric, float('nan')):.4f}", f"{value:.4f}")
    console.print(table)
    console.print(f"run directory: {run_dir.path}")


@app.command()
def evaluate(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    ks: Annotated[Optional[str], typer.Option(help="Cut-offs, e.g. 10,20,50 (default: the run's).")] = None,
    sampled: Annotated[Optional[str], typer.Option(help="uniform or popularity: sampled instead of full ranking.")] = None,
    negatives: Annotated[int, typer.Option(help="Negatives per user when sampled.")] = 100,
) -> None:
    """Score a run's selected checkpoint again (other cut-offs, sampled metrics)."""
    from modalrec.data.dataset import TEST, VALID
    from modalrec.eval.ranking import Evaluator
    from modalrec.train.experiment import open_run

    phases = {"valid": VALID, "test": TEST}
    if split not in phases:
        raise ModalRecError(f"--split must be one of {', '.join(phases)}, got '{split}'")
    loaded = open_run(run)
    cut_offs = tuple(int(k) for k in ks.split(",")) if ks else tuple(loaded.cfg.eval.ks)
    evaluator = Evaluator(
        loaded.ctx, ks=cut_offs, metrics=tuple(loaded.cfg.eval.metrics), user_chunk=loaded.cfg.eval.user_chunk,
        item_chunk=loaded.cfg.eval.item_chunk, sampled=sampled, n_negatives=negatives, seed=loaded.cfg.train.seed,
    )
    result = evaluator.evaluate(loaded.model, phases[split])
    console.print(result.format_table())


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    user: Annotated[list[str], typer.Option("--user", "-u", help="Raw user id (as in the dataset files); repeat for several.")],
    k: Annotated[int, typer.Option("-k", help="How many items.")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Also recommend items the user already interacted with.")] = False,
) -> None:
    """Top-K items for given users, from their full history, with titles when the dataset has them."""
    import numpy as np

    from modalrec.data.dataset import TEST
    from modalrec.eval.ranking import Evaluator
    from modalrec.train.experiment import open_run

    loaded = open_run(run)
    ds = loaded.dataset
    users = []
    for raw in user:
        try:
            users.append(ds.user_index(raw))
        except KeyError:
            examples = ", ".join(ds.user_ids[:3].tolist())
            raise ModalRecError(f"unknown user id '{raw}' in dataset '{ds.name}' (raw ids look like: {examples})") from None
    evaluator = Evaluator(loaded.ctx, user_chunk=loaded.cfg.eval.user_chunk, item_chunk=loaded.cfg.eval.item_chunk)
    items, scores = evaluator.topk(loaded.model, np.asarray(users), k, TEST, exclude_seen=not include_seen)
    titles = ds.item_meta.get("title")
    for raw, row, row_scores in zip(user, items.tolist(), scores.tolist()):
        table = Table(title=f"top-{len(row)} for user {raw} ({loaded.cfg.model_name})")
        table.add_column("rank", justify="right")
        table.add_column("item")
        if titles is not None:
            table.add_column("title")
        table.add_column("score", justify="right")
        for rank, (item, score) in enumerate(zip(row, row_scores), start=1):
            cells = [str(rank), str(ds.item_ids[item])]
            if titles is not None:
                cells.append(str(titles[item]))
            table.add_row(*cells, f"{score:.4f}")
        console.print(table)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    metrics: Annotated[Optional[str], typer.Option(help="Columns, e.g. recall@20,ndcg@20 (default: all).")] = None,
) -> None:
    """A table of finished runs' metrics (best per column in bold)."""
    from modalrec.experiments.tables import rich_metric_table
    from modalrec.train.rundir import RunDir

    rows = {}
    for path in runs:
        run_dir = RunDir(path)
        if not run_dir.results.exists():
            raise ModalRecError(f"{path} has no results.json (not a finished run)")
        results = run_dir.read_json(run_dir.results)
        rows[path.name] = results[split]
    columns = metrics.split(",") if metrics else None
    console.print(rich_metric_table(f"{split} metrics", rows, columns))


@app.command()
def models() -> None:
    """The registered models, their family and paper."""
    from modalrec.models.base import registered_models

    table = Table(title="models")
    for column in ("name", "family", "trains by", "paper"):
        table.add_column(column)
    for name, cls in registered_models().items():
        table.add_row(name, cls.family, "closed form" if cls.train_view == "none" else f"{cls.train_view} minibatches", cls.paper)
    console.print(table)


@app.command()
def datasets(
    details: Annotated[bool, typer.Option(help="Also show where each comes from and its terms.")] = False,
) -> None:
    """The named datasets: what they hold and (with --details) where they come from."""
    from modalrec.data.registry import available_datasets

    table = Table(title="datasets")
    table.add_column("name", no_wrap=True)
    table.add_column("modalities")
    table.add_column("description")
    if details:
        table.add_column("how it is obtained")
        table.add_column("terms")
    for name, spec in available_datasets().items():
        row = [name, ", ".join(spec.modalities), spec.description if details else spec.description.split(": ")[0].split(". ")[0]]
        table.add_row(*row, *((spec.obtained, spec.license) if details else ()))
    console.print(table)


def _prepared(name: str, overrides: list[str], family: str) -> tuple:
    from modalrec.config import RunConfig, apply_values, parse_overrides
    from modalrec.train.experiment import prepare_data

    cfg = RunConfig()
    values = parse_overrides(overrides)
    unknown = set(values) - {"dataset"}
    if unknown:
        raise ModalRecError(f"only dataset.* overrides apply here, got: {', '.join(sorted(unknown))}")
    apply_values(cfg, {"dataset": {**values.get("dataset", {}), "name": name}})
    return prepare_data(cfg, family)


def _raw_ids_line(ds) -> str:
    """What the raw ids (``--user``, ``item_index``) of a dataset are, with examples."""
    kinds = ds.meta.get("raw_ids", {})
    titles = ds.item_meta.get("title")
    item = f"{ds.item_ids[0]} = {titles[0]}" if titles else ", ".join(ds.item_ids[:3].tolist())
    return (
        f"raw ids: user = {kinds.get('user', 'the id of the source files')} (e.g. {', '.join(ds.user_ids[:3].tolist())}); "
        f"item = {kinds.get('item', 'the id of the source files')} (e.g. {item})"
    )


@data_app.command("info")
def data_info(
    name: Annotated[str, typer.Argument(help="A named dataset (see `modalrec datasets`) or a saved dataset directory.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dataset.preprocess.* / dataset.split.* overrides.")] = None,
    family: Annotated[str, typer.Option(help="Split defaults of this model family: general or sequential.")] = "general",
) -> None:
    """Statistics as loaded (against the published sizes) and after preprocessing and splitting."""
    from modalrec.data.registry import available_datasets
    from modalrec.train.experiment import load_source

    _setup_logging()
    raw = load_source(name)
    expected = available_datasets()[name].expected if name in available_datasets() else {}
    table = Table(title=f"{name} as loaded")
    for column in ("statistic", "value", "published"):
        table.add_column(column, justify="left" if column == "statistic" else "right")
    for key, value in raw.stats().items():
        if key == "name":
            continue
        shown = f"{value:.4%}" if key == "density" else (f"{value:,}" if isinstance(value, int) else str(value))
        published = expected.get(key)
        mark = "" if published is None else (f"{published:,} ✓" if published == value else f"{published:,} ✗")
        table.add_row(key, shown, mark)
    console.print(table)
    console.print(_raw_ids_line(raw), markup=False, highlight=False)
    ds, split_cfg = _prepared(name, overrides or [], family)
    steps = [f"{s['op']} ({s.get('before', '?'):,} -> {s.get('after', '?'):,})" for s in ds.meta.get("steps", [])]
    console.print(f"after {', '.join(steps) or 'no preprocessing'}; split {split_cfg}:")
    console.print(ds.describe())


@data_app.command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="A named dataset or a saved dataset directory.")],
    out: Annotated[Path, typer.Option(help="Directory to write the processed, split dataset to.")],
    overrides: Annotated[Optional[list[str]], typer.Argument(help="dataset.preprocess.* / dataset.split.* overrides.")] = None,
    family: Annotated[str, typer.Option(help="Split defaults of this model family: general or sequential.")] = "general",
) -> None:
    """Preprocess and split a dataset once and save it (train on it with dataset=<out>)."""
    from modalrec.data.storage import save_dataset

    _setup_logging()
    ds, _ = _prepared(name, overrides or [], family)
    save_dataset(ds, out)
    console.print(ds.describe())
    console.print(f"saved to {out}")


def main() -> None:
    """Entry point: run the app, turning user mistakes into one-line errors (exit status 2)."""
    try:
        app()  # usage errors and --help are handled (and exit) inside typer
    except ModalRecError as err:
        err_console.print(f"[bold red]error:[/bold red] {err}", highlight=False, soft_wrap=True, markup=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
