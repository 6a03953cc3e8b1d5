"""Side-by-side parity of the multimodal zoo with its reference code (MMRec), on one split, several seeds.

The reference is never part of this project (MMRec is GPL-3.0): this script runs a checkout of it that the user
provides, in its own process, and only reads back its numbers. See benchmarks/zoo_parity.md for the checkout,
the CPU patches the reference needs (described, not shipped) and the exact commands.

    python benchmarks/zoo_parity.py export <mmrec>/data sci          # ModalRec's split -> MMRec's format
    python benchmarks/zoo_parity.py run --mmrec <mmrec> --models bm3,mgcn --variants ref,modalrec --seeds 1,2,3 \\
        --out benchmarks/results/zoo_parity.jsonl                    # resumable: finished runs are skipped
    python benchmarks/zoo_parity.py table benchmarks/results/zoo_parity.jsonl

Protocol (both sides): the same per-user random 8:1:1 split (ModalRec's, seed 0, written to MMRec's ``x_label``),
the same hyper-parameters, Adam at ``--lr``, batch 2,048, validation Recall@20 every epoch, stop after 10
validations without improvement (MMRec ``stopping_step`` 10 = ModalRec ``patience`` 11), at most ``--epochs``
epochs; the number is test Recall@20 at the best validation epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# model -> (MMRec class, reference config overrides, ModalRec model overrides): the same point on both sides
MODELS: dict[str, tuple[str, dict, dict]] = {
    "bm3": (
        "BM3",
        {"n_layers": 1, "reg_weight": 0.1, "dropout": 0.3, "cl_weight": 2.0},
        {},
    ),
    "mgcn": ("MGCN", {"cl_loss": 0.01, "reg_weight": 1e-4, "knn_k": 10}, {}),
    "freedom": ("FREEDOM", {"dropout": 0.8, "reg_weight": 1e-4, "knn_k": 10}, {}),
    "lattice": ("LATTICE", {"reg_weight": 1e-4, "knn_k": 10}, {"reg": 1e-4}),
    "vbpr": ("VBPR", {"reg_weight": 1e-4}, {"reg": 1e-4}),
    # the reference's SLMRec has 3 LightGCN layers (not a grid key) and one ssl temperature; ours the same point
    "slmrec": (
        "SLMRec",
        {"reg": 1e-4, "ssl_alpha": 0.1, "ssl_temp": 0.2},
        {"layers": 3},
    ),
    "mmgcn": ("MMGCN", {"reg_weight": 1e-4}, {}),
    # GRCN: the reference's n_layers is its routing count (3, ours the same); the reference's first grid
    # reg_weight (0.1) is far off every other model's point, both sides take 1e-4
    "grcn": ("GRCN", {"reg_weight": 1e-4, "n_layers": 3}, {}),
    # the YAML of LGMRec spells its grid values '1e-04' (a string to PyYAML): pinned here as numbers
    "lgmrec": ("LGMRec", {"reg_weight": 1e-6, "cl_weight": 1e-4}, {"reg": 1e-6}),
    "dualgnn": ("DualGNN", {"reg_weight": 1e-4}, {}),
}
# ModalRec overrides that reproduce the code before the parity fixes (variant "flags-old") as far as flags can
FLAGS_OLD = {
    "bm3": {"reg_form": "batch_l2", "residual": False},
    "mgcn": {
        "fusion": "mean_specific",
        "knn_self": False,
        "contrast_unique": True,
        "train.scheduler": "none",
    },
    "freedom": {"knn_self": False, "init_std": 0.1},
}
# ModalRec overrides of variant "code": the reference's effective behaviour where ModalRec's default keeps the paper's
CODE_FLAGS = {"grcn": {"routing": 0}}  # the reference's routing never updates the preferences


def export(out: Path, name: str) -> None:
    """ModalRec's amazon-scientific-mm random 8:1:1 split (seed 0) as an MMRec folder ``out/name``."""
    import numpy as np

    from modalrec.config import resolve
    from modalrec.train.experiment import prepare_data

    ds, _ = prepare_data(
        resolve(
            [
                "model=lightgcn",
                "dataset=amazon-scientific-mm",
                "dataset.split.method=random",
            ]
        ),
        "general",
    )
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.inter", "w") as f:
        f.write("userID\titemID\tx_label\n")
        f.writelines(f"{u}\t{i}\t{int(s)}\n" for u, i, s in zip(ds.user, ds.item, ds.split))
    for modality, feature in ds.features.items():
        np.save(
            folder / f"{modality}_feat.npy",
            np.asarray(feature.values, dtype=np.float32),
        )
    (out.parent / "src" / "configs" / "dataset" / f"{name}.yaml").write_text(
        f"USER_ID_FIELD: userID\nITEM_ID_FIELD: itemID\nfilter_out_cod_start_users: True\ninter_file_name: '{name}.inter'\n"
        "vision_feature_file: 'image_feat.npy'\ntext_feature_file: 'text_feat.npy'\n"
        "user_graph_dict_file: 'user_graph_dict.npy'\nfield_separator: \"\\t\"\n"
    )
    print(f"{folder}: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions, features {sorted(ds.features)}")


def reference_one(src: Path, model: str, dataset: str, seed: int, overrides: dict) -> dict:
    """One MMRec run in this process (MMRec's own quick_start, every grid key pinned to one value)."""
    import yaml

    sys.path.insert(0, str(src))
    os.chdir(src)
    import common.trainer as mmrec_trainer  # the reference's modules, from the user's checkout
    from utils.quick_start import quick_start

    fits = []
    fit = mmrec_trainer.Trainer.fit

    def recording_fit(self, *args, **kwargs):
        out = fit(self, *args, **kwargs)
        fits.append(
            {
                "valid": out[1],
                "test": out[2],
                "best_epoch": getattr(self, "best_valid_epoch", None),
                "epochs": getattr(self, "cur_epoch", None),
            }
        )
        return out

    mmrec_trainer.Trainer.fit = recording_fit
    declared = yaml.safe_load((src / "configs" / "model" / f"{model}.yaml").read_text()) or {}
    grid = list(declared.get("hyper_parameters", []))
    cfg = {k: (v[0] if isinstance(v, list) else v) for k, v in declared.items() if k in grid}
    cfg.update(overrides)
    cfg = {k: ([v] if k in grid else v) for k, v in cfg.items()}
    cfg.update(
        {
            "use_gpu": False,
            "seed": [seed],
            "save_recommended_topk": False,
            "hyper_parameters": ["seed", *grid],
        }
    )
    quick_start(model=model, dataset=dataset, config_dict=cfg, save_model=False)
    return {
        "valid": fits[-1]["valid"]["recall@20"],
        "test": fits[-1]["test"]["recall@20"],
    }


def modalrec_one(model: str, seed: int, overrides: dict, protocol: dict, pythonpath: str | None) -> dict:
    """One ``modalrec train`` run (optionally of another source tree, e.g. the code before a fix)."""
    with tempfile.TemporaryDirectory() as runs:
        args = [
            f"model={model}",
            "dataset=amazon-scientific-mm",
            "dataset.split.method=random",
            f"train.seed={seed}",
            f"train.lr={protocol['lr']}",
            "train.batch_size=2048",
            f"train.epochs={protocol['epoch_cap']}",
            "train.patience=11",
            "train.select=recall@20",
            "train.threads=1",
            "eval.ks=[20]",
            "eval.metrics=[recall,ndcg]",
            f"run.dir={runs}",
            "run.name=r",
        ]
        args += [f"{k}={v}" if k.startswith("train.") else f"model.{k}={v}" for k, v in overrides.items()]
        env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
        subprocess.run(
            [sys.executable, "-m", "modalrec", "train", *args, "--quiet"],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        result = json.loads((Path(runs) / "r" / "results.json").read_text())
    return {
        "valid": result["valid"]["recall@20"],
        "test": result["test"]["recall@20"],
        "best_epoch": result["best_epoch"],
        "epochs": result["epochs_run"],
    }


def run(a: argparse.Namespace) -> None:
    done = set()
    out = Path(a.out)
    if out.exists():
        done = {(r["model"], r["variant"], r["seed"]) for r in map(json.loads, out.read_text().splitlines())}
    protocol = {"lr": a.lr, "epoch_cap": a.epochs}
    for model in a.models.split(","):
        mmrec_name, ref_over, ours_over = MODELS[model]
        for seed in map(int, a.seeds.split(",")):
            for variant in a.variants.split(","):
                if (model, variant, seed) in done:
                    continue
                start = time.time()
                if variant == "ref":
                    over = {
                        **ref_over,
                        "learning_rate": a.lr,
                        "epochs": a.epochs,
                        "stopping_step": 10,
                        "train_batch_size": 2048,
                    }
                    cmd = [
                        a.ref_python or sys.executable,
                        __file__,
                        "ref-one",
                        str(Path(a.mmrec) / "src"),
                        mmrec_name,
                        a.dataset,
                        str(seed),
                        json.dumps(over),
                    ]
                    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                else:
                    over = {
                        **ours_over,
                        **(FLAGS_OLD.get(model, {}) if variant == "flags-old" else {}),
                        **(CODE_FLAGS.get(model, {}) if variant == "code" else {}),
                    }
                    res = modalrec_one(
                        model,
                        seed,
                        over,
                        protocol,
                        a.before_src if variant == "before" else None,
                    )
                row = {
                    "model": model,
                    "variant": variant,
                    "seed": seed,
                    **protocol,
                    **res,
                    "seconds": round(time.time() - start, 1),
                }
                with open(out, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)


def table(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    by: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        by.setdefault((r["model"], r["variant"]), []).append(r["test"])
    print("| model | variant | seeds | test Recall@20 (mean ± std) | vs ref |")
    print("|---|---|---:|---:|---:|")
    for (model, variant), values in sorted(by.items()):
        mean = statistics.mean(values)
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        ref = by.get((model, "ref"))
        gap = f"{100 * (mean / statistics.mean(ref) - 1):+.1f} %" if ref and variant != "ref" else ""
        print(f"| {model} | {variant} | {len(values)} | {mean:.4f} ± {std:.4f} | {gap} |")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "ref-one":  # internal: one reference run, JSON on the last stdout line
        src, model, dataset, seed, over = sys.argv[2:7]
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                res = reference_one(Path(src), model, dataset, int(seed), json.loads(over))
            finally:
                sys.stdout = stdout
        print(json.dumps(res))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("data", type=Path)
    e.add_argument("name")
    r = sub.add_parser("run")
    r.add_argument("--mmrec", required=True, help="the MMRec checkout (its src/ is run)")
    r.add_argument("--dataset", default="sci")
    r.add_argument(
        "--ref-python",
        help="the interpreter for the reference (one with torch_geometric for MMGCN, GRCN, DualGNN)",
    )
    r.add_argument("--models", required=True)
    r.add_argument(
        "--variants",
        default="ref,modalrec",
        help="ref | modalrec | before (--before-src) | flags-old | code",
    )
    r.add_argument(
        "--before-src",
        help="PYTHONPATH of another ModalRec source tree for the 'before' variant",
    )
    r.add_argument("--seeds", default="1,2,3")
    r.add_argument("--lr", type=float, default=0.005)
    r.add_argument("--epochs", type=int, default=150)
    r.add_argument("--out", required=True)
    t = sub.add_parser("table")
    t.add_argument("path", type=Path)
    a = p.parse_args()
    if a.cmd == "export":
        export(a.data, a.name)
    elif a.cmd == "run":
        run(a)
    else:
        table(a.path)


if __name__ == "__main__":
    main()
