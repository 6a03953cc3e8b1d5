"""The leaderboard protocol: one selection metric per suite (checked at load, named in the table header), declared
tuning budgets and keys, >= 3 seeds by default, cap-hit rows marked, compute per row, reference column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from modalrec.errors import ConfigError
from modalrec.experiments.collect import load_runs
from modalrec.experiments.report import build_report
from modalrec.experiments.suite import Selection, Suite, run_suite, tuning_record, write_manifest
from modalrec.experiments.tables import CAP_MARK, build_comparison, to_csv, to_markdown
from modalrec.train import experiment
from modalrec.train.experiment import resolve


def _suite(tmp_path: Path, data: Path, models: list, **extra) -> Path:
    body = {
        "name": "p",
        "out": str(tmp_path / "out"),
        "datasets": [{"name": str(data), "label": "syn"}],
        "models": models,
        **extra,
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


# ---------------------------------------------------------------------- selection metric at load
def test_the_declared_selection_metric_reaches_every_run(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = Suite.load(_suite(tmp_path, synthetic_dir, ["pop", "bpr"], select="recall@10"))
    assert suite.select == suite.tune_metric == "recall@10"
    for run in suite.plan():
        assert resolve(suite.run_overrides(run, [])).train.select == "recall@10"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"select": "recall@20", "models": ["pop", {"name": "bpr", "overrides": {"train.select": "ndcg@10"}}]},
            r"selects on recall@20 but model bpr sets train.select=ndcg@10",
        ),
        ({"select": "recall@20", "common": {"train.select": "ndcg@20"}}, r"common sets train.select=ndcg@20"),
        (
            {"select": "recall@20", "search": {"trials": 2, "overrides": {"train.select": "mrr@10"}}},
            r"search.overrides sets train.select=mrr@10",
        ),
        (
            {
                "models": [
                    {"name": "pop", "overrides": {"train.select": "ndcg@10"}},
                    {"name": "bpr", "overrides": {"train.select": "recall@20"}},
                ]
            },
            r"different metrics \(model pop: ndcg@10, model bpr: recall@20\).*set 'select'",
        ),
        ({"select": "recall"}, r"'select' is a validation metric such as recall@20"),
    ],
)
def test_a_second_selection_metric_is_refused_at_load(tmp_path: Path, synthetic_dir: Path, extra: dict, message: str) -> None:
    models = extra.pop("models", ["pop", "bpr"])
    with pytest.raises(ConfigError, match=message):
        Suite.load(_suite(tmp_path, synthetic_dir, models, **extra))


def test_without_select_the_metric_the_overrides_agree_on_is_the_suites(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = Suite.load(_suite(tmp_path, synthetic_dir, ["pop"], common={"train.select": "ndcg@5"}))
    assert suite.select == "ndcg@5"
    assert Suite.load(_suite(tmp_path, synthetic_dir, ["pop"])).select == "ndcg@10"  # the library default


def test_default_seeds_are_three(tmp_path: Path, synthetic_dir: Path) -> None:
    assert Suite.load(_suite(tmp_path, synthetic_dir, ["pop"])).seeds == [1, 2, 3]


def test_a_model_may_run_fewer_seeds_than_the_suite(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = Suite.load(_suite(tmp_path, synthetic_dir, ["pop", {"name": "bpr", "seeds": [2]}], seeds=[1, 2, 3]))
    assert [(run.model.label, run.seed) for run in suite.plan()] == [("pop", 1), ("pop", 2), ("pop", 3), ("bpr", 2)]


# ---------------------------------------------------------------------- tuning budgets, references
def test_declared_budgets_keys_and_sampler_seed_are_recorded(tmp_path: Path, synthetic_dir: Path) -> None:
    models = ["pop", "bpr", "ease", {"name": "itemknn", "tuning": {"trials": 6, "metric": "ndcg@10", "source": "suite x"}}]
    search = {"trials": 4, "seed": 7, "models": ["bpr", "ease"], "budget": {"ease": 9}}
    suite = Suite.load(_suite(tmp_path, synthetic_dir, models, select="recall@10", search=search))
    by_label = {m.label: m for m in suite.models}
    assert suite.search_settings(by_label["bpr"]).trials == 4 and suite.search_settings(by_label["ease"]).trials == 9
    bpr = tuning_record(suite, by_label["bpr"])
    assert bpr["trials"] == 4 and bpr["sampler_seed"] == 7 and bpr["metric"] == "recall@10"
    assert set(bpr["params"]) == set(experiment.get_model_class("bpr").search_space)
    assert tuning_record(suite, by_label["ease"])["trials"] == 9
    assert tuning_record(suite, by_label["pop"]) is None
    assert tuning_record(suite, by_label["itemknn"]) == {"trials": 6, "metric": "ndcg@10", "source": "suite x", "params": []}
    write_manifest(suite, suite.plan())
    manifest = json.loads((suite.out / "suite.json").read_text())
    assert manifest["protocol"] == {"select": "recall@10", "tune_metric": "recall@10", "seeds": [1, 2, 3], "min_seeds": 3}
    assert manifest["models"]["ease"]["tuning"]["trials"] == 9


@pytest.mark.parametrize(
    ("models", "extra", "message"),
    [
        ([{"name": "pop", "reference": {"value": 0.2, "metric": "ndcg@10"}}], {}, "a reference is"),
        ([{"name": "pop", "reference": {"value": "high", "metric": "ndcg@10", "source": "x"}}], {}, "numeric value"),
        (
            [{"name": "pop", "reference": {"value": 0.2, "metric": "mrr@50", "source": "x"}}],
            {"metrics": ["ndcg@10"]},
            "not a table column",
        ),
        ([{"name": "pop", "tuning": {"trials": -1, "metric": "ndcg@10", "source": "x"}}], {}, "tuning.trials"),
        (
            [{"name": "syn", "reference": {"value": 0.2, "metric": "ndcg@10", "source": "x"}}],
            {"datasets_extra": True},
            "unknown dataset entry key",
        ),
        (["pop"], {"search": {"trials": 2, "budget": {"nope": 3}}}, "not a model label"),
        (["pop"], {"search": {"trials": 2, "budget": {"pop": 0}}}, "trial counts >= 1"),
        ([{"name": "pop", "seeds": []}], {}, "non-empty list of integers"),
        ([{"name": "pop", "seeds": [1, 1]}], {}, "lists a seed twice"),
    ],
)
def test_bad_protocol_entries_are_refused(tmp_path: Path, synthetic_dir: Path, models: list, extra: dict, message: str) -> None:
    if extra.pop("datasets_extra", False):
        path = _suite(tmp_path, synthetic_dir, ["pop"])
        body = yaml.safe_load(path.read_text())
        body["datasets"] = [{"name": str(synthetic_dir), **models[0]}]
        path.write_text(yaml.safe_dump(body))
    else:
        path = _suite(tmp_path, synthetic_dir, models, **extra)
    with pytest.raises(ConfigError, match=message):
        Suite.load(path)


# ---------------------------------------------------------------------- cap-hit detection
def _run(
    fake_run,
    tmp_path: Path,
    name: str,
    seed: int,
    history: list[float],
    *,
    cap: int | None,
    stopped: bool,
    loss: bool = True,
    cpu: float | None = 3.0,
) -> Path:
    users = np.arange(50)
    values = np.linspace(0, 1, 50) * (0.5 + 0.1 * seed)
    path = fake_run(tmp_path / "out" / "runs" / f"syn__{name}__seed{seed}", name, seed, {"ndcg@10": values}, users, history)
    results = json.loads((path / "results.json").read_text())
    results.update(epoch_cap=cap, stopped_early=stopped, **({} if cpu is None else {"train_cpu_seconds": cpu}))
    (path / "results.json").write_text(json.dumps(results))
    lines = [
        json.dumps({"epoch": i + 1, "valid": {"ndcg@10": v}, **({"loss": 1.0} if loss else {})}) for i, v in enumerate(history)
    ]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("history", "cap", "stopped", "loss", "expected"),
    [
        ([0.1, 0.2, 0.3], 3, False, True, True),  # ran to the cap, best at the last epoch: still improving
        ([0.1, 0.3, 0.2], 3, False, True, False),  # ran to the cap but the best was earlier
        ([0.1, 0.2, 0.3], 10, False, True, False),  # stopped before the cap (ran out of patience elsewhere)
        ([0.1, 0.2, 0.3], 3, True, True, False),  # early stopping declared convergence
        ([0.3], 1, False, False, False),  # a closed-form fit has no epochs to run out of
    ],
)
def test_cap_hit_while_improving(
    make_run, tmp_path: Path, history: list[float], cap: int, stopped: bool, loss: bool, expected: bool
) -> None:
    record = load_runs([_run(make_run, tmp_path, "m", 1, history, cap=cap, stopped=stopped, loss=loss)])[0]
    assert record.capped_improving is expected


# ---------------------------------------------------------------------- the rendered table
def test_the_table_carries_the_protocol(make_run, tmp_path: Path) -> None:
    for seed in (1, 2, 3):
        _run(make_run, tmp_path, "good", seed, [0.1, 0.2, 0.3], cap=3, stopped=False, cpu=10.0 * seed)  # capped while improving
        _run(make_run, tmp_path, "knn", seed, [0.3], cap=None, stopped=False, loss=False, cpu=1.0)
        _run(make_run, tmp_path, "fixed", seed, [0.2, 0.1], cap=5, stopped=True, cpu=2.0)
    for seed in (1, 2):
        _run(make_run, tmp_path, "thin", seed, [0.1, 0.3, 0.2], cap=3, stopped=True, cpu=None)  # an old run: no CPU seconds
    runs = {
        p.name: {"label": p.name.split("__")[1], "dataset": "syn", "seed": int(p.name[-1])}
        for p in (tmp_path / "out" / "runs").iterdir()
    }
    manifest = {
        "protocol": {"select": "ndcg@10", "tune_metric": "ndcg@10", "min_seeds": 3},
        "models": {
            "good": {
                "tuning": {
                    "trials": 20,
                    "params": ["model.dim", "model.reg", "train.lr"],
                    "metric": "ndcg@10",
                    "sampler": "tpe",
                    "sampler_seed": 5,
                    "startup_trials": 5,
                    "pruner": "median",
                    "source": "this suite",
                },
                "reference": {"value": 0.1821, "metric": "ndcg@10", "source": "Klenitskiy & Vasilev 2023, Table 3"},
            },
            "knn": {"tuning": {"trials": 6, "metric": "recall@20", "source": "suite cf-small", "params": []}, "reference": None},
            "thin": {"tuning": None, "reference": None},
            "fixed": {"tuning": {"trials": 0, "metric": "recall@20", "source": "CPU budget", "params": []}, "reference": None},
        },
        "searches": {
            "syn__good": {"metric": "ndcg@10", "best_value": 0.25, "best_params": {}, "complete": 17, "pruned": 3, "failed": 0}
        },
        "runs": runs,
    }
    (tmp_path / "out" / "suite.json").write_text(json.dumps(manifest))
    records = load_runs([tmp_path / "out"])
    groups = {label: [r for r in records if r.label == label] for label in ("good", "knn", "thin", "fixed")}
    table = build_comparison("syn", groups, "test", ["ndcg@10"], 0.05)
    markdown = to_markdown([table])
    heading = markdown.splitlines()[0]
    assert heading == "### syn (test) · selection metric: valid ndcg@10 · tuned on another metric: knn on valid recall@20"
    rows = {
        line.split(" | ")[0].strip("| "): line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line
    }
    assert f"good {CAP_MARK} (3/3)" in rows and "knn" in rows and "thin" in rows  # only the capped row is marked
    good = rows[f"good {CAP_MARK} (3/3)"].split(" | ")
    assert good[2:] == ["3", "3/3", "20.0", "1.0", "20 trials × 3 keys (TPE seed 5)", "0.1821 (ndcg@10) |"]
    knn = rows["knn"].split(" | ")
    assert (
        knn[3] == "closed form"
        and knn[4] == "1.0"
        and knn[6] == "fixed point from 6 trials (suite cf-small) on valid recall@20 ≠ selection"
    )
    thin = rows["thin"].split(" | ")
    assert thin[2] == "2 (< 3)" and thin[4] == "-" and thin[6] == "none"  # below the seed protocol; CPU not recorded
    # declared untuned (0 trials): said in the cell and the notes, and its metric is no "tuned on another metric"
    assert rows["fixed"].split(" | ")[6] == "no tuning (fixed point: CPU budget)"
    assert "- fixed: no tuning, a declared fixed point (CPU budget)" in markdown
    assert (
        "- good: 20 TPE trials (sampler seed 5, 5 random first, pruner median) over model.dim, model.reg, train.lr on valid ndcg@10; "
        "best valid ndcg@10 0.2500 (17 complete, 3 pruned, 0 failed)" in markdown
    )
    assert "- reference for good: ndcg@10 0.1821, Klenitskiy & Vasilev 2023, Table 3" in markdown
    csv_rows = to_csv([table]).splitlines()
    header = csv_rows[0].split(",")
    good_row = dict(zip(header, next(r for r in csv_rows if r.startswith("syn,test,good,")).split(",")))
    assert (
        good_row["select"] == "ndcg@10" and float(good_row["train_cpu_seconds"]) == 20.0 and good_row["capped_improving"] == "3"
    )
    assert float(good_row["reference_value"]) == 0.1821
    page = build_report([tmp_path / "out"], tmp_path / "report", metrics=["ndcg@10"]).html.read_text()
    assert "selection metric: valid ndcg@10" in page and f"good {CAP_MARK} (3/3)" in page and "Klenitskiy" in page


def test_a_real_run_records_its_cpu_seconds_and_cap(tmp_path: Path, synthetic_dir: Path) -> None:
    cfg = resolve(
        [
            f"dataset={synthetic_dir}",
            "model=bpr",
            "model.dim=8",
            "train.epochs=2",
            "train.patience=5",
            f"run.dir={tmp_path}",
            "run.name=r",
            "train.progress=false",
        ]
    )
    _, results = experiment.train(cfg)
    assert results["epoch_cap"] == 2 and results["train_cpu_seconds"] > 0
    record = load_runs([tmp_path / "r"])[0]
    assert record.capped_improving is (results["best_epoch"] == 2)


# ---------------------------------------------------------------------- grid search (EASE's l2)
def test_a_grid_search_visits_every_point_once(tmp_path: Path, synthetic_dir: Path) -> None:
    grid = [1.0, 30.0, 1000.0]
    search = {"trials": 3, "sampler": "grid", "models": ["ease"], "space": {"ease": {"model.l2": ["choice", grid]}}}
    suite = Suite.load(_suite(tmp_path, synthetic_dir, ["ease"], select="recall@10", seeds=[1], search=search))
    outcomes = run_suite(suite, progress=False)
    study = json.loads((suite.search_dir(suite.datasets[0], suite.models[0]) / "best.json").read_text())
    trials = sorted((suite.search_dir(suite.datasets[0], suite.models[0]) / "trials").iterdir())
    visited = sorted(float(yaml.safe_load((t / "config.yaml").read_text())["model"]["l2"]) for t in trials)
    assert visited == grid and study["complete"] == 3
    values = {
        float(yaml.safe_load((t / "config.yaml").read_text())["model"]["l2"]): json.loads((t / "results.json").read_text())[
            "valid"
        ]["recall@10"]
        for t in trials
    }
    assert study["best_value"] == max(values.values())
    assert resolve(suite.run_overrides(suite.plan()[0], [f"model.l2={study['best_params']['model.l2']}"])).model["l2"] == max(
        values, key=values.get
    )
    assert outcomes[0].status == "trained"
    manifest = json.loads((suite.out / "suite.json").read_text())
    assert manifest["models"]["ease"]["tuning"]["sampler"] == "grid" and manifest["searches"]["syn__ease"]["complete"] == 3


def test_a_grid_needs_choices_and_a_budget_of_its_size(tmp_path: Path, synthetic_dir: Path) -> None:
    search = {"trials": 2, "sampler": "grid", "models": ["ease"], "space": {"ease": {"model.l2": ["choice", [1.0, 10.0, 100.0]]}}}
    with pytest.raises(ConfigError, match=r"grid search of 3 points needs trials: 3, got 2"):
        Suite.load(_suite(tmp_path, synthetic_dir, ["ease"], search=search)).validate()
    search["space"] = {"ease": {"model.l2": ["log", 1.0, 100.0]}}
    with pytest.raises(ConfigError, match=r"needs \('choice', \[values\]\) for every key; model.l2"):
        Suite.load(_suite(tmp_path, synthetic_dir, ["ease"], search=search)).validate()


def _two_dataset_suite(tmp_path: Path, data: Path) -> Suite:
    datasets = [{"name": str(data), "label": "syn"}, {"name": str(data), "label": "syn2"}]
    return Suite.load(_suite(tmp_path, data, ["pop", "itemknn"], datasets=datasets, seeds=[1, 2]))


def test_a_selection_runs_its_cells_and_the_manifest_keeps_the_whole_suite(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = _two_dataset_suite(tmp_path, synthetic_dir)
    first = run_suite(suite, progress=False, selection=Selection(labels=("pop",), seeds=(2,)))
    assert [o.run.name for o in first] == ["syn__pop__seed2", "syn2__pop__seed2"]
    second = run_suite(suite, progress=False, selection=Selection(datasets=("syn2",), seeds=(1,)))
    assert [o.run.name for o in second] == ["syn2__pop__seed1", "syn2__itemknn__seed1"]
    assert sorted(p.name for p in (suite.out / "runs").iterdir()) == sorted(
        ["syn__pop__seed2", "syn2__pop__seed2", "syn2__pop__seed1", "syn2__itemknn__seed1"]
    )
    manifest = json.loads((suite.out / "suite.json").read_text())
    assert len(manifest["runs"]) == 8  # 2 datasets x 2 models x 2 seeds, whatever ran so far
    assert {(r.dataset, r.label, r.seed) for r in load_runs([suite.out])} == {
        ("syn", "pop", 2),
        ("syn2", "pop", 2),
        ("syn2", "pop", 1),
        ("syn2", "itemknn", 1),
    }


@pytest.mark.parametrize(
    ("selection", "message"),
    [
        (Selection(labels=("nope",)), r"--only names nope, not model labels of suite p \(pop, itemknn\)"),
        (Selection(labels=("pop", "bpr", "ease")), r"--only names bpr, ease, not model labels"),
        (Selection(datasets=("ml-1m",)), r"--datasets names ml-1m, not dataset labels of suite p \(syn, syn2\)"),
        (Selection(seeds=(3,)), r"--seeds names 3, not seeds of suite p \(1, 2\)"),
        (Selection(labels=("pop",), seeds=(0, 1)), r"--seeds names 0, not seeds"),
    ],
)
def test_a_selection_outside_the_suite_is_refused_before_anything_runs(
    tmp_path: Path, synthetic_dir: Path, selection: Selection, message: str
) -> None:
    suite = _two_dataset_suite(tmp_path, synthetic_dir)
    with pytest.raises(ConfigError, match=message):
        run_suite(suite, progress=False, selection=selection)
    assert not suite.out.exists()


def test_a_selection_of_no_run_is_refused(tmp_path: Path, synthetic_dir: Path) -> None:
    suite = Suite.load(_suite(tmp_path, synthetic_dir, ["pop", {"name": "itemknn", "seeds": [1]}], seeds=[1, 2]))
    with pytest.raises(ConfigError, match=r"select no run of suite p: a model entry's own 'seeds' exclude the seeds asked"):
        run_suite(suite, progress=False, selection=Selection(labels=("itemknn",), seeds=(2,)))
    assert not suite.out.exists()
    assert [o.run.name for o in run_suite(suite, progress=False, selection=Selection(seeds=(2,)))] == ["syn__pop__seed2"]
