"""Suites: parsing and up-front validation, resumable execution, config drift, failures recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from modalrec.errors import ConfigError
from modalrec.experiments import suite as suite_module
from modalrec.experiments.suite import Suite, run_suite
from modalrec.train import experiment
from modalrec.train.trainer import TrainingError


def _suite_file(tmp_path: Path, data: Path, models: list, **extra) -> Path:
    body = {
        "name": "t",
        "out": str(tmp_path / "out"),
        "datasets": [{"name": str(data), "label": "syn"}],
        "seeds": [1, 2],
        "common": {"train.epochs": 3, "train.batch_size": 256, "train.lr": 0.01, "train.patience": 5, "eval.ks": "5,10"},
        "models": models,
        **extra,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def test_unknown_models_fail_before_anything_runs(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = Suite.load(_suite_file(tmp_path, synthetic_dir, ["pop", "findrek", "vbpr-not-yet"]))
    with pytest.raises(ConfigError, match=r"not registered.*'findrek' \(did you mean 'findrec'\?\).*Known models: .*bpr"):
        run_suite(suite, progress=False)
    assert not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"modles": []}, "unknown suite key"),
        ({"seeds": ["a"]}, "list of integers"),
        ({"models": ["pop", "pop"]}, "appear twice"),
        ({"models": [{"name": "bpr", "overrides": 3}]}, "overrides are a mapping"),
        ({"search": {"trials": 2, "models": ["nope"]}}, "not a model label"),
    ],
)
def test_malformed_suites_are_refused(tmp_path: Path, synthetic_dir: Path, change: dict, message: str) -> None:
    path = _suite_file(tmp_path, synthetic_dir, ["pop"])
    body = yaml.safe_load(path.read_text()) | change
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(ConfigError, match=message):
        Suite.load(path)


def test_bad_override_keys_are_refused_up_front(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = Suite.load(_suite_file(tmp_path, synthetic_dir, ["pop", {"name": "bpr", "overrides": {"model.dimm": 8}}]))
    with pytest.raises(ConfigError, match="model.dim"):
        suite.validate()


def test_suite_runs_resumes_and_skips(tmp_path: Path, synthetic_dir: Path) -> None:
    models = ["pop", {"name": "bpr", "overrides": {"model.dim": 8}}]
    suite = Suite.load(_suite_file(tmp_path, synthetic_dir, models))
    # interrupt bpr seed 2 after its first epoch, as a kill would: last.pt saved, no results.json
    interrupted = next(r for r in suite.plan() if r.model.label == "bpr" and r.seed == 2)

    class Stop(Exception):
        pass

    def stop(epoch: int, summary: dict) -> None:
        raise Stop

    with pytest.raises(Stop):
        experiment.train(suite_module.resolve(suite.run_overrides(interrupted, [])), on_validation=stop)
    assert (interrupted.path / "checkpoints" / "last.pt").exists() and not (interrupted.path / "results.json").exists()
    # a run that died before its first checkpoint is started again from scratch
    stale = next(r for r in suite.plan() if r.model.label == "pop" and r.seed == 1)
    stale.path.mkdir(parents=True)
    (stale.path / "config.yaml").write_text("half: written\n")

    outcomes = run_suite(suite, progress=False)
    status = {o.run.name: o.status for o in outcomes}
    assert status == {
        "syn__pop__seed1": "trained",
        "syn__pop__seed2": "trained",
        "syn__bpr__seed1": "trained",
        "syn__bpr__seed2": "resumed",
    }
    resumed = json.loads((interrupted.path / "results.json").read_text())
    assert resumed["epochs_run"] == 3
    lines = (interrupted.path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    # the resumed run equals an uninterrupted run of the same cell
    fresh = Suite.load(_suite_file(tmp_path / "again", synthetic_dir, models))
    fresh_run = next(r for r in fresh.plan() if r.name == interrupted.name)
    _, uninterrupted = experiment.train(suite_module.resolve(fresh.run_overrides(fresh_run, [])))
    assert resumed["test"]["ndcg@10"] == pytest.approx(uninterrupted["test"]["ndcg@10"], abs=1e-6)
    # seeds differ, so the two bpr runs differ
    other = json.loads((tmp_path / "out" / "runs" / "syn__bpr__seed1" / "results.json").read_text())
    assert other["test"] != resumed["test"]

    stamps = {r.name: (r.path / "results.json").stat().st_mtime_ns for r in suite.plan()}
    again = run_suite(suite, progress=False)
    assert {o.status for o in again} == {"done"}
    assert stamps == {r.name: (r.path / "results.json").stat().st_mtime_ns for r in suite.plan()}
    manifest = json.loads((tmp_path / "out" / "suite.json").read_text())
    assert manifest["runs"]["syn__bpr__seed2"] == {"label": "bpr", "model": "bpr", "dataset": "syn", "seed": 2}

    # editing the suite so a finished run no longer matches it is an error, not a silent mix
    changed = Suite.load(_suite_file(tmp_path, synthetic_dir, ["pop", {"name": "bpr", "overrides": {"model.dim": 16}}]))
    with pytest.raises(ConfigError, match=r"model.dim: 8 in the run, 16 in the suite"):
        run_suite(changed, progress=False)


def test_failing_runs_are_recorded_and_the_suite_goes_on(tmp_path: Path, synthetic_dir: Path, monkeypatch) -> None:
    suite = Suite.load(_suite_file(tmp_path, synthetic_dir, ["pop", "itemknn"]))
    real = experiment.train

    def flaky(cfg, resume=None, **kwargs):
        if cfg is not None and cfg.model_name == "pop":
            raise TrainingError("the loss became nan")
        return real(cfg, resume, **kwargs)

    monkeypatch.setattr(experiment, "train", flaky)
    outcomes = run_suite(suite, progress=False)
    assert [o.status for o in outcomes] == ["failed", "failed", "trained", "trained"]
    assert "nan" in outcomes[0].error
    with pytest.raises(TrainingError):
        run_suite(suite, keep_going=False, progress=False)


def test_mixed_families_need_an_explicit_split(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = Suite.load(
        _suite_file(tmp_path, synthetic_dir, ["pop", {"name": "sasrec", "overrides": {"model.dim": 8, "model.heads": 1}}])
    )
    with pytest.raises(ConfigError, match="mix families.*dataset.split.method"):
        suite.validate()
    path = _suite_file(tmp_path, synthetic_dir, ["pop", {"name": "sasrec", "overrides": {"model.dim": 8, "model.heads": 1}}])
    body = yaml.safe_load(path.read_text())
    body["common"]["dataset.split.method"] = "loo"
    path.write_text(yaml.safe_dump(body))
    Suite.load(path).validate()


def test_star_space_tunes_models_without_their_own(tmp_path: Path, synthetic_dir: Path, monkeypatch) -> None:
    from modalrec.models.general.bpr import BPR

    monkeypatch.setattr(BPR, "search_space", {})
    search = {"trials": 2, "space": {"*": {"train.lr": ["log", 1e-3, 1e-2]}, "itemknn": {"model.k": ["int", 5, 50]}}}
    suite = Suite.load(_suite_file(tmp_path, synthetic_dir, ["pop", "bpr", "itemknn", "ease"], search=search))
    # pop: closed form without a space (nothing to tune); bpr: the '*' space; itemknn: its suite space; ease: its own
    assert [m.label for m in suite.tuned_models()] == ["bpr", "itemknn", "ease"]
    assert [suite.space_for(m) for m in suite.models] == [
        None,
        {"train.lr": ["log", 1e-3, 1e-2]},
        {"model.k": ["int", 5, 50]},
        None,
    ]
    suite.validate()


def test_keys_added_after_a_run_was_made_count_only_when_the_suite_moves_them() -> None:
    from modalrec.experiments.suite import config_differences

    saved = {"model": {"name": "bpr", "dim": 8}, "dataset": {"name": "syn"}}
    defaults = {"model": {"name": "bpr", "dim": 64}, "dataset": {"name": "syn", "feature_noise": 0.0}}
    planned = {"model": {"name": "bpr", "dim": 8}, "dataset": {"name": "syn", "feature_noise": 0.0}}
    assert config_differences(planned, saved, defaults) == []  # a newer key at its default: the same run
    planned["dataset"]["feature_noise"] = 0.2
    assert config_differences(planned, saved, defaults) == ["dataset.feature_noise: None in the run, 0.2 in the suite"]
    planned["model"]["dim"] = 16
    assert "model.dim: 8 in the run, 16 in the suite" in config_differences(planned, saved, defaults)
