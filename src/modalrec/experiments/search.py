"""Hyper-parameter search with Optuna, on the VALIDATION split only, stored in SQLite so it resumes.

Each trial is an ordinary run (its own run directory under ``<out>/trials/``) trained with
``score_test=False``: the trainer validates, early-stops and selects on validation exactly as in a
normal run, and the test split is never scored or read. Trials report the validation metric after
every validation so the pruner can stop bad ones early (the trainer's ``on_validation`` hook).

The budget is a fixed number of finished trials (completed, pruned or failed) per study, so every
model in a comparison gets the same number of attempts; a trial cut short by an interruption does not
count and is replaced when the search resumes. A study directory holds::

    <out>/study.db      the Optuna study (SQLite): every trial's parameters, reports and state
    <out>/search.json   what was searched (base overrides, space, metric, settings): a resume must match it
                        (except the trial budget, which may grow)
    <out>/best.json     the best trial: its parameters as overrides, its validation score, its run
    <out>/trials/trial-NNNN/   each trial's run directory (config, metrics.jsonl, results.json; no checkpoints)
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from modalrec.config import resolve
from modalrec.console import progress_log
from modalrec.errors import ConfigError, ModalRecError
from modalrec.experiments.space import Space, as_overrides, check_space, suggest
from modalrec.models.base import get_model_class
from modalrec.train.experiment import check_run, train
from modalrec.train.rundir import PRUNED, RunDir, to_jsonable, write_text_atomic

log = logging.getLogger(__name__)

PRUNERS = ("median", "hyperband", "none")
SAMPLERS = ("tpe", "grid")


@dataclass
class SearchSettings:
    """How a search runs; the same settings for every model keep a comparison fair."""

    trials: int = 20  # finished trials per study (completed + pruned + failed)
    metric: str | None = None  # validation metric to maximise; None = the run's train.select
    pruner: str = "median"  # median (stop a trial below the median of earlier ones at that epoch) | hyperband | none
    startup_trials: int = 5  # trials before TPE models the space and before the median pruner acts
    seed: int = 0  # seeds the sampler (TPE's draws; the grid's visiting order)
    sampler: str = "tpe"  # tpe | grid (every point of a space of 'choice' keys, e.g. EASE's l2 grid; trials = its size)


@dataclass
class SearchResult:
    """The outcome of a study: the best point and how the budget was spent."""

    study_dir: Path
    metric: str
    best_value: float
    best_params: dict[str, Any]
    best_run: str
    complete: int
    pruned: int
    failed: int

    @property
    def overrides(self) -> list[str]:
        return as_overrides(self.best_params)


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ModalRecError("hyper-parameter search needs Optuna: pip install 'modalrec[search]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def model_space(overrides: list[str], space: dict[str, Any] | None = None) -> Space:
    """The space to search: ``space`` when given, else the one the model declares next to its defaults."""
    base = resolve(overrides)
    model_cls = get_model_class(base.model_name)
    raw = space if space is not None else model_cls.search_space
    if not raw:
        raise ConfigError(
            f"model '{model_cls.name}' declares no search space (class attribute search_space); pass one, "
            'e.g. a suite\'s search.space or --space \'{"train.lr": ["log", 1e-4, 1e-2]}\''
        )
    checked = check_space(raw, f"search space of {model_cls.name}")
    # every key must be a valid config key of this model: resolve once with the lowest point
    corner = {key: spec[1][0] if spec[0] == "choice" else spec[1] for key, spec in checked.items()}
    resolve([*overrides, *as_overrides(corner)])
    return checked


def grid_size(space: Space) -> int:
    """The number of points of a space whose keys are all 'choice'."""
    size = 1
    for spec in space.values():
        size *= len(spec[1])
    return size


def check_grid(space: Space, trials: int) -> None:
    """A grid search needs 'choice' keys only and a budget that covers the grid exactly."""
    ranged = [key for key, spec in space.items() if spec[0] != "choice"]
    if ranged:
        raise ConfigError(f"a grid search needs ('choice', [values]) for every key; {', '.join(ranged)} are ranges")
    if trials != grid_size(space):
        raise ConfigError(f"a grid search of {grid_size(space)} points needs trials: {grid_size(space)}, got {trials}")


def _budget_used(trials: list[Any], optuna: Any) -> dict[str, int]:
    states = optuna.trial.TrialState
    counts = {"complete": 0, "pruned": 0, "failed": 0}
    for t in trials:
        if t.state == states.COMPLETE:
            counts["complete"] += 1
        elif t.state == states.PRUNED:
            counts["pruned"] += 1
        elif t.state == states.FAIL and not t.user_attrs.get("interrupted"):
            counts["failed"] += 1
    return counts


def _manifest(overrides: list[str], space: Space, metric: str, settings: SearchSettings) -> dict[str, Any]:
    kept = {k: v for k, v in asdict(settings).items() if k != "trials"}  # the budget may grow on resume
    return to_jsonable({"overrides": list(overrides), "space": space, "metric": metric, "settings": kept})


def search(
    overrides: list[str],
    out: str | Path,
    settings: SearchSettings | None = None,
    space: dict[str, Any] | None = None,
    on_trial: Callable[[int, int], None] | None = None,
) -> SearchResult:
    """Run (or resume) a study of the run ``overrides`` describe, writing to ``out``; returns the best point.

    ``on_trial(finished, budget)`` is called after every trial (for progress displays).
    """
    optuna = _optuna()
    settings = settings or SearchSettings()
    if settings.trials < 1:
        raise ConfigError(f"search trials must be >= 1, got {settings.trials}")
    if settings.pruner not in PRUNERS:
        raise ConfigError(f"search pruner '{settings.pruner}' is not one of {', '.join(PRUNERS)}")
    if settings.sampler not in SAMPLERS:
        raise ConfigError(f"search sampler '{settings.sampler}' is not one of {', '.join(SAMPLERS)}")
    space = model_space(overrides, space)
    if settings.sampler == "grid":
        check_grid(space, settings.trials)
    base = resolve(overrides)
    metric = (settings.metric or base.train.select).lower()
    check_run(resolve([*overrides, f"train.select={metric}"]))  # one clear error before the study writes anything
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(overrides, space, metric, settings)
    manifest_path = out / "search.json"
    if manifest_path.exists():
        saved = json.loads(manifest_path.read_text())
        if saved != manifest:
            raise ConfigError(
                f"{out} holds a study of a different search ({manifest_path}); resume it with the same "
                "overrides, space and settings, or pick another output directory"
            )
    else:
        write_text_atomic(manifest_path, json.dumps(manifest, indent=2) + "\n")

    storage = optuna.storages.RDBStorage(f"sqlite:///{out.resolve() / 'study.db'}")
    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=settings.startup_trials),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, base.train.epochs)),
        "none": lambda: optuna.pruners.NopPruner(),
    }[settings.pruner]()
    sampler = (
        optuna.samplers.GridSampler({key: spec[1] for key, spec in space.items()}, seed=settings.seed)
        if settings.sampler == "grid"
        else optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=settings.startup_trials)
    )
    study = optuna.create_study(
        study_name="search", storage=storage, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True
    )
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        # left RUNNING by an interrupted search (one process per study): close it so it neither counts nor blocks
        storage.set_trial_user_attr(stale._trial_id, "interrupted", True)
        storage.set_trial_state_values(stale._trial_id, optuna.trial.TrialState.FAIL)
        log.info("search %s: trial %d was interrupted; it will be replaced", out, stale.number)

    def objective(trial: Any) -> float:
        point = suggest(trial, space)
        cfg = resolve(
            [
                *overrides,
                *as_overrides(point),
                f"train.select={metric}",
                f"run.dir={out / 'trials'}",
                f"run.name=trial-{trial.number:04d}",
                "train.progress=false",
            ]
        )

        def report(epoch: int, summary: dict[str, Any]) -> None:
            trial.report(float(summary[metric]), epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"{metric}={summary[metric]:.5f} at epoch {epoch}")

        run_path = Path(cfg.run.dir) / str(cfg.run.name)
        trial.set_user_attr("run_dir", str(run_path))
        try:
            _, results = train(cfg, on_validation=report, score_test=False)
        except (KeyboardInterrupt, SystemExit):
            trial.set_user_attr("interrupted", True)  # not a finished trial: a resumed search replaces it
            raise
        except optuna.TrialPruned as err:
            RunDir(run_path).mark(PRUNED, err)  # stopped by the search, which is not a failure of the run
            raise
        finally:
            shutil.rmtree(run_path / "checkpoints", ignore_errors=True)  # trials are re-run, not re-opened
        value = float(results["valid"][metric])
        progress_log.info("search %s: trial %d %s=%.5f %s", out.name, trial.number, metric, value, point)
        return value

    def after_trial(study: Any, trial: Any) -> None:
        if trial.state == optuna.trial.TrialState.FAIL:
            log.warning(
                "search %s: trial %d failed (%s)",
                out.name,
                trial.number,
                trial.system_attrs.get("fail_reason", "see its train.log"),
            )
        if on_trial is not None:
            on_trial(sum(_budget_used(study.get_trials(deepcopy=False), optuna).values()), settings.trials)

    remaining = settings.trials - sum(_budget_used(study.get_trials(deepcopy=False), optuna).values())
    if remaining > 0:
        # a diverging or impossible point (NaN loss, an invalid combination) fails its trial, not the search
        study.optimize(objective, n_trials=remaining, catch=(ModalRecError,), callbacks=[after_trial])
    return _finish(study, out, metric, optuna)


def _finish(study: Any, out: Path, metric: str, optuna: Any) -> SearchResult:
    counts = _budget_used(study.get_trials(deepcopy=False), optuna)
    completed = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not completed:
        raise ModalRecError(
            f"no trial of the search in {out} completed ({counts['pruned']} pruned, {counts['failed']} failed); "
            f"see the trials' train.log files under {out / 'trials'}"
        )
    best = max(completed, key=lambda t: (t.value, -t.number))
    result = SearchResult(out, metric, float(best.value), dict(best.params), best.user_attrs.get("run_dir", ""), **counts)
    payload = {**asdict(result), "study_dir": str(out), "overrides": result.overrides, "trial": best.number}
    write_text_atomic(out / "best.json", json.dumps(to_jsonable(payload), indent=2) + "\n")
    return result
