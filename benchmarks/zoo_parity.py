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
import re
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
    # not in MMRec: the authors' code is run (--micro); ModalRec's defaults are its argparse defaults
    "micro": ("MICRO", {}, {}),
    # not in MMRec: the authors' TF code is run (--dmrl); their embedding size, ours otherwise at its defaults
    "dmrl": ("DMRL", {}, {"dim": 128}),
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
_UI, _GRAD = {"ui_graph": "row_self"}, {"graph_grad": "first_batch"}  # LATTICE's and MICRO's code
CODE_FLAGS = {
    "grcn": {"routing": 0},  # the reference's routing never updates the preferences
    "lattice": {**_UI, **_GRAD},
    "micro": {**_UI, **_GRAD},
    "mmgcn": {"layers": 3},  # MMRec's port builds three GCN layers whatever n_layers says
    # DMRL's code at its values: its summed loss weights decay_r 1e-2, decay_c 1 are ours / batch (2,048)
    "dmrl": {
        "form": "code",
        "init_std": "null",
        "reg": 1e-2 / 2048,
        "dcor_weight": 1 / 2048,
        "dcor_rows": 2048,
        "train.num_negatives": 4,
    },
}
# one difference of "code" at a time: variant -> model -> overrides
PART_FLAGS = {"code-ui": {"lattice": _UI, "micro": _UI}, "code-grad": {"lattice": _GRAD, "micro": _GRAD}}


def _split():
    """ModalRec's amazon-scientific-mm with its per-user random 8:1:1 split (seed 0)."""
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
    return ds


def export(out: Path, name: str) -> None:
    """ModalRec's amazon-scientific-mm random 8:1:1 split (seed 0) as an MMRec folder ``out/name``."""
    import numpy as np

    ds = _split()
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


def export_micro(out: Path, name: str) -> None:
    """The same split in MICRO's format: ``out/name/5-core/{train,val,test}.json`` ({user: [items]}) + text features."""
    import numpy as np

    ds = _split()
    folder = out / name / "5-core"
    folder.mkdir(parents=True, exist_ok=True)
    for label, file in enumerate(("train", "val", "test")):
        rows: dict[str, list[int]] = {}
        for u, i, s in zip(ds.user, ds.item, ds.split):
            if int(s) == label:
                rows.setdefault(str(int(u)), []).append(int(i))
        (folder / f"{file}.json").write_text(json.dumps(rows))
    np.save(out / name / "text_feat.npy", np.asarray(ds.features["text"].values, dtype=np.float32))
    print(f"{out / name}: {ds.n_users} users, {ds.n_items} items, {ds.n_interactions} interactions")


def micro_one(codes: Path, seed: int, protocol: dict, python: str) -> dict:
    """One run of the authors' MICRO (``codes/main.py`` of a patched scratch copy), read back from its log lines."""
    cmd = [python, "main.py", "--dataset", "sci", "--seed", str(seed), "--lr", str(protocol["lr"])]
    cmd += ["--batch_size", "2048", "--epoch", str(protocol["epoch_cap"]), "--verbose", "1"]
    cmd += ["--early_stopping_patience", "10", "--debug"]  # their counter stops after 11 misses = our patience 11
    log = subprocess.run(cmd, cwd=codes, check=True, capture_output=True, text=True).stdout
    valid = [float(v) for v in re.findall(r"recall=\[[0-9.]+, ([0-9.]+)\]", log)]
    tests = [float(v) for v in re.findall(r"Test_Recall@20: ([0-9.]+)", log)]
    best = max(range(len(valid)), key=lambda e: (valid[e], -e))  # the first epoch with the best valid recall
    return {"valid": valid[best], "test": tests[-1], "best_epoch": best + 1, "epochs": len(valid)}


def dmrl_one(code: Path, data: Path, seed: int, protocol: dict) -> dict:
    """One run of the authors' DMRL (a patched scratch copy of ``DMRL.py`` with its sampler and evaluator) in this
    process, under an interpreter with TensorFlow. Their ``optimize`` selects on test and has no validation, so this
    loop replaces it: an epoch is one pass over the train pairs (their ``EVALUATION_EVERY_N_BATCHES`` batches),
    validation Recall@20 with their ``RecallEvaluator`` (train masked) after each, test (train + valid masked) at
    every new best, stop after 11 validations without improvement. Their hyper-parameters otherwise: 128-d, 4
    factors, 4 negatives, ``decay_r`` 1e-2, ``decay_c`` 1, hidden 2 x 128 for text."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tf.layers needs Keras 2 (the tf_keras package)
    sys.path.insert(0, str(code))
    import random

    import DMRL as ref  # the patched scratch copy (never part of this project)
    import numpy as np
    import scipy.sparse as sp
    import toolz
    from evaluator20 import RecallEvaluator
    from sampler import WarpSampler

    tf = ref.tf
    RecallEvaluator.get_auc = lambda self, scores, positives: 0.0  # an AUC per user they compute and never use here
    ref.args = argparse.Namespace(n_factors=4, num_neg=4)  # the module reads these two from its global args
    rows = np.loadtxt(data / f"{data.name}.inter", dtype=np.int64, skiprows=1, ndmin=2)
    text = np.load(data / "text_feat.npy")
    n_users, n_items = int(rows[:, 0].max()) + 1, len(text)

    def matrix(labels: tuple[int, ...]) -> sp.dok_matrix:
        keep = np.isin(rows[:, 2], labels)
        m = sp.csr_matrix((np.ones(keep.sum(), np.float32), (rows[keep, 0], rows[keep, 1])), shape=(n_users, n_items))
        return m.todok()

    train, valid, test, seen = matrix((0,)), matrix((1,)), matrix((2,)), matrix((0, 1))
    random.seed(seed)
    np.random.seed(seed)
    tf.set_random_seed(seed)
    batch = 2048
    model = ref.DMRL(
        n_users,
        n_items,
        embed_dim=128,
        batch_size=batch,
        imagefeatures=None,
        textualfeatures=text,
        master_learning_rate=protocol["lr"],
        hidden_layer_dim_a=256,
        hidden_layer_dim_b=128,
        decay_r=1e-2,
        decay_c=1.0,
        dropout_rate_a=0.2,
        dropout_rate_b=0.2,
    )
    sampler = WarpSampler(train, batch_size=batch, n_negative=4, n_workers=1, check_negative=True)
    config = tf.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    sess = tf.Session(config=config)
    sess.run(tf.global_variables_initializer())

    def recall(known: sp.dok_matrix, target: sp.dok_matrix) -> float:
        evaluator = RecallEvaluator(model, known, target)
        users = np.asarray(sorted(set(target.nonzero()[0])), dtype=np.int32)
        values: list[float] = []
        for chunk in toolz.partition_all(100, users):
            values.extend(evaluator.eval(sess, chunk)[0])
        return float(np.mean(values))

    best, best_epoch, test_at_best, misses, epoch = -1.0, 0, 0.0, 0, 0
    try:
        for epoch in range(1, protocol["epoch_cap"] + 1):
            for _ in range(train.nnz // batch + 1):
                pairs, neg = sampler.next_batch()
                sess.run(model.optimize, {model.user_positive_items_pairs: pairs, model.negative_samples: neg})
            value = recall(train, valid)
            if value > best:
                best, best_epoch, misses = value, epoch, 0
                test_at_best = recall(seen, test)
            else:
                misses += 1
                if misses > 10:
                    break
    finally:
        sampler.close()
    return {"valid": best, "test": test_at_best, "best_epoch": best_epoch, "epochs": epoch}


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


# variant "trainmask": the test ranking masks the train items only (MMRec's evaluator: its test loader's history is
# the train split), not train + valid (ModalRec's, and the protocol MICRO's and DMRL's runs here were given);
# training and validation are untouched, so with the same seed it differs from "modalrec" in the test number only
TRAIN_MASK = (
    "import sys; from modalrec.data.context import DataContext; DataContext.seen = lambda self, phase: self.train; "
    "sys.argv[0] = 'modalrec'; from modalrec.cli import main; main()"
)


def modalrec_one(
    model: str, seed: int, overrides: dict, protocol: dict, pythonpath: str | None, train_mask: bool = False
) -> dict:
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
            [sys.executable, *(["-c", TRAIN_MASK] if train_mask else ["-m", "modalrec"]), "train", *args, "--quiet"],
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
                if variant == "ref" and model == "dmrl":
                    cmd = [a.ref_python or sys.executable, __file__, "dmrl-one", a.dmrl, a.dmrl_data, str(seed)]
                    cmd.append(json.dumps(protocol))
                    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
                    res = json.loads(proc.stdout.strip().splitlines()[-1])
                elif variant == "ref" and model == "micro":
                    res = micro_one(Path(a.micro), seed, protocol, a.ref_python or sys.executable)
                elif variant == "ref":
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
                        **PART_FLAGS.get(variant, {}).get(model, {}),
                    }
                    res = modalrec_one(
                        model,
                        seed,
                        over,
                        protocol,
                        a.before_src if variant == "before" else None,
                        train_mask=variant == "trainmask",
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
    if len(sys.argv) > 1 and sys.argv[1] == "dmrl-one":  # internal: one run of the authors' DMRL, JSON last
        code, data, seed, protocol = sys.argv[2:6]
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                res = dmrl_one(Path(code), Path(data), int(seed), json.loads(protocol))
            finally:
                sys.stdout = stdout
        print(json.dumps(res))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("data", type=Path)
    e.add_argument("name")
    em = sub.add_parser("export-micro")
    em.add_argument("data", type=Path)
    em.add_argument("name")
    r = sub.add_parser("run")
    r.add_argument("--mmrec", help="the MMRec checkout (its src/ is run)")
    r.add_argument("--dmrl", help="a patched liufancs/DMRL copy (DMRL.py, sampler.py, evaluator20.py; TF: --ref-python)")
    r.add_argument("--dmrl-data", default="/tmp/mmrec/data/sci", help="the split as written by `export` (MMRec format)")
    r.add_argument("--micro", help="the codes/ folder of a patched CRIPAC-DIG/MICRO copy (its main.py is run)")
    r.add_argument("--dataset", default="sci")
    r.add_argument(
        "--ref-python",
        help="the interpreter for the reference (one with torch_geometric for MMGCN, GRCN, DualGNN)",
    )
    r.add_argument("--models", required=True)
    r.add_argument(
        "--variants",
        default="ref,modalrec",
        help="ref | modalrec | current (modalrec, rerun on this tree) | before (--before-src) | flags-old | code | "
        "code-ui | code-grad | trainmask",
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
    elif a.cmd == "export-micro":
        export_micro(a.data, a.name)
    elif a.cmd == "run":
        run(a)
    else:
        table(a.path)


if __name__ == "__main__":
    main()
