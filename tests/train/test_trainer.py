"""The trainer's protocol: validation selects, test scores once; NaN aborts; seeds; checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from modalrec.config import resolve
from modalrec.data.dataset import TEST, VALID
from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.errors import CheckpointError
from modalrec.eval.ranking import Evaluator
from modalrec.train import experiment
from modalrec.train.checkpoint import load_checkpoint
from modalrec.train.trainer import TrainingError


def _cfg(data: Path, runs: Path, *extra: str):
    return resolve(
        [
            "model=bpr",
            f"dataset={data}",
            "train.epochs=6",
            "train.batch_size=256",
            "train.lr=0.01",
            "train.patience=3",
            "train.progress=false",
            f"run.dir={runs}",
            "model.dim=16",
            *extra,
        ]
    )


def test_run_directory_holds_config_metrics_checkpoints_results(synthetic_dir: Path, tmp_path: Path) -> None:
    run_dir, results = experiment.train(_cfg(synthetic_dir, tmp_path, "run.name=r1"))
    assert run_dir.path == tmp_path / "r1"
    for path in (run_dir.config, run_dir.dataset, run_dir.metrics, run_dir.best, run_dir.last, run_dir.results, run_dir.log):
        assert path.exists(), path
    lines = [json.loads(line) for line in run_dir.metrics.read_text().splitlines()]
    assert [r["epoch"] for r in lines] == list(range(1, results["epochs_run"] + 1))
    assert all("valid" in r and "loss" in r for r in lines)
    best = max(lines, key=lambda r: r["valid"]["ndcg@10"])
    assert results["best_epoch"] == best["epoch"]
    assert results["valid"]["ndcg@10"] == pytest.approx(best["valid"]["ndcg@10"])
    per_user = np.load(run_dir.per_user("test"))
    assert per_user["ndcg@10"].mean() == pytest.approx(results["test"]["ndcg@10"])
    # the saved config re-resolves to the same run
    assert (
        resolve(config_file=run_dir.config).to_dict()["train"] == _cfg(synthetic_dir, tmp_path, "run.name=r1").to_dict()["train"]
    )


def test_test_split_is_scored_once_after_training(synthetic_dir: Path, tmp_path: Path, evaluated_phases: list[int]) -> None:
    phases = evaluated_phases
    _, results = experiment.train(_cfg(synthetic_dir, tmp_path))
    assert phases.count(TEST) == 1
    assert phases[-1] == TEST and set(phases[:-1]) == {VALID}
    assert len(phases) == results["epochs_run"] + 2  # each epoch + the final valid and test scoring


def test_test_split_cannot_change_selection(tmp_path: Path) -> None:
    """Replacing every test interaction changes nothing that training or selection sees."""
    base = make_synthetic(n_users=150, n_items=80, seed=1)
    from modalrec.data.split import SplitConfig, split

    ds = split(base, SplitConfig(method="loo"))
    tampered = ds.replace(item=ds.item.copy())
    test_rows = np.flatnonzero(tampered.split == TEST)
    tampered.item[test_rows] = np.random.default_rng(5).integers(0, ds.n_items, size=len(test_rows))
    histories = []
    for name, data in (("orig", ds), ("tampered", tampered)):
        save_dataset(data, tmp_path / name)
        run_dir, results = experiment.train(
            _cfg(tmp_path / name, tmp_path / "runs", f"run.name={name}", "dataset.split.method=given")
        )
        histories.append(([r["valid"] for r in map(json.loads, run_dir.metrics.read_text().splitlines())], results))
    (valid_a, res_a), (valid_b, res_b) = histories
    assert valid_a == valid_b
    assert res_a["best_epoch"] == res_b["best_epoch"]
    assert res_a["test"] != res_b["test"]  # the tampering did reach the test scores


def test_same_seed_same_results_other_seed_differs(synthetic_dir: Path, tmp_path: Path) -> None:
    runs = [
        experiment.train(_cfg(synthetic_dir, tmp_path, f"train.seed={seed}", f"run.name=s{i}", "train.epochs=2"))[1]
        for i, seed in enumerate((7, 7, 8))
    ]
    assert runs[0]["test"] == runs[1]["test"]
    assert runs[0]["test"] != runs[2]["test"]


def test_nan_loss_aborts_with_advice(synthetic_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainingError, match=r"loss became (nan|inf).*Lower train.lr"):
        experiment.train(_cfg(synthetic_dir, tmp_path, "train.lr=1e30", "train.optimizer=sgd"))


def test_checkpoint_of_another_model_or_dataset_is_refused(synthetic_dir: Path, tmp_path: Path) -> None:
    run_dir, _ = experiment.train(_cfg(synthetic_dir, tmp_path, "train.epochs=1", "run.name=c"))
    payload = torch.load(run_dir.best, weights_only=True)
    expected = dict(payload["identity"], model="lightgcn", n_items=payload["identity"]["n_items"] + 1)
    with pytest.raises(CheckpointError, match=r"(?s)model: checkpoint has 'bpr', this run has 'lightgcn'.*n_items"):
        load_checkpoint(run_dir.best, expected)


def test_closed_form_model_runs_and_reopens(synthetic_dir: Path, tmp_path: Path) -> None:
    cfg = resolve(["model=ease", f"dataset={synthetic_dir}", f"run.dir={tmp_path}", "run.name=e", "train.progress=false"])
    run_dir, results = experiment.train(cfg)
    pop_dir, pop = experiment.train(resolve(["model=pop", f"dataset={synthetic_dir}", f"run.dir={tmp_path}", "run.name=p"]))
    assert results["test"]["ndcg@10"] > pop["test"]["ndcg@10"]
    loaded = experiment.open_run(run_dir.path)
    again = Evaluator(loaded.ctx, ks=(10, 20)).evaluate(loaded.model, TEST)
    assert again.summary["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"])


def test_model_diagnostics_are_recorded_per_epoch_in_eval_mode(
    synthetic_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Recommender.diagnostics`` runs after every epoch in eval mode without gradients; metrics.jsonl holds it."""
    from modalrec.models.general.bpr import BPR

    seen: list[tuple[bool, bool]] = []

    def diagnostics(self, ctx) -> dict[str, float]:
        seen.append((self.training, torch.is_grad_enabled()))
        return {"item_norm": self.item_embedding.weight.norm(dim=1).mean(), "n_items": ctx.n_items}

    monkeypatch.setattr(BPR, "diagnostics", diagnostics, raising=False)
    run_dir, results = experiment.train(_cfg(synthetic_dir, tmp_path, "train.epochs=3", "train.patience=10"))
    lines = [json.loads(line) for line in run_dir.metrics.read_text().splitlines()]
    assert len(lines) == results["epochs_run"] == 3 and len(seen) == 3
    assert seen == [(False, False)] * 3
    norms = [r["diagnostics"]["item_norm"] for r in lines]
    assert all(isinstance(v, float) for v in norms) and len(set(norms)) == 3  # measured afresh each epoch
    assert {r["diagnostics"]["n_items"] for r in lines} == {float(experiment.open_run(run_dir.path).ctx.n_items)}


def test_models_without_diagnostics_record_none(synthetic_dir: Path, tmp_path: Path) -> None:
    run_dir, _ = experiment.train(_cfg(synthetic_dir, tmp_path, "train.epochs=1"))
    assert all("diagnostics" not in json.loads(line) for line in run_dir.metrics.read_text().splitlines())


def test_checkpoint_written_before_a_model_key_existed_is_judged_by_that_keys_default(
    synthetic_dir: Path, tmp_path: Path
) -> None:
    run_dir, _ = experiment.train(_cfg(synthetic_dir, tmp_path, "train.epochs=1", "run.name=k"))
    payload = torch.load(run_dir.best, weights_only=True)
    expected = payload["identity"]
    older = dict(payload, identity=dict(expected, model_config={k: v for k, v in expected["model_config"].items() if k != "reg"}))
    path = tmp_path / "older.pt"
    torch.save(older, path)
    assert load_checkpoint(path, expected)["identity"] == older["identity"]  # the run holds reg's default
    changed = dict(expected, model_config=dict(expected["model_config"], reg=expected["model_config"]["reg"] * 10 + 1))
    with pytest.raises(CheckpointError, match=r"model_config\.reg: checkpoint has no such key .*this run has"):
        load_checkpoint(path, changed)
