"""Benchmark suites: models x datasets x seeds (x overrides) from one YAML file, resumable, with progress.

A suite file::

    name: cf-ml1m-diffrec-clean
    out: runs/suites/cf-ml1m-diffrec-clean     # default runs/suites/<name>
    datasets: [ml-1m-diffrec-clean]            # names, or {name, label, overrides}
    seeds: [1, 2, 3]                           # default [1, 2, 3]: the protocol asks for >= 3 training seeds
    select: recall@20                          # THE selection metric: tuning, early stopping, checkpoint choice
    common: {train.epochs: 30, eval.ks: "10,20,50"}   # overrides of every run (mapping or list of key=value)
    metrics: [recall@20, ndcg@20]              # table columns (default: recall and ndcg at every K)
    models:
      - pop
      - {name: bpr, overrides: {train.lr: 0.005}}
      - {name: sasrec, label: sasrec-bpr, overrides: {model.loss: bpr}}
      - {name: ease, reference: {value: 0.18, metric: recall@20, source: "paper X, Table 2"}}   # reference column
      - {name: hgcf, tuning: {trials: 6, metric: ndcg@10, source: "suite cf-small"}}  # a fixed point tuned elsewhere
      - {name: bert4rec, seeds: [1]}           # fewer seeds than the suite's (a budget cut): the table marks "1 (< 3)"
    search:                                    # optional: tune before the seeded runs, on validation only
      trials: 12                               # the same budget for every tuned model
      budget: {ease: 20}                       # per-label trial budgets replacing 'trials'
      models: [bpr]                            # labels to tune (default: every model that declares a space)
      overrides: {train.epochs: 10}            # cheaper settings for trials
      space: {bpr: {train.lr: [log, 1e-4, 1e-2]}}   # per-label spaces replacing the model's own;
                                               # '*': the space of models that declare none

Every run is an ordinary run directory, ``<out>/runs/<dataset>__<label>__seed<seed>``. A run with a
``results.json`` is finished and skipped; a run with ``checkpoints/last.pt`` is resumed; anything else
left by a crash is removed and started again. A finished run whose saved config differs from what the
suite now asks for is an error (the table would mix settings). ``<out>/suite.json`` maps run names to
labels, datasets and seeds for :mod:`modalrec.experiments.report`, with the suite's protocol (selection and
tuning metric, each model's declared tuning budget, searched keys and sampler seed, its reference value), so
the tables say how every row was obtained.

The protocol is checked when the suite is loaded: one selection metric for the whole suite (an override that
selects on another one is refused), a reference names a metric of the table, a declared budget names a model.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modalrec.config import load_yaml, resolve
from modalrec.console import progress as progress_bar
from modalrec.console import progress_log
from modalrec.errors import ConfigError, ModalRecError, UnknownNameError, nearest
from modalrec.experiments.search import (
    SearchResult,
    SearchSettings,
    check_grid,
    model_space,
    search,
)
from modalrec.train.rundir import to_jsonable, write_text_atomic

log = logging.getLogger(__name__)

SUITE_KEYS = ("name", "out", "datasets", "seeds", "select", "common", "metrics", "models", "search", "description")
PROTOCOL_SEEDS = 3  # training seeds a leaderboard row needs; rows with fewer are marked in the tables
DEFAULT_SEEDS = (1, 2, 3)
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


def _overridden(overrides: list[str], key: str) -> str | None:
    """The last value ``overrides`` give ``key`` (None when they do not set it)."""
    values = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].strip() == key]
    return values[-1].strip().lower() if values else None


@dataclass
class Reference:
    """A published (or official-code) value for a row: shown beside the row's own, never compared by tests."""

    value: float
    metric: str
    source: str

    @classmethod
    def parse(cls, value: Any, where: str) -> Reference:
        keys = {"value", "metric", "source"}
        if not isinstance(value, dict) or set(value) != keys:
            raise ConfigError(f"{where}: a reference is {{value: number, metric: name@K, source: text}}, got {value!r}")
        number, metric, source = value["value"], value["metric"], value["source"]
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not isinstance(source, str) or not source.strip():
            raise ConfigError(f"{where}: a reference needs a numeric value and a non-empty source, got {value!r}")
        return cls(float(number), str(metric).lower(), source.strip())


@dataclass
class DeclaredTuning:
    """How a model's fixed point was chosen outside this suite (its trials, the metric they maximised, where)."""

    trials: int
    metric: str
    source: str

    @classmethod
    def parse(cls, value: Any, where: str) -> DeclaredTuning:
        keys = {"trials", "metric", "source"}
        if not isinstance(value, dict) or set(value) != keys:
            raise ConfigError(f"{where}: 'tuning' is {{trials: int, metric: name@K, source: text}}, got {value!r}")
        trials = value["trials"]
        if isinstance(trials, bool) or not isinstance(trials, int) or trials < 0:
            raise ConfigError(f"{where}: tuning.trials must be an integer >= 0, got {trials!r}")
        return cls(trials, str(value["metric"]).lower(), str(value["source"]))


@dataclass
class Entry:
    """A model or dataset of the suite: its registered name, its label in tables, its overrides; a model may
    also carry a reference value, the declared provenance of a fixed point and its own seeds (a subset of a
    budget that could not run them all; None = the suite's)."""

    name: str
    label: str
    overrides: list[str] = field(default_factory=list)
    reference: Reference | None = None
    tuning: DeclaredTuning | None = None
    seeds: list[int] | None = None

    @classmethod
    def parse(cls, value: Any, kind: str, where: str) -> Entry:
        if isinstance(value, str):
            return cls(value, _slug(Path(value).name) if kind == "dataset" else value)
        allowed = {"name", "label", "overrides"} | ({"reference", "tuning", "seeds"} if kind == "model" else set())
        if isinstance(value, dict) and "name" in value:
            unknown = set(value) - allowed
            if unknown:
                raise ConfigError(f"{where}: unknown {kind} entry key(s) {sorted(unknown)}; use {', '.join(sorted(allowed))}")
            name = str(value["name"])
            label = str(value.get("label") or (_slug(Path(name).name) if kind == "dataset" else name))
            inner = f"{where} ({kind} {name})"
            return cls(
                name,
                _slug(label),
                as_override_list(value.get("overrides"), inner),
                Reference.parse(value["reference"], inner) if value.get("reference") is not None else None,
                DeclaredTuning.parse(value["tuning"], inner) if value.get("tuning") is not None else None,
                parse_seeds(value["seeds"], inner) if "seeds" in value else None,
            )
        raise ConfigError(f"{where}: a {kind} is a name or {{{', '.join(sorted(allowed))}}}, got {value!r}")


def parse_seeds(value: Any, where: str) -> list[int]:
    """A non-empty list of distinct integer seeds."""
    if not isinstance(value, list) or not value or not all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        raise ConfigError(f"{where}: 'seeds' must be a non-empty list of integers, got {value!r}")
    if len(set(value)) != len(value):
        raise ConfigError(f"{where}: 'seeds' lists a seed twice: {value!r}")
    return [int(s) for s in value]


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
    search_budget: dict[str, int] = field(default_factory=dict)  # label -> trials, replacing search.trials
    select: str = "ndcg@10"  # the one validation metric that tunes, early-stops and selects every run
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
        seeds = parse_seeds(raw.get("seeds", list(DEFAULT_SEEDS)), where)
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
            seeds=seeds,
            common=as_override_list(raw.get("common"), f"{where} (common)"),
            metrics=[str(m).lower() for m in raw.get("metrics") or []],
            source=path,
        )
        if raw.get("search") is not None:
            suite._parse_search(raw["search"], where)
        suite._check_protocol(raw.get("select"), where)
        return suite

    def _check_protocol(self, declared: Any, where: str) -> None:
        """One selection metric per suite: the declared ``select`` (or the one every override agrees on, else the
        default), refused where a common, dataset, model or search override selects on another; references must
        name a metric of the table."""
        from modalrec.config import TrainConfig

        sources = [("common", self.common), ("search.overrides", self.search_overrides)]
        sources += [(f"dataset {d.label}", d.overrides) for d in self.datasets]
        sources += [(f"model {m.label}", m.overrides) for m in self.models]
        found = {name: value for name, overrides in sources if (value := _overridden(overrides, "train.select")) is not None}
        if declared is not None:
            select = str(declared).strip().lower()
            if "@" not in select:
                raise ConfigError(f"{where}: 'select' is a validation metric such as recall@20 or ndcg@10, got {declared!r}")
            clashes = {name: value for name, value in found.items() if value != select}
            if clashes:
                listed = ", ".join(f"{name} sets train.select={value}" for name, value in clashes.items())
                raise ConfigError(
                    f"{where}: the suite selects on {select} but {listed}; one selection metric per suite "
                    "(tuning, early stopping and checkpoint choice): remove those overrides or change 'select'"
                )
        elif len(set(found.values())) > 1:
            listed = ", ".join(f"{name}: {value}" for name, value in found.items())
            raise ConfigError(
                f"{where}: the runs would select checkpoints on different metrics ({listed}); one selection metric "
                "per suite: set 'select' (e.g. select: recall@20) and drop the per-model train.select overrides"
            )
        else:
            select = next(iter(found.values()), TrainConfig.select.lower())
        self.select = select
        self.common = [f"train.select={select}", *self.common]
        for m in self.models:
            if m.reference is not None and self.metrics and m.reference.metric not in self.metrics:
                raise ConfigError(
                    f"{where}: the reference of model {m.label} is for {m.reference.metric}, which is not a table "
                    f"column ({', '.join(self.metrics)})"
                )

    @property
    def tune_metric(self) -> str:
        """The validation metric the search maximises: ``search.metric`` when set, else the selection metric."""
        metric = self.search.metric if self.search is not None else None
        return str(metric).lower() if metric else self.select

    def search_settings(self, model: Entry) -> SearchSettings:
        """The search settings of one model: the suite's, with the model's declared budget (an unset metric is
        the runs' train.select, i.e. the suite's selection metric)."""
        if self.search is None:
            raise ConfigError(f"suite {self.name} has no search section")
        return dataclasses.replace(self.search, trials=self.search_budget.get(model.label, self.search.trials))

    def _parse_search(self, section: Any, where: str) -> None:
        if not isinstance(section, dict):
            raise ConfigError(
                f"{where}: 'search' is a mapping (trials, metric, pruner, startup_trials, seed, models, overrides, space)"
            )
        settings_keys = set(SearchSettings.__dataclass_fields__)
        unknown = set(section) - settings_keys - {"models", "overrides", "space", "budget"}
        if unknown:
            raise ConfigError(f"{where}: unknown search key(s) {sorted(unknown)}")
        self.search = SearchSettings(**{k: v for k, v in section.items() if k in settings_keys})
        labels = [m.label for m in self.models]
        if section.get("models") is not None:
            self.search_models = [str(m) for m in section["models"]]
        spaces = section.get("space") or {}
        budget = section.get("budget") or {}
        if not isinstance(budget, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in budget.values()
        ):
            raise ConfigError(f"{where}: search.budget maps model labels to trial counts >= 1, got {budget!r}")
        self.search_budget = {str(k): int(v) for k, v in budget.items()}
        for label in [*(self.search_models or []), *spaces, *self.search_budget]:
            if label not in labels and label != "*":
                raise ConfigError(
                    f"{where}: search names model '{label}', which is not a model label of the suite ({', '.join(labels)})"
                )
        self.search_overrides = as_override_list(section.get("overrides"), f"{where} (search.overrides)")
        self.search_spaces = {str(k): v for k, v in spaces.items()}

    # ------------------------------------------------------------------ planning
    def plan(self) -> list[PlannedRun]:
        """Every run, dataset-major then model then seed (the order they run in); a model's own seeds replace the suite's."""
        return [PlannedRun(d, m, s, self.out) for d in self.datasets for m in self.models for s in (m.seeds or self.seeds)]

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
            *overrides,
            f"train.seed={run.seed}",
            f"run.dir={run.path.parent}",
            f"run.name={run.path.name}",
            "train.progress=false",
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
            hints = [
                f"'{name}' (did you mean '{close}'?)" if (close := nearest(name.lower(), known_models)) else f"'{name}'"
                for name in missing
            ]
            raise ConfigError(
                f"suite {self.source or self.name} names model(s) not registered in this installation: {', '.join(hints)}. "
                f"Known models: {', '.join(known_models)}. Remove them from the suite or install the version that has them."
            )
        known_data = available_datasets()
        for d in self.datasets:
            if d.name not in known_data and not (Path(d.name).expanduser() / "meta.json").exists():
                raise UnknownNameError("dataset", d.name, known_data)
        for d in self.datasets:
            families: dict[str, list[str]] = {}
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
            space = model_space(self.base_overrides(self.datasets[0], m) + self.search_overrides, self.space_for(m))
            settings = self.search_settings(m)
            if settings.sampler == "grid":
                try:
                    check_grid(space, settings.trials)
                except ConfigError as err:
                    raise ConfigError(
                        f"suite {self.source or self.name}, model {m.label}: {err} (search.budget.{m.label})"
                    ) from None


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


def config_differences(planned: dict[str, Any], saved: dict[str, Any], defaults: dict[str, Any] | None = None) -> list[str]:
    """Keys where a finished run's saved config differs from the planned one (result-neutral keys ignored). A key
    the saved config lacks (added to ModalRec after the run was made) counts only if the suite sets it away from
    its value in ``defaults`` (the config without the suite's overrides)."""
    a, b, base = _flatten(planned), _flatten(saved), _flatten(defaults or {})
    diffs = []
    for key in sorted(set(a) | set(b)):
        if key.startswith(_IGNORED_KEYS) or (key == "dataset.split.method" and a.get(key) == "auto"):
            continue
        if key not in b and key in base and a.get(key) == base[key]:
            continue
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {b.get(key)!r} in the run, {a.get(key)!r} in the suite")
    return diffs


def _check_finished(run: PlannedRun, overrides: list[str]) -> None:
    saved = load_yaml(run.path / "config.yaml")
    names = [o for o in overrides if o.startswith(("model=", "dataset="))]
    diffs = config_differences(to_jsonable(resolve(overrides).to_dict()), saved, to_jsonable(resolve(names).to_dict()))
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


def tuning_record(suite: Suite, model: Entry) -> dict[str, Any] | None:
    """How ``model``'s hyper-parameters were chosen, for the tables: the suite's search (budget, searched keys,
    metric, sampler and its seed), the declared provenance of a fixed point, or None (nothing tuned)."""
    if model in suite.tuned_models():
        settings = suite.search_settings(model)
        space = model_space(suite.base_overrides(suite.datasets[0], model) + suite.search_overrides, suite.space_for(model))
        return {
            "trials": settings.trials,
            "params": sorted(space),
            "metric": suite.tune_metric,
            "sampler": settings.sampler,
            "sampler_seed": settings.seed,
            "startup_trials": settings.startup_trials,
            "pruner": settings.pruner,
            "source": "this suite",
        }
    if model.tuning is not None:
        return {**dataclasses.asdict(model.tuning), "params": []}
    return None


def write_manifest(suite: Suite, plan: list[PlannedRun], searches: dict[str, Any] | None = None) -> None:
    """``<out>/suite.json``: run name -> label, dataset, seed, and the protocol the tables print (selection
    metric, each model's tuning and reference, the finished searches' outcomes)."""
    payload = {
        "name": suite.name,
        "source": str(suite.source) if suite.source else None,
        "metrics": suite.metrics,
        "protocol": {"select": suite.select, "tune_metric": suite.tune_metric, "seeds": suite.seeds, "min_seeds": PROTOCOL_SEEDS},
        "models": {
            m.label: {
                "tuning": tuning_record(suite, m),
                "reference": dataclasses.asdict(m.reference) if m.reference is not None else None,
            }
            for m in suite.models
        },
        "searches": searches or {},
        "runs": {
            r.name: {"label": r.model.label, "model": r.model.name, "dataset": r.dataset.label, "seed": r.seed} for r in plan
        },
    }
    write_text_atomic(suite.out / "suite.json", json.dumps(to_jsonable(payload), indent=2) + "\n")


@dataclass(frozen=True)
class Selection:
    """The part of a suite one invocation runs (``--only``, ``--datasets``, ``--seeds``); ``None`` keeps every value.

    The manifest still describes the whole suite, so a suite filled in over several invocations (one seed
    or one dataset at a time, as a budget allows) reports as one table.
    """

    labels: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None

    def check(self, suite: Suite) -> None:
        """Every named label, dataset and seed must be one of the suite's (else a ConfigError listing the valid ones), and
        together they must select at least one run."""
        seeds = sorted({s for m in suite.models for s in (m.seeds or suite.seeds)})
        checks: list[tuple[str, str, tuple[Any, ...] | None, list[Any]]] = [
            ("--only", "model labels", self.labels, [m.label for m in suite.models]),
            ("--datasets", "dataset labels", self.datasets, [d.label for d in suite.datasets]),
            ("--seeds", "seeds", self.seeds, seeds),
        ]
        for flag, what, asked, valid in checks:
            unknown = [str(v) for v in asked or () if v not in valid]
            if unknown:
                raise ConfigError(
                    f"{flag} names {', '.join(unknown)}, not {what} of suite {suite.name} ({', '.join(map(str, valid))})"
                )
        if not any(self.keeps(run) for run in suite.plan()):
            raise ConfigError(
                f"--only/--datasets/--seeds select no run of suite {suite.name}: "
                "a model entry's own 'seeds' exclude the seeds asked"
            )

    def tunes(self, dataset: Entry, model: Entry) -> bool:
        """Whether the (dataset, model) cell is in this selection (its search runs if the suite tunes the model)."""
        return (self.labels is None or model.label in self.labels) and (self.datasets is None or dataset.label in self.datasets)

    def keeps(self, run: PlannedRun) -> bool:
        """Whether ``run`` is in this selection."""
        return self.tunes(run.dataset, run.model) and (self.seeds is None or run.seed in self.seeds)

    def searches(self, suite: Suite) -> list[tuple[Entry, Entry]]:
        """The (dataset, model) cells whose search this selection runs: the selected cells of tuned models."""
        return [(d, m) for d in suite.datasets for m in suite.tuned_models() if self.tunes(d, m)]


def run_suite(
    suite: Suite, keep_going: bool = True, progress: bool = True, selection: Selection | None = None
) -> list[RunOutcome]:
    """Validate, tune (if the suite asks), then run every cell; returns one outcome per planned run.

    With ``keep_going`` a run that fails with a user-facing error (e.g. a NaN loss) is recorded and the
    suite goes on; the failure is reported at the end and the run is retried on the next invocation.
    ``selection``: run (and tune) just these model labels, datasets and seeds now (see :class:`Selection`).
    """
    suite.validate()
    selection = selection or Selection()
    selection.check(suite)
    full_plan = suite.plan()
    plan = [r for r in full_plan if selection.keeps(r)]
    searches_now = selection.searches(suite)
    suite.out.mkdir(parents=True, exist_ok=True)
    previous = suite.out / "suite.json"
    # the search outcomes of earlier invocations stay (a resumed study re-reports its own)
    searches: dict[str, Any] = dict(json.loads(previous.read_text()).get("searches") or {}) if previous.exists() else {}
    write_manifest(suite, full_plan, searches)
    tuned: dict[tuple[str, str], list[str]] = {}
    outcomes: list[RunOutcome] = []
    steps = len(plan) + len(searches_now)
    with progress_bar(f"suite {suite.name}", steps, unit="steps", enabled=progress) as bar:
        for d, m in searches_now:
            progress_log.info("suite %s: search %s on %s", suite.name, m.label, d.label)

            def on_trial(done: int, budget: int, m: Entry = m, d: Entry = d) -> None:
                bar.advance(0, f"search {m.label} on {d.label}: {done}/{budget} trials")

            result = _tune(suite, d, m, on_trial)
            tuned[(d.label, m.label)] = result.overrides
            searches[f"{d.label}__{m.label}"] = {
                "metric": result.metric,
                "best_value": result.best_value,
                "best_params": result.best_params,
                "complete": result.complete,
                "pruned": result.pruned,
                "failed": result.failed,
            }
            write_manifest(suite, full_plan, searches)
            progress_log.info(
                "suite %s: searched %s on %s: valid %s=%.4f", suite.name, m.label, d.label, result.metric, result.best_value
            )
            bar.advance(1)
        for i, run in enumerate(plan, start=1):
            bar.advance(0, f"{run.model.label} on {run.dataset.label}, seed {run.seed}")
            try:
                outcome = execute_run(suite, run, tuned.get((run.dataset.label, run.model.label), []))
            except ModalRecError as err:
                if not keep_going or isinstance(err, ConfigError):
                    raise
                log.error("run %s failed: %s", run.name, err)
                outcome = RunOutcome(run, "failed", error=str(err))
            outcomes.append(outcome)
            progress_log.info("suite %s: run %d/%d %s: %s", suite.name, i, len(plan), run.name, outcome.status)
            bar.advance(1)
    return outcomes


def _tune(suite: Suite, dataset: Entry, model: Entry, on_trial: Callable[[int, int], None]) -> SearchResult:
    overrides = [*suite.base_overrides(dataset, model), *suite.search_overrides, f"train.seed={suite.seeds[0]}"]
    return search(overrides, suite.search_dir(dataset, model), suite.search_settings(model), suite.space_for(model), on_trial)
