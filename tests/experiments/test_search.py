"""Optuna search: validation only (the test split is never read), pruning, fixed budget, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modalrec.data.dataset import TEST
from modalrec.errors import ConfigError
from modalrec.experiments.search import SearchSettings, search
from modalrec.experiments.space import check_space
from modalrec.train.rundir import RunDir

optuna = pytest.importorskip("optuna")  # the 'search' extra (in 'test')

BASE = ["model=bpr", "train.epochs=3", "train.batch_size=256", "train.patience=5", "model.dim=8"]
SPACE = {"train.lr": ["log", 1e-3, 5e-2], "model.reg": ["choice", [0.0, 1e-4]]}


def test_search_never_reads_the_test_split(tmp_path: Path, synthetic_dir: Path, evaluated_phases: list[int]) -> None:
    phases = evaluated_phases
    result = search([*BASE, f"dataset={synthetic_dir}"], tmp_path / "study", SearchSettings(trials=3, pruner="none"), SPACE)
    assert phases and TEST not in phases
    for trial in sorted((tmp_path / "study" / "trials").iterdir()):
        assert not (trial / "per_user_test.npz").exists()
        assert "test" not in json.loads((trial / "results.json").read_text())
        assert not (trial / "checkpoints").exists()
    best = json.loads((tmp_path / "study" / "best.json").read_text())
    assert best["best_value"] == pytest.approx(result.best_value)
    values = [json.loads((t / "results.json").read_text())["valid"]["ndcg@10"] for t in (tmp_path / "study" / "trials").iterdir()]
    assert result.best_value == pytest.approx(max(values))
    # every validation was reported to Optuna (what the pruner decides on)
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")
    for trial in study.trials:
        lines = [json.loads(x) for x in (Path(trial.user_attrs["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        assert trial.intermediate_values == pytest.approx({r["epoch"]: r["valid"]["ndcg@10"] for r in lines})


def test_pruned_trials_stop_early_and_the_budget_is_fixed_and_resumable(tmp_path: Path, synthetic_dir: Path, monkeypatch) -> None:
    # a pruner that stops every trial after the first at its first report (deterministic stand-in for the median rule)
    monkeypatch.setattr(optuna.pruners.MedianPruner, "prune", lambda self, study, trial: trial.number >= 1)
    base = [*BASE, f"dataset={synthetic_dir}"]
    out = tmp_path / "study"
    result = search(base, out, SearchSettings(trials=3, startup_trials=1), SPACE)
    assert (result.complete, result.pruned, result.failed) == (1, 2, 0)
    for number in (1, 2):
        lines = (out / "trials" / f"trial-000{number}" / "metrics.jsonl").read_text().splitlines()
        assert len(lines) == 1 and not (out / "trials" / f"trial-000{number}" / "results.json").exists()
        assert RunDir(out / "trials" / f"trial-000{number}").status()["status"] == "pruned"  # not 'failed'
    assert RunDir(out / "trials" / "trial-0000").status()["status"] == "finished"
    # an interrupted trial (left RUNNING) is replaced, not counted
    study = optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}")
    study.ask()
    again = search(base, out, SearchSettings(trials=3, startup_trials=1), SPACE)
    assert (again.complete, again.pruned, again.failed) == (1, 2, 0)
    states = [t.state for t in optuna.load_study(study_name="search", storage=f"sqlite:///{out / 'study.db'}").trials]
    assert len(states) == 4 and states[3] == optuna.trial.TrialState.FAIL
    # a bigger budget resumes the same study
    more = search(base, out, SearchSettings(trials=4, startup_trials=1), SPACE)
    assert more.complete + more.pruned == 4
    # a different search in the same directory is refused
    with pytest.raises(ConfigError, match="different search"):
        search([*base, "model.dim=16"], out, SearchSettings(trials=4, startup_trials=1), SPACE)


def test_search_space_dsl_is_checked() -> None:
    assert check_space({"train.lr": ["log", 1e-4, 1e-2], "model.k": ("int", 1, 5)}, "x") == {
        "train.lr": ("log", 1e-4, 1e-2),
        "model.k": ("int", 1, 5),
    }
    for bad, message in (
        ({"lr": ("log", 1e-4, 1e-2)}, "full config key"),
        ({"train.lr": ("normal", 0, 1)}, "kind"),
        ({"train.lr": ("log", 0, 1)}, "invalid range"),
        ({"model.dims": ("choice", [[1, 2]])}, "scalars"),
    ):
        with pytest.raises(ConfigError, match=message):
            check_space(bad, "x")


def test_every_declared_space_is_valid_for_its_model() -> None:
    from modalrec.config import resolve
    from modalrec.experiments.space import as_overrides
    from modalrec.models.base import registered_models

    declared = {name: cls for name, cls in registered_models().items() if cls.search_space}
    assert {"bpr", "lightgcn", "ease", "itemknn", "sasrec", "gru4rec"} <= set(declared)
    for name, cls in declared.items():
        space = check_space(cls.search_space, name)
        top = {k: s[1][-1] if s[0] == "choice" else s[2] for k, s in space.items()}
        resolve([f"model={name}", *as_overrides(top)])  # every key exists and every value has the right type


def test_models_without_a_space_need_one(tmp_path: Path, synthetic_dir: Path) -> None:
    with pytest.raises(ConfigError, match="declares no search space"):
        search(["model=pop", f"dataset={synthetic_dir}"], tmp_path / "s", SearchSettings(trials=1))
