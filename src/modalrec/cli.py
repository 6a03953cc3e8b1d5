"""The ``modalrec`` command line: data, train, evaluate, recommend, compare, models, datasets.

User mistakes (unknown names, bad config values, malformed files, foreign checkpoints) print one
clear message and exit with status 2; they never print a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modalrec.console import err_console, print_error, print_warning, setup_logging
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
from modalrec.commands.features import features_app  # noqa: E402

app.add_typer(features_app, name="features")
app.command("serve")(serve_command)
from modalrec.experiments.commands import benchmark_command, report_command, search_command  # noqa: E402

app.command("benchmark")(benchmark_command)
app.command("search")(search_command)
app.command("report")(report_command)

console = Console()

OVERRIDES_HELP = "Config overrides as key=value, e.g. model=sasrec dataset=ml-1m train.lr=0.001 model.dim=64."


# ---------------------------------------------------------------------- commands
@app.command()
def train(
    overrides: Annotated[list[str] | None, typer.Argument(help=OVERRIDES_HELP)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="A YAML config (e.g. a run's config.yaml).")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the interrupted run in this run directory.")] = None,
    quiet: Annotated[bool, typer.Option(help="Only warnings, one line per epoch and the final table.")] = False,
    nproc: Annotated[int, typer.Option(help="Processes on this machine (DDP through torchrun); see docs/distributed.md.")] = 1,
) -> None:
    """Train a model, select it on validation, score it on test; writes runs/<name>/."""
    from modalrec.config import resolve
    from modalrec.train import distributed
    from modalrec.train.experiment import train as run_training

    setup_logging(not quiet)
    if resume is not None and (overrides or config):
        raise ModalRecError("--resume continues a run with its saved config; do not pass overrides or --config with it")
    if nproc != 1:
        return distributed.launch_train(nproc, overrides or [], config, resume, quiet)
    cfg = resolve(overrides or [], config) if resume is None else None
    run_dir, results = run_training(cfg, resume=resume)
    if not distributed.is_main_process():
        return
    table = Table(
        title=f"{results['model']} on {results['dataset']} (selected on {results['selected_by']}, epoch {results['best_epoch']})"
    )
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
    ks: Annotated[str | None, typer.Option(help="Cut-offs, e.g. 10,20,50 (default: the run's).")] = None,
    sampled: Annotated[str | None, typer.Option(help="uniform or popularity: sampled instead of full ranking.")] = None,
    negatives: Annotated[int, typer.Option(min=1, help="Negatives per user when sampled.")] = 100,
) -> None:
    """Score a run's selected checkpoint again (other cut-offs, sampled metrics)."""
    from modalrec.config import Positive, coerce
    from modalrec.data.dataset import TEST, VALID
    from modalrec.eval.ranking import Evaluator
    from modalrec.train.experiment import open_run

    setup_logging(verbose=False)
    phases = {"valid": VALID, "test": TEST}
    if split not in phases:
        raise ModalRecError(f"--split must be one of {', '.join(phases)}, got '{split}'")
    cut_offs = tuple(coerce(ks, list[Positive], "--ks")) if ks is not None else None
    loaded = open_run(run)
    cut_offs = cut_offs or tuple(loaded.cfg.eval.ks)
    evaluator = Evaluator(
        loaded.ctx,
        ks=cut_offs,
        metrics=tuple(loaded.cfg.eval.metrics),
        user_chunk=loaded.cfg.eval.user_chunk,
        item_chunk=loaded.cfg.eval.item_chunk,
        sampled=sampled,
        n_negatives=negatives,
        seed=loaded.cfg.train.seed,
    )
    result = evaluator.evaluate(loaded.model, phases[split])
    console.print(result.format_table())


@app.command()
def recommend(
    run: Annotated[Path, typer.Argument(help="A run directory.")],
    user: Annotated[list[str], typer.Option("--user", "-u", help="Raw user id (as in the dataset files); repeat for several.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many items (fewer when fewer are left to recommend).")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Also recommend items the user already interacted with.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the lists as JSON (the items of GET /recommend).")] = False,
    explain: Annotated[
        bool, typer.Option("--explain", help="Why each item (FindRec: its routing weights over experts and modalities).")
    ] = False,
) -> None:
    """Top-K items for given users, with titles when the dataset has them: the lists `modalrec serve`
    answers (the rule is in docs/serving.md). --explain adds the model's explanation of each item, or
    says the model has none."""
    import json

    import numpy as np

    from modalrec.serve.engine import CandidateFilter, ServingEngine

    setup_logging(verbose=False)
    engine = ServingEngine.open(run)
    users = []
    for raw in user:
        index = engine.user_index(raw)
        if index is None:
            examples = ", ".join(engine.user_ids[:3].tolist())
            raise ModalRecError(f"unknown user id '{raw}' in dataset '{engine.dataset.name}' (raw ids look like: {examples})")
        users.append(index)
    lists = engine.recommend_users(np.asarray(users), k, not include_seen, CandidateFilter())
    explained = engine.explain_users(np.asarray(users), lists) if explain else None
    if explain and explained is None:
        console.print(f"model '{engine.model.name}' has no explanation of its recommendations; showing the lists only")
    if as_json:
        out = []
        for row, (raw, r) in enumerate(zip(user, lists)):
            items: list[dict[str, Any]] = [
                {"item": str(engine.item_ids[i]), "title": engine.title(int(i)), "score": float(s)}
                for i, s in zip(r.items, r.scores)
            ]
            for j, item in enumerate(items):
                if explained is not None:
                    item["explanation"] = explained[row][j]
            out.append({"user": raw, "items": items})
        typer.echo(json.dumps(out, indent=2))  # plain: rich would wrap long titles inside the JSON
        return
    for row, (raw, ranked) in enumerate(zip(user, lists)):
        table = Table(title=f"top-{len(ranked.items)} for user {raw} ({engine.model.name})")
        table.add_column("rank", justify="right")
        table.add_column("item")
        if engine.titles is not None:
            table.add_column("title")
        table.add_column("score", justify="right")
        if explained is not None:
            table.add_column("streams (share)")
            table.add_column("experts (mean gate)")
        for rank, (item, score) in enumerate(zip(ranked.items.tolist(), ranked.scores.tolist()), start=1):
            cells = [str(rank), str(engine.item_ids[item])]
            if engine.titles is not None:
                cells.append(str(engine.title(item)))
            cells.append(f"{score:.4f}")
            if explained is not None:
                why = explained[row][rank - 1]
                cells.append(" ".join(f"{name} {value:.2f}" for name, value in why.get("streams", {}).items()))
                cells.append(" ".join(f"e{e} {value:.2f}" for e, value in enumerate(why.get("experts", []))))
            table.add_row(*cells)
        console.print(table)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories.")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    metrics: Annotated[str | None, typer.Option(help="Columns, e.g. recall@20,ndcg@20 (default: all).")] = None,
    force: Annotated[bool, typer.Option(help="Compare runs whose dataset, split or protocol differ (with a warning).")] = False,
) -> None:
    """A table of finished runs' metrics (best per column in bold); refuses failed or unfinished runs,
    and runs on different data, splits or protocols unless --force."""
    from modalrec.errors import UnknownNameError
    from modalrec.experiments.tables import rich_metric_table
    from modalrec.train.rundir import FINISHED, RunDir

    if split not in ("valid", "test"):
        raise ModalRecError(f"--split must be valid or test, got '{split}'")
    rows, setups = {}, {}
    for path in runs:
        run_dir = RunDir(path)
        if not run_dir.config.exists():
            raise ModalRecError(f"{path} is not a run directory (no config.yaml)")
        status = run_dir.status()
        if status["status"] != FINISHED or not run_dir.results.exists():
            error = f": {status['error']}" if status.get("error") else ""
            raise ModalRecError(f"{path} is not a finished run (status {status['status']}{error}); leave it out of compare")
        try:
            results = run_dir.read_json(run_dir.results)
        except ValueError as err:
            raise ModalRecError(f"{run_dir.results} is not readable JSON ({err})") from None
        if split not in results:
            raise ModalRecError(f"{path} has no {split} metrics (a search trial scores valid only); compare with --split valid")
        label = path.name if path.name not in rows else str(path)
        rows[label], setups[label] = results[split], run_dir.setup(split)
    differing = [key for key in next(iter(setups.values())) if len({s[key] for s in setups.values()}) > 1]
    if differing:
        lines = "; ".join(f"{name}: " + ", ".join(f"{key} {setups[name][key]}" for key in differing) for name in setups)
        message = f"these runs differ in {', '.join(differing)}, so their metrics are not comparable ({lines})"
        if not force:
            raise ModalRecError(f"{message}; pass --force to show them side by side anyway")
        print_warning(message)
    known = sorted({key for row in rows.values() for key, value in row.items() if isinstance(value, (int, float))})
    columns = [c.strip() for c in metrics.split(",") if c.strip()] if metrics else None
    for column in columns or []:
        if column not in known:
            raise UnknownNameError("metric column", column, known)
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
        table.add_row(*(escape(cell) for cell in (*row, *((spec.obtained, spec.license) if details else ()))))
    console.print(table)


def _data_config(name: str, overrides: list[str]):
    """A config whose dataset section is ``name`` plus ``dataset.*`` overrides (nothing else applies)."""
    from modalrec.config import RunConfig, apply_values, parse_overrides

    cfg = RunConfig()
    values = parse_overrides(overrides)
    unknown = set(values) - {"dataset"}
    if unknown:
        raise ModalRecError(f"only dataset.* overrides apply here, got: {', '.join(sorted(unknown))}")
    apply_values(cfg, {"dataset": {**values.get("dataset", {}), "name": name}})
    return cfg


def _prepared(name: str, overrides: list[str], family: str) -> tuple:
    from modalrec.train.experiment import prepare_data

    return prepare_data(_data_config(name, overrides), family)


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
    overrides: Annotated[list[str] | None, typer.Argument(help="dataset.preprocess.* / dataset.split.* overrides.")] = None,
    family: Annotated[str, typer.Option(help="Split defaults of this model family: general or sequential.")] = "general",
) -> None:
    """Statistics as loaded (against the published sizes) and after preprocessing and splitting."""
    from modalrec.data.registry import available_datasets, load_source
    from modalrec.data.split import seen_targets

    setup_logging()
    source = _data_config(name, overrides or []).dataset
    raw = load_source(name, source.columns, source.sep)
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
    seen = seen_targets(ds)
    verdict = "ok" if not (seen["valid"] or seen["test"]) else "never hittable: evaluation masks them"
    console.print(
        f"  seen targets: {seen['valid']:,} valid targets in train, {seen['test']:,} test targets in train or valid ({verdict})"
    )


@data_app.command("prepare")
def data_prepare(
    name: Annotated[str, typer.Argument(help="A named dataset or a saved dataset directory.")],
    out: Annotated[Path, typer.Option(help="Directory to write the processed, split dataset to.")],
    overrides: Annotated[list[str] | None, typer.Argument(help="dataset.preprocess.* / dataset.split.* overrides.")] = None,
    family: Annotated[str, typer.Option(help="Split defaults of this model family: general or sequential.")] = "general",
) -> None:
    """Preprocess and split a dataset once and save it (train on it with dataset=<out>)."""
    from modalrec.data.storage import save_dataset

    setup_logging()
    ds, _ = _prepared(name, overrides or [], family)
    save_dataset(ds, out)
    console.print(ds.describe())
    console.print(f"saved to {out}")


@data_app.command("import")
def data_import(
    file: Annotated[Path, typer.Argument(help="Interactions, one per row under a header: CSV, TSV (also .gz) or Parquet.")],
    out: Annotated[Path, typer.Option(help="New folder to save the dataset in; train on it with dataset=<out>.")],
    user: Annotated[str | None, typer.Option(help="User id column (default: the first of user_id, userId, user, ...).")] = None,
    item: Annotated[
        str | None, typer.Option(help="Item id column (default: the first of item_id, itemId, movieId, item, ...).")
    ] = None,
    time: Annotated[
        str | None, typer.Option(help="Time column: epoch seconds or dates (default: timestamp, time, date, ... if present).")
    ] = None,
    rating: Annotated[str | None, typer.Option(help="Rating column (default: rating, score, stars, ... if present).")] = None,
    sep: Annotated[str | None, typer.Option(help="Column separator (default: from the suffix, else sniffed).")] = None,
    items: Annotated[
        Path | None,
        typer.Option(
            help="Item table, one row per item: the id column (named as --item, or a common name) and metadata (title, ...) for "
            "recommend and serve."
        ),
    ] = None,
    title: Annotated[str | None, typer.Option(help="Column of --items shown as the title (default: 'title').")] = None,
) -> None:
    """Read your own interaction table into a dataset folder (raw ids kept as written in the file)."""
    from modalrec.data.sources.tabular import read_item_table, read_table
    from modalrec.data.storage import save_dataset

    setup_logging()
    if out.exists() and not (out / "meta.json").is_file() and (not out.is_dir() or any(out.iterdir())):
        raise ModalRecError(f"--out {out} exists and is not a saved dataset; choose a new folder")
    columns = {
        role: column for role, column in (("user", user), ("item", item), ("timestamp", time), ("rating", rating)) if column
    }
    ds = read_table(file, columns, sep, name=out.name)
    if items is not None:
        ds = read_item_table(ds, items, item, title, sep)
    save_dataset(ds, out)
    console.print(ds.describe())
    console.print(f"columns: {ds.meta['source']['columns']}", markup=False, highlight=False)
    if items is not None:
        console.print(
            f"item metadata {sorted(ds.item_meta)} for {ds.meta['source']['items_listed']:,} of {ds.n_items:,} items",
            markup=False,
        )
    console.print(f"saved to {out}; train on it with dataset={out}", markup=False, highlight=False)


def main() -> None:
    """Entry point: run the app, turning user mistakes into one-line errors (exit status 2)."""
    try:
        try:
            app()  # usage errors and --help are handled (and exit) inside typer
        except ModalRecError as err:
            print_error(err)
            sys.exit(2)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            sys.exit(130)
    except SystemExit as done:
        # A torchrun worker that finished (or refused a user mistake) ends here without finalising the
        # interpreter. A crashed one keeps the usual exit: it records its error for torchrun first, and
        # its peers notice it only once it is gone, so the launcher names the rank that failed first.
        _end_distributed_worker(done.code)
        raise


def _distributed_worker() -> ModuleType | None:
    """modalrec.train.distributed when this process joined a process group, else None (not imported here:
    that would import torch for every command)."""
    module = sys.modules.get("modalrec.train.distributed")  # every command that can join one imported it
    return module if module is not None and module.joined_group() else None


def _end_distributed_worker(code: int | str | None) -> None:
    """A torchrun worker ends here, without finalising the interpreter (distributed.end_worker_process)."""
    module = _distributed_worker()
    if module is not None:
        module.end_worker_process(code)


if __name__ == "__main__":
    main()
