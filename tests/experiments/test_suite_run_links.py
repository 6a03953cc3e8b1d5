"""Suite overrides that name another run of the same cell: HDRM reusing the suite's HGCF run as stage 1."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from modalrec.experiments.suite import Suite, run_suite


def test_placeholders_link_hdrm_to_the_cells_hgcf_run(tmp_path: Path, synthetic_dir: Path) -> None:
    body = {
        "name": "t",
        "out": str(tmp_path / "out"),
        "datasets": [{"name": str(synthetic_dir), "label": "syn"}],
        "seeds": [3],
        "common": {"train.epochs": 1, "train.batch_size": 512, "eval.ks": "5", "train.select": "recall@5", "train.threads": 1},
        "models": [
            {"name": "hgcf", "overrides": {"model.dim": 8, "model.layers": 1}},
            {
                "name": "hdrm",
                "overrides": {
                    "model.dim": 8,
                    "model.layers": 1,
                    "model.dims": [8, 16],
                    "model.steps": 3,
                    "model.sampling_steps": 3,
                    "model.stage1_run": "{runs}/{dataset}__hgcf__seed{seed}",
                },
            },
        ],
    }
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(body))
    suite = Suite.load(path)
    hgcf_run, hdrm_run = suite.plan()
    assert f"model.stage1_run={hgcf_run.path}" in suite.run_overrides(hdrm_run, [])
    outcomes = run_suite(suite, progress=False)
    assert [o.status for o in outcomes] == ["trained", "trained"], [o.error for o in outcomes]
    saved = yaml.safe_load((hdrm_run.path / "config.yaml").read_text())
    assert saved["model"]["stage1_run"] == str(hgcf_run.path)
    assert not (hdrm_run.path / "stage1").exists()  # stage 1 was loaded, not trained again
    assert json.loads((hdrm_run.path / "results.json").read_text())
