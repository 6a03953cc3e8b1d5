"""Benchmark suites: models x datasets x seeds (x overrides) from one YAML file, resumable, with progress.

A suite file::

    name: cf-ml1m-diffrec-clean
    out: runs/suites/cf-ml1m-diffrec-clean     # default runs/suites/<name>
    datasets: [ml-1m-diffrec-clean]            # names, or {name, label, overrides}
    seeds: [1, 2]
    common: {train.epochs: 30, eval.ks: "10,20,50"}   # overrides of every run (mapping or list of key=value)
    metrics: [recall@20, ndcg@20]              # table columns (default: recall and ndcg at every K)
    models:
      - pop
      - {name: bpr, overrides: {train.lr: 0.005}}
      - {name: sasrec, label: sasrec-bpr, overrides: {model.loss: bpr}}
    search:                                    # optional: tune before the seeded runs, on validation only
      trials: 12                               # the same budget for every tuned model
      models: [bpr]                            # labels to tune (default: every model that declares a space)
      overrides: {train.epochs: 10}            # cheaper settings for trials
      space: {bpr: {train.lr: [log, 1e-4, 1e-2]}}   # per-label spaces replacing the model's own;
                                               # '*': the space of models that declare none

Every run is an ordinary run directory, ``<out>/runs/<dataset>__<label>__seed<seed>``. A run with a
``results.json`` is finished and skipped; a run with ``checkpoints/last.pt`` is resumed; anything else
left by a crash is removed and started again. A finished run whose saved config differs from what the
suite now asks for is an error (the table would mix settings). ``<out>/suite.json`` maps run names to
labels, datasets and seeds for :mod:`modalrec.experiments.report`.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modalrec.config import load_yaml, resolve
from modalrec.errors import ConfigError, ModalRecError, UnknownNameError, nearest
from modalrec.experiments.search import (
    SearchResult,
    SearchSettings,
    model_space,
    search,
)
from modalrec.train.rundir import to_jsonable, write_text_atomic

log = logging.getLogger("modalrec")

SUITE_KEYS = ("name", "out", "datasets", "seeds", "common", "metrics", "models", "search", "description")
# settings that never change a run's result, so a finished run need not match them
_IGNORED_KEYS = ("run.", "train.progress", "train.threads", "eval.user_chunk", "eval.item_chunk")


def as_override_list(value: Any, where: str) -> list[str]:
    """Overrides from YAML: a mapping {key: value} or a list of "key=value" strings."""
    if value is None:
        return []
    if isinstance(value, dict):
        out = []
        for key, item in value.items():
            text = ",".join(str(v) for v in item) if isinstance(item, list) else ("none" if item is None else str(item))
            out.append(f"{key}={text}")
        return out
    if isinstance(value, list) and all(isinstance(v, str) and "=" in v for v in value):
        return list(value)
    raise ConfigError(f"{where}: overrides are a mapping {{key: value}} or a list of 'key=value' strings, got {value!r}")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text).strip("-") or "x"


@dataclass
class Entry:
    """A model or dataset of the suite: its registered name, its label in tables, its overrides."""

    name: str
    label: str
    overrides: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, value: Any, kind: str, where: str) -> Entry:
        if isinstance(value, str):
            return cls(value, _slug(Path(value).name) if kind == "dataset" else value)
        if isinstance(value, dict) and "name" in value:
            unknown = set(value) - {"name", "label", "overrides"}
            if unknown:
                raise ConfigError(f"{where}: unknown {kind} entry key(s) {sorted(unknown)}; use name, label, overrides")
            name = str(value["name"])
            label = str(value.get("label") or (_slug(Path(name).name) if kind == "dataset" else name))
            return cls(name, _slug(label), as_override_list(value.get("overrides"), f"{where} ({kind} {name})"))
        raise ConfigError(f"{where}: a {kind} is a name or {{name, label, overrides}}, got {value!r}")


@dataclass
class PlannedRun:
    """One cell of the suite: a dataset, a model and a seed."""

    dataset: Entry
    model: Entry
    seed: int
    out: Path

    @property
    def name(self) -> str:
        return f"{self.dataset.label}__{self.model.label}__seed{self.seed}"

    @property
    def path(self) -> Path:
        return self.out / "runs" / self.name


@dataclass
class Suite:
    """A parsed suite file; :meth:`plan` lists its runs."""

    name: str
    out: Path
    datasets: list[Entry]
    models: list[Entry]
    seeds: list[int]
    common: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    search: SearchSettings | None = None
    search_models: list[str] | None = None  # labels to tune; None = every model with a space
    search_overrides: list[str] = field(default_factory=list)
    search_spaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: Path | None = None

    @classmethod
    def load(cls, path: str | Path, out: str | Path | None = None) -> Suite:
        path = Path(path)
        raw = load_yaml(path)
        where = str(path)
        unknown = set(raw) - set(SUITE_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown suite key(s) {sorted(unknown)}; valid keys: {', '.join(SUITE_KEYS)}")
        for key in ("datasets", "models"):
            if not isinstance(raw.get(key), list) or not raw[key]:
                raise ConfigError(f"{where}: '{key}' must be a non-empty list")
        name = _slug(str(raw.get("name") or path.stem))
        seeds = raw.get("seeds", [2024])
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ConfigError(f"{where}: 'seeds' must be a non-empty list of integers, got {seeds!r}")
        datasets = [Entry.parse(v, "dataset", where) for v in raw["datasets"]]
        models = [Entry.parse(v, "model", where) for v in raw["models"]]
        for kind, entries in (("dataset", datasets), ("model", models)):
            labels = [e.label for e in entries]
            dupes = sorted({lab for lab in labels if labels.count(lab) > 1})
            if dupes:
                raise ConfigError(f"{where}: {kind} label(s) {dupes} appear twice; give each entry its own 'label'")
        suite = cls(
            name=name,
            out=Path(out) if out is not None else Path(raw.get("out") or Path("runs") / "suites" / name),
            datasets=datasets,
            models=models,
            seeds=[int(s) for s in seeds],
            common=as_override_list(raw.get("common"), f"{where} (common)"),
            metrics=[str(m).lower() for m in raw.get("metrics") or []],
            source=path,
        )
        if raw.get("search") is not None:
            suite._parse_search(raw["search"], where)
        return suite

    def _parse_search(self, section: Any, where: str) -> None:
        if not isinstance(section, dict):
            raise ConfigError(f"{where}: 'search' is a mapping (trials, metric, pruner, startup_trials, seed, models, overrides, space)")
        settings_keys = set(SearchSettings.__dataclass_fields__)
        unknown = set(section) - settings_keys - {"models", "overrides", "space"}
        if unknown:
            raise ConfigError(f"{where}: unknown search key(s) {sorted(unknown)}")
        self.search = SearchSettings(**{k: v for k, v in section.items() if k in settings_keys})
        labels = [m.label for m in self.models]
        if section.get("models") is not None:
            self.search_models = [str(m) for m in section["models"]]
        spaces = section.get("space") or {}
        for label in [*(self.search_models or []), *spaces]:
            if label not in labels and label != "*":
                raise ConfigError(f"{where}: search names model '{label}', which is not a model label of the suite ({', '.join(labels)})")
        self.search_overrides = as_override_list(section.get("overrides"), f"{where} (search.overrides)")
        self.search_spaces = {str(k): v for k, v in spaces.items()}

    # ------------------------------------------------------------------ planning
    def plan(self) -> list[PlannedRun]:
        """Every run, dataset-major then model then seed (the order they run in)."""
        return [PlannedRun(d, m, s, self.out) for d in self.datasets for m in self.models for s in self.seeds]

    def base_overrides(self, dataset: Entry, model: Entry) -> list[str]:
        """A (dataset, model) cell's overrides before seeds and tuned values; later ones win."""
        return [f"model={model.name}", f"dataset={dataset.name}", *self.common, *dataset.overrides, *model.overrides]

    def run_overrides(self, run: PlannedRun, tuned: list[str]) -> list[str]:
        """The run's overrides; ``{seed}``, ``{dataset}`` (label) and ``{runs}`` (the suite's run folder) in
        values are filled in, so a run can name another run of its cell, e.g. HDRM's
        ``model.stage1_run: "{runs}/{dataset}__hgcf__seed{seed}"`` (list that model first)."""
        fields = {"{seed}": str(run.seed), "{dataset}": run.dataset.label, "{runs}": str(run.path.parent)}
        overrides = []
        for text in [*self.base_overrides(run.dataset, run.model), *tuned]:
            for key, value in fields.items():
                text = text.replace(key, value)
            overrides.append(text)
        return [
            *overrides, f"train.seed={run.seed}",
            f"run.dir={run.path.parent}", f"run.name={run.path.name}", "train.progress=false",
        ]

    def tuned_models(self) -> list[Entry]:
        """The models the search section tunes."""
        if self.search is None:
            return []
        from modalrec.models.base import get_model_class

        if self.search_models is not None:
            return [m for m in self.models if m.label in self.search_models]
        return [m for m in self.models if self.space_for(m) is not None or get_model_class(m.name).search_space]

    def space_for(self, model: Entry) -> dict[str, Any] | None:
        """The suite's space for ``model``: its label's, else None (the model's own) when the model declares one,
        else the '*' space for a trainable model (a closed-form model without a space has nothing to tune)."""
        from modalrec.models.base import get_model_class

        if model.label in self.search_spaces:
            return self.search_spaces[model.label]
        cls = get_model_class(model.name)
        return None if cls.search_space or cls.train_view == "none" else self.search_spaces.get("*")

    def search_dir(self, dataset: Entry, model: Entry) -> Path:
        return self.out / "search" / f"{dataset.label}__{model.label}"

    def validate(self) -> None:
        """Check every name and key before anything runs: unknown models/datasets, bad overrides."""
        from modalrec.data.registry import available_datasets
        from modalrec.models.base import get_model_class, registered_models

        known_models = registered_models()
        missing = [m.name for m in self.models if m.name.lower() not in known_models]
        if missing:
            hints = [f"'{name}' (did you mean '{close}'?)" if (close := nearest(name.lower(), known_models)) else f"'{name}'" for name in missing]
            raise ConfigError(
                f"suite {self.source or self.name} names model(s) not registered in this installation: {', '.join(hints)}. "
                f"Known models: {', '.join(known_models)}. Remove them from the suite or install the version that has them."
            )
        known_data = available_datasets()
        for d in self.datasets:
            if d.name not in known_data and not (Path(d.name).expanduser() / "meta.json").exists():
                raise UnknownNameError("dataset", d.name, known_data)
        for d in self.datasets:
            families = {}
            for m in self.models:
                cfg = resolve(self.base_overrides(d, m))
                if cfg.dataset.split.method == "auto":
                    families.setdefault(get_model_class(m.name).family, []).append(m.label)
            if len(families) > 1:
                mix = "; ".join(f"{family}: {', '.join(labels)}" for family, labels in families.items())
                raise ConfigError(
                    f"suite {self.source or self.name}: on dataset '{d.label}' the models mix families "
                    f"({mix}), whose default splits differ, "
                    "so their test users could differ; set dataset.split.method (given, loo, temporal, ...) in 'common'"
                )
        for m in self.tuned_models():
            model_space(self.base_overrides(self.datasets[0], m) + self.search_overrides, self.space_for(m))


# ---------------------------------------------------------------------- running
@dataclass
class RunOutcome:
    run: PlannedRun
    status: str  # done (skipped) | trained | resumed | failed
    results: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(planned: dict[str, Any], saved: dict[str, Any]) -> list[str]:
    """Keys where a finished run's saved config differs from the planned one (result-neutral keys ignored)."""
    a, b = _flatten(planned), _flatten(saved)
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(_IGNORED_KEYS) or (key == "dataset.split.method" and a.get(key) == "auto"):
            continue
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {b.get(key)!r} in the run, {a.get(key)!r} in the suite")
    return diffs


def _check_finished(run: PlannedRun, overrides: list[str]) -> None:
    saved = load_yaml(run.path / "config.yaml")
    diffs = config_differences(to_jsonable(resolve(overrides).to_dict()), saved)
    if diffs:
        raise ConfigError(
            f"finished run {run.path} was made with other settings ({'; '.join(diffs[:4])}); "
            "delete that run directory to re-run it, or give the suite another out"
        )


def execute_run(suite: Suite, run: PlannedRun, tuned: list[str]) -> RunOutcome:
    """Run one cell unless finished: resume an interrupted run, restart one that left nothing to resume."""
    from modalrec.train.experiment import train

    overrides = suite.run_overrides(run, tuned)
    results_path = run.path / "results.json"
    if results_path.exists():
        _check_finished(run, overrides)
        return RunOutcome(run, "done", json.loads(results_path.read_text()))
    if (run.path / "checkpoints" / "last.pt").exists() and (run.path / "config.yaml").exists():
        _check_finished(run, overrides)
        _, results = train(None, resume=run.path)
        return RunOutcome(run, "resumed", results)
    if run.path.exists():
        log.info("removing %s: an earlier attempt stopped before its first checkpoint", run.path)
        shutil.rmtree(run.path)
    _, results = train(resolve(overrides))
    return RunOutcome(run, "trained", results)


def write_manifest(suite: Suite, plan: list[PlannedRun]) -> None:
    """``<out>/suite.json``: run name -> label, dataset, seed (read by the report builder)."""
    payload = {
        "name": suite.name,
        "source": str(suite.source) if suite.source else None,
        "metrics": suite.metrics,
        "runs": {r.name: {"label": r.model.label, "model": r.model.name, "dataset": r.dataset.label, "seed": r.seed} for r in plan},
    }
    write_text_atomic(suite.out / "suite.json", json.dumps(payload, indent=2) + "\n")


def run_suite(suite: Suite, keep_going: bool = True, progress: bool = True) -> list[RunOutcome]:
    """Validate, tune (if the suite asks), then run every cell; returns one outcome per planned run.

    With ``keep_going`` a run that fails with a user-facing error (e.g. a NaN loss) is recorded and the
    suite goes on; the failure is reported at the end and the run is retried on the next invocation.
    """
    suite.validate()
    plan = suite.plan()
    suite.out.mkdir(parents=True, exist_ok=True)
    write_manifest(suite, plan)
    tuned: dict[tuple[str, str], list[str]] = {}
    outcomes: list[RunOutcome] = []
    with _suite_progress(progress, len(plan) + len(suite.tuned_models()) * len(suite.datasets)) as bar:
        for d in suite.datasets:
            for m in suite.tuned_models():
                bar(f"search {m.label} on {d.label}", 0)
                result = _tune(suite, d, m, lambda done, budget, m=m, d=d: bar(f"search {m.label} on {d.label}: {done}/{budget} trials", 0))
                tuned[(d.label, m.label)] = result.overrides
                bar(f"searched {m.label} on {d.label}: valid {result.metric}={result.best_value:.4f}", 1)
        for run in plan:
            bar(f"{run.model.label} on {run.dataset.label}, seed {run.seed}", 0)
            try:
                outcome = execute_run(suite, run, tuned.get((run.dataset.label, run.model.label), []))
            except ModalRecError as err:
                if not keep_going or isinstance(err, ConfigError):
                    raise
                log.error("run %s failed: %s", run.name, err)
                outcome = RunOutcome(run, "failed", error=str(err))
            outcomes.append(outcome)
            bar(f"{run.name}: {outcome.status}", 1)
    return outcomes


def _tune(suite: Suite, dataset: Entry, model: Entry, on_trial: Callable[[int, int], None]) -> SearchResult:
    overrides = [*suite.base_overrides(dataset, model), *suite.search_overrides, f"train.seed={suite.seeds[0]}"]
    return search(overrides, suite.search_dir(dataset, model), suite.search, suite.space_for(model), on_trial)


class _suite_progress:
    """A rich progress bar over the suite's steps (on a terminal); ``bar(description, advance)``."""

    def __init__(self, enabled: bool, total: int):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal
        self.total = total
        self.progress = None

    def __enter__(self):
        if not self.enabled:
            return lambda description, advance: log.info("suite: %s", description) if advance == 0 else None
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("suite"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
            console=self.console,
        )
        self.progress.__enter__()
        task = self.progress.add_task("", total=self.total)
        return lambda description, advance: self.progress.update(task, advance=advance, description=description)

    def __exit__(self, *exc: Any) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)
