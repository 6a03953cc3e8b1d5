"""Fixtures: fabricated run directories with known numbers, suite files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml


def fake_run(
    path: Path,
    model: str,
    seed: int,
    per_user: dict[str, np.ndarray],
    users: np.ndarray,
    history: list[float],
    seconds: float = 1.0,
    dataset: str = "toy",
    extra: dict[str, float] | None = None,
) -> Path:
    """A finished run directory as the trainer writes it, with given per-user test metrics; summaries are
    their means (valid = test here), history the per-epoch validation ndcg@10."""
    path.mkdir(parents=True)
    config = {"model": {"name": model}, "dataset": {"name": dataset}, "train": {"seed": seed, "select": "ndcg@10"}}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    summary = {k: float(v.mean()) for k, v in per_user.items()} | (extra or {})
    results = {
        "model": model,
        "dataset": dataset,
        "selected_by": "valid ndcg@10",
        "best_epoch": int(np.argmax(history)) + 1,
        "epochs_run": len(history),
        "train_seconds": seconds,
        "valid": summary,
        "test": summary,
        "n_parameters": 10,
        "test_eval": {"protocol": "full"},
    }
    (path / "results.json").write_text(json.dumps(results))
    lines = [json.dumps({"epoch": i + 1, "valid": {"ndcg@10": v}}) for i, v in enumerate(history)]
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    for split in ("valid", "test"):
        np.savez(path / f"per_user_{split}.npz", users=users, **per_user)
    return path


@pytest.fixture
def fake_runs(tmp_path: Path) -> dict[str, list[Path]]:
    """Three models x two seeds on 300 users: 'strong' is clearly best, 'twin' equals it per user
    (in another user order), 'weak' is clearly worse. Metrics at K = 10 and 20."""
    rng = np.random.default_rng(0)
    users = np.arange(300)
    runs: dict[str, list[Path]] = {}
    for seed in (1, 2):
        base = rng.random(300)
        strong = {
            "ndcg@10": base,
            "ndcg@20": np.minimum(1, base * 1.2),
            "recall@10": base,
            "recall@20": np.minimum(1, base * 1.5),
        }
        weak = {k: v * 0.5 for k, v in strong.items()}
        order = rng.permutation(300)
        twin = {k: v[order] for k, v in strong.items()}
        for name, per_user, u, hist, secs in (
            ("strong", strong, users, [0.3, 0.5, 0.4], 10.0 * seed),
            ("weak", weak, users, [0.2, 0.25], 2.0),
            ("twin", twin, users[order], [0.5], 0.5),
        ):
            runs.setdefault(name, []).append(
                fake_run(
                    tmp_path / "runs" / f"{name}-s{seed}",
                    name,
                    seed,
                    per_user,
                    u,
                    hist,
                    secs,
                    extra={"gini@10": {"strong": 0.6, "weak": 0.4, "twin": 0.7}[name] + 0.01 * seed},
                )
            )
    return runs


@pytest.fixture
def make_run():
    """:func:`fake_run` for tests that fabricate their own runs."""
    return fake_run
