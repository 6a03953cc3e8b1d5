"""The cold-item split: a seeded share of items never reaches training, their valid/test interactions stay as
targets, and evaluation reports warm and cold targets apart (an ID-only model scores cold items without
crashing; a content model can hit them)."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from modalrec.data.context import DataContext
from modalrec.data.dataset import TEST, TRAIN
from modalrec.data.split import SplitConfig, split
from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.data.views import make_train_batches
from modalrec.errors import ConfigError
from modalrec.eval.ranking import Evaluator


def _split(share: float, seed: int = 0, method: str = "loo"):
    ds = make_synthetic(n_users=150, n_items=80, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ds, split(ds, SplitConfig(method=method, cold_items=share, seed=seed))


@pytest.mark.parametrize("method", ["loo", "temporal", "random"])
def test_no_cold_item_reaches_training(method: str) -> None:
    source, out = _split(0.2, method=method)
    cold = np.asarray(out.meta["split"]["cold_items"])
    assert len(cold) == round(0.2 * len(np.unique(source.item)))
    assert not np.isin(out.item[out.split == TRAIN], cold).any()
    ctx = DataContext.from_dataset(out)
    assert ctx.train[:, cold].nnz == 0 and ctx.item_popularity[cold].sum() == 0
    assert ctx.cold_items is not None and np.array_equal(np.flatnonzero(ctx.cold_items), cold)
    # the training sequences a sequential model reads hold no cold item, as input or as target
    for batch in make_train_batches("sequences", ctx, batch_size=64, seed=0, max_len=20):
        assert not np.isin(batch["seq"].numpy(), cold).any() and not np.isin(batch["targets"].numpy(), cold).any()
    # the cold items are still evaluated: some valid/test targets are cold, none of the other held-out ones dropped
    held_out = out.split != TRAIN
    assert np.isin(out.item[held_out], cold).sum() == out.meta["split"]["cold_items_targets"] > 0
    assert out.meta["split"]["cold_items_train_removed"] == int(np.isin(source.item, cold).sum() - np.isin(out.item, cold).sum())


def test_share_and_seed() -> None:
    _, a = _split(0.1, seed=3)
    _, b = _split(0.1, seed=3)
    _, c = _split(0.1, seed=4)
    assert a.meta["split"]["cold_items"] == b.meta["split"]["cold_items"]
    assert np.array_equal(a.item, b.item) and np.array_equal(a.split, b.split)
    assert a.meta["split"]["cold_items"] != c.meta["split"]["cold_items"]
    assert len(a.meta["split"]["cold_items"]) == 8  # 10% of 80 items
    _, none = _split(0.0)
    assert none.meta["split"]["cold_items"] == [] and DataContext.from_dataset(none).cold_items is None


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5])
def test_bad_share_is_refused(bad: float) -> None:
    with pytest.raises(ConfigError, match="'split.cold_items' must be >= 0 and < 1"):
        SplitConfig(cold_items=bad).check()


class _Oracle:
    """Scores each user's own valid/test targets highest: every target is hit, warm and cold alike."""

    training = False

    def __init__(self, ctx: DataContext, phase: int):
        self.ctx, self.phase = ctx, phase

    def eval(self):
        return self

    def train(self, mode: bool = True):
        return self

    def prepare_scoring(self) -> None: ...

    def eval_batch(self, users, ctx, phase):
        return users

    def encode(self, users):
        return users

    def score_items(self, users, items: slice):
        import torch

        target = self.ctx.targets(self.phase)[users][:, items].toarray()
        return torch.from_numpy(target.astype(np.float32))


def test_warm_and_cold_metrics_are_computed_on_their_own_targets() -> None:
    _, out = _split(0.2)
    ctx = DataContext.from_dataset(out)
    result = Evaluator(ctx, ks=(10,), metrics=("recall", "hit"), beyond=()).evaluate(_Oracle(ctx, TEST), TEST)
    summary = result.summary
    targets = ctx.targets(TEST)
    cold_users = int((targets[:, ctx.cold_items].getnnz(axis=1) > 0).sum())
    warm_users = int((targets[:, ~ctx.cold_items].getnnz(axis=1) > 0).sum())
    assert summary["cold/users"] == cold_users > 0 and summary["warm/users"] == warm_users > 0
    expected: dict[str, list[float]] = {"warm": [], "cold": []}
    for user, ranked in zip(result.users.tolist(), result.topk.tolist()):
        relevant = set(targets[user].indices.tolist())
        for group, wanted in (("warm", False), ("cold", True)):
            mine = {i for i in relevant if bool(ctx.cold_items[i]) == wanted}
            if mine:
                expected[group].append(len(mine & set(ranked[:10])) / len(mine))
    assert summary["warm/recall@10"] == pytest.approx(np.mean(expected["warm"]))
    assert summary["cold/recall@10"] == pytest.approx(np.mean(expected["cold"]))
    assert summary["cold/recall@10"] > 0.5  # the oracle finds cold targets (only seen ones are masked)


def test_id_only_and_content_models_train_on_a_cold_split(tmp_path: Path) -> None:
    data = tmp_path / "data"
    save_dataset(make_synthetic(n_users=200, n_items=100, feature_dims={"text": 16}, seed=0), data)
    common = [
        f"dataset={data}",
        f"run.dir={tmp_path / 'runs'}",
        "train.progress=false",
        "train.epochs=2",
        "dataset.split.cold_items=0.2",
        "model.dim=16",
        "--quiet",
    ]
    for model in ("sasrec", "sasrec_features", "bpr"):
        out = subprocess.run(
            [sys.executable, "-m", "modalrec", "train", f"model={model}", f"run.name={model}", *common],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        results = json.loads((tmp_path / "runs" / model / "results.json").read_text())
        text = json.dumps(results)
        assert '"cold/recall@10"' in text and '"warm/recall@10"' in text


class _WarmFirst(_Oracle):
    """Every warm item above every cold one, the user's targets first within each group: the mixed list holds no
    cold item, yet the model orders the cold items perfectly."""

    def score_items(self, users, items: slice):
        import torch

        target = self.ctx.targets(self.phase)[users][:, items].toarray().astype(np.float32)
        warm = ~np.asarray(self.ctx.cold_items[items], dtype=bool)
        return torch.from_numpy(target + 2.0 * warm[None, :])


def test_cold_only_ranks_cold_targets_among_cold_items() -> None:
    _, out = _split(0.2)
    ctx = DataContext.from_dataset(out)
    evaluator = Evaluator(ctx, ks=(10,), metrics=("recall",), beyond=())
    summary = evaluator.evaluate(_WarmFirst(ctx, TEST), TEST).summary
    assert summary["cold/recall@10"] == 0.0  # never recommended in the mixed list
    assert summary["cold-only/users"] == summary["cold/users"] > 0
    seen = ctx.seen(TEST)
    targets = ctx.targets(TEST)
    expected = []
    for user in np.flatnonzero(targets[:, ctx.cold_items].getnnz(axis=1) > 0):
        cold_targets = [i for i in targets[user].indices if ctx.cold_items[i]]
        unseen = [i for i in cold_targets if seen[user, i] == 0]
        expected.append(min(len(unseen), 10) / len(cold_targets))
    assert summary["cold-only/recall@10"] == pytest.approx(np.mean(expected)) and summary["cold-only/recall@10"] > 0.5
    # without a cold split there is no cold-only list
    _, plain = _split(0.0)
    plain_ctx = DataContext.from_dataset(plain)
    assert not any(
        k.startswith("cold-only/")
        for k in Evaluator(plain_ctx, ks=(10,), beyond=()).evaluate(_Oracle(plain_ctx, TEST), TEST).summary
    )
