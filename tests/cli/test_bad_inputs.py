"""Bad command-line input, table-driven, through the real entry point (``modalrec.cli.main``):
every row must exit with status 2, name the offending key or file, print no traceback, and leave
no run directory (or any other file) behind."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from modalrec.cli import main
from modalrec.config import resolve
from modalrec.train.experiment import train
from modalrec.train.rundir import FAILED, RunDir

# (id, arguments, what the message must name); {data} {run} {failed} {damaged} {missing} {runs} {tmp} are filled in
TRAIN = "train model=bpr dataset={data} run.dir={runs} train.progress=false"
CASES = [
    ("unknown-dataset", "train model=bpr dataset=no-such-set run.dir={runs}", "no-such-set"),
    ("dim-0", "train model=sasrec dataset={data} run.dir={runs} model.dim=0", "dim"),
    ("heads-not-dividing-dim", "train model=sasrec dataset={data} run.dir={runs} model.dim=64 model.heads=3", "heads"),
    ("bm3-dim-0", "train model=bm3 dataset={data} run.dir={runs} model.dim=0", "model.dim"),
    ("hdrm-layers-negative", "train model=hdrm dataset={data} run.dir={runs} model.layers=-1", "model.layers"),
    ("batch-size-0", TRAIN + " train.batch_size=0", "train.batch_size"),
    ("epochs-negative", TRAIN + " train.epochs=-1", "train.epochs"),
    ("ks-0", TRAIN + " eval.ks=0", "eval.ks"),
    ("select-unknown-cutoff", TRAIN + " train.select=ndcg@99", "train.select"),
    ("device-cuda-without-cuda", TRAIN + " train.device=cuda", "train.device"),
    ("lr-negative", TRAIN + " train.lr=-1", "train.lr"),
    ("lr-nan", TRAIN + " train.lr=nan", "train.lr"),
    ("csv-path-missing", "train model=bpr dataset={tmp}/missing.csv run.dir={runs}", "missing.csv: does not exist"),
    ("optimizer-typo", TRAIN + " train.optimizer=adamm", "train.optimizer"),
    ("patience-0", TRAIN + " train.patience=0", "train.patience"),
    ("grad-accum-0", TRAIN + " train.grad_accum=0", "train.grad_accum"),
    ("sampled-typo", TRAIN + " eval.sampled=unifrom", "eval.sampled"),
    ("unknown-metric", TRAIN + " eval.metrics=ndcg,foo", "foo"),
    ("model-typo", "train model=sasrek dataset={data} run.dir={runs}", "sasrec"),
    ("key-typo", TRAIN + " train.lrr=1", "train.lr"),
    ("epochs-not-int", TRAIN + " train.epochs=lots", "train.epochs"),
    ("split-ratios", TRAIN + " dataset.split.ratios=0.5,0.5", "ratios"),
    ("not-key-value", TRAIN + " oops", "oops"),
    ("missing-config-file", "train --config {tmp}/nope.yaml", "nope.yaml"),
    ("resume-missing", "train --resume {missing}", "{missing}"),
    ("evaluate-ks-abc", "evaluate {run} --ks abc", "--ks"),
    ("evaluate-ks-0", "evaluate {run} --ks 5,0", "--ks"),
    ("evaluate-split", "evaluate {run} --split train", "--split"),
    ("evaluate-sampled-typo", "evaluate {run} --sampled foo", "foo"),
    ("evaluate-negatives-0", "evaluate {run} --sampled uniform --negatives 0", "--negatives"),
    ("evaluate-missing-run", "evaluate {missing}", "{missing}"),
    ("recommend-k-0", "recommend {run} --user 1 -k 0", "-k"),
    ("recommend-k-negative", "recommend {run} --user 1 -k -5", "-k"),
    ("recommend-unknown-user", "recommend {run} --user no-such-user", "no-such-user"),
    ("recommend-no-user", "recommend {run}", "--user"),
    ("recommend-missing-run", "recommend {missing} --user 1", "{missing}"),
    ("compare-unknown-metric", "compare {run} --metrics nope@10", "nope@10"),
    ("compare-failed-run", "compare {run} {failed}", "failed"),
    ("compare-missing-run", "compare {run} {missing}", "{missing}"),
    ("compare-damaged-results", "compare {run} {damaged}", "results.json"),
    ("compare-split", "compare {run} --split train", "--split"),
    ("data-info-unknown", "data info no-such-set", "no-such-set"),
    ("data-info-split-method", "data info {data} dataset.split.method=nope", "split.method"),
    ("data-prepare-foreign-key", "data prepare {data} --out {tmp}/out train.lr=1", "dataset.*"),
    ("search-unknown-dataset", "search model=bpr dataset=no-such-set --out {tmp}/study", "no-such-set"),
    ("search-unknown-metric", "search model=bpr dataset={data} --metric ndcg@99 --out {tmp}/study", "ndcg@99"),
    ("serve-missing-run", "serve {missing}", "{missing}"),
    ("serve-threads-0", "serve {run} --threads 0", "--threads"),
    ("serve-missing-images", "serve {run} --images {tmp}/no-images", "no-images"),
    # ranges, choices (Literal fields) and rules between keys declared with a Config (modalrec.checks), by family
    ("ease-l2-0", "train model=ease dataset={data} run.dir={runs} model.l2=0", "'model.l2' must be > 0, got 0.0"),
    (
        "diffrec-sampling-past-steps",
        "train model=diffrec dataset={data} run.dir={runs} model.sampling_steps=99",
        "'model.sampling_steps', 'model.steps': sampling_steps (99) must be <= steps (40)",
    ),
    ("hdrm-alpha-2", "train model=hdrm dataset={data} run.dir={runs} model.alpha=2", "'model.alpha' must be >= 0 and <= 1"),
    (
        "ldiffrec-act-typo",
        "train model=ldiffrec dataset={data} run.dir={runs} model.ae_act=gelu",
        "'model.ae_act' must be one of tanh, relu, sigmoid, got 'gelu'",
    ),
    (
        "sasrec-loss-typo",
        "train model=sasrec dataset={data} run.dir={runs} model.loss=cee",
        "'model.loss' must be one of ce, sampled, bce, bpr, got 'cee'. Did you mean 'ce'?",
    ),
    (
        "sasrec-sampled-without-negatives",
        "train model=sasrec dataset={data} run.dir={runs} model.loss=sampled model.negatives=0",
        "'model.loss', 'model.negatives': loss 'sampled' needs model.negatives >= 1",
    ),
    (
        "bert4rec-mask-prob-0",
        "train model=bert4rec dataset={data} run.dir={runs} model.mask_prob=0",
        "'model.mask_prob' must be > 0 and <= 1",
    ),
    (
        "findrec-mode-typo",
        "train model=findrec dataset={data} run.dir={runs} model.mode=mmx",
        "'model.mode' must be one of faithful, clean, mmd, got 'mmx'",
    ),
    (
        "findrec-heads-not-dividing",
        "train model=findrec dataset={data} run.dir={runs} model.modal_dim=100 model.heads=3",
        "'model.modal_dim', 'model.heads': modal_dim (100) must be a multiple of heads (3)",
    ),
    (
        "findrec-window-not-causal",
        "train model=findrec dataset={data} run.dir={runs} model.xattn_causal=false model.xattn_window=4",
        "'model.xattn_window', 'model.xattn_causal'",
    ),
    ("bm3-dropout-1", "train model=bm3 dataset={data} run.dir={runs} model.dropout=1", "'model.dropout' must be >= 0 and < 1"),
    (
        "mgcn-fusion-typo",
        "train model=mgcn dataset={data} run.dir={runs} model.fusion=sum",
        "'model.fusion' must be one of code, mean_specific, got 'sum'",
    ),
    (
        "dmrl-dim-not-dividing",
        "train model=dmrl dataset={data} run.dir={runs} model.dim=63",
        "'model.dim', 'model.factors': dim (63) must be a multiple of factors (4)",
    ),
    ("lgmrec-tau-nan", "train model=lgmrec dataset={data} run.dir={runs} model.tau=nan", "'model.tau' must be > 0, got nan"),
    (
        "vbpr-encoder-typo",
        "train model=vbpr dataset={data} run.dir={runs} model.item_encoder=txt",
        "'model.item_encoder' must be one of features, text, image, got 'txt'",
    ),
    ("scheduler-typo", TRAIN + " train.scheduler=cosin", "'train.scheduler' must be one of none, step, cosine, exponential"),
    ("gamma-2", TRAIN + " train.gamma=2", "'train.gamma' must be > 0 and <= 1"),
    ("dist-backend-typo", TRAIN + " train.dist_backend=mpi", "'train.dist_backend' must be one of auto, nccl, gloo"),
    ("negatives-typo", TRAIN + " train.negatives=hard", "'train.negatives' must be one of uniform, popularity"),
    ("eval-n-negatives-0", TRAIN + " eval.n_negatives=0", "'eval.n_negatives' must be >= 1"),
    ("eval-user-chunk-0", TRAIN + " eval.user_chunk=0", "'eval.user_chunk' must be >= 1"),
]


@pytest.fixture(scope="module")
def places(synthetic_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A finished run, a failed copy of it, a copy with a damaged results.json, and a path that does not exist."""
    root = tmp_path_factory.mktemp("bad-inputs")
    cfg = resolve(["model=ease", f"dataset={synthetic_dir}", f"run.dir={root}", "run.name=ease", "train.progress=false"])
    run_dir, _ = train(cfg)
    failed = RunDir(root / "failed")
    shutil.copytree(run_dir.path, failed.path)
    failed.mark(FAILED, RuntimeError("the loss became NaN"))
    damaged = RunDir(root / "damaged")
    shutil.copytree(run_dir.path, damaged.path)
    damaged.results.write_text('{"test": {"ndcg@10": 0.1')  # cut short
    return {
        "data": synthetic_dir,
        "run": run_dir.path,
        "failed": failed.path,
        "damaged": damaged.path,
        "missing": root / "no-such-run",
    }


def _files(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


@pytest.mark.parametrize(("args", "names"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(
    args: str, names: str, places: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    if "train.device=cuda" in args and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started on bad input"))
    fill = {**{k: str(v) for k, v in places.items()}, "runs": str(tmp_path / "runs"), "tmp": str(tmp_path)}
    monkeypatch.setattr(sys, "argv", ["modalrec", *args.format(**fill).split()])
    before = _files(places["run"].parent)
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr()
    text = " ".join((out.out + out.err).split())  # rich wraps long lines
    assert exit_info.value.code == 2, text
    assert names.format(**fill) in text, text
    assert "Traceback" not in text
    assert _files(tmp_path) == set(), "bad input left files behind"
    assert _files(places["run"].parent) == before


def test_the_table_is_large_enough() -> None:
    commands = {c[1].split()[0] for c in CASES}
    assert len(CASES) >= 30 and {"train", "evaluate", "recommend", "compare", "data", "serve", "search"} <= commands


def test_a_run_that_fails_while_training_is_marked_failed(synthetic_dir: Path, tmp_path: Path) -> None:
    """Past validation, a failure leaves status.json = failed with the error, and compare refuses it."""

    def diverge(epoch: int, summary: dict) -> None:
        raise FloatingPointError("the loss became NaN")

    cfg = resolve(
        [
            "model=bpr",
            f"dataset={synthetic_dir}",
            f"run.dir={tmp_path}",
            "run.name=broken",
            "train.epochs=3",
            "model.dim=8",
            "train.progress=false",
        ]
    )
    with pytest.raises(FloatingPointError):
        train(cfg, on_validation=diverge)
    status = RunDir(tmp_path / "broken").status()
    assert status["status"] == FAILED and "the loss became NaN" in status["error"]
    assert not (tmp_path / "broken" / "results.json").exists()


def test_a_model_built_in_python_checks_its_declared_ranges(synthetic_dir: Path) -> None:
    """The ranges a model's Config declares hold without the config layer too (Recommender.__init__)."""
    from modalrec.data.context import DataContext
    from modalrec.errors import ConfigError
    from modalrec.models.general.lightgcn import LightGCN
    from modalrec.train.experiment import prepare_data

    ds, _ = prepare_data(resolve(["model=lightgcn", f"dataset={synthetic_dir}"]), "general")
    ctx = DataContext.from_dataset(ds)
    for bad, key in ((LightGCN.Config(dim=0), "model.dim"), (LightGCN.Config(layers=-2), "model.layers")):
        with pytest.raises(ConfigError, match=key):
            LightGCN(bad, ctx)
    assert LightGCN(LightGCN.Config(layers=0), ctx).config.layers == 0  # zero propagation layers is plain MF


def test_an_interrupted_run_says_so_and_a_resumed_one_finishes(synthetic_dir: Path, tmp_path: Path) -> None:
    from modalrec.train.rundir import FINISHED, INTERRUPTED

    def interrupt(epoch: int, summary: dict) -> None:
        if epoch == 3:
            raise KeyboardInterrupt

    cfg = resolve(
        [
            "model=bpr",
            f"dataset={synthetic_dir}",
            f"run.dir={tmp_path}",
            "run.name=stopped",
            "train.epochs=4",
            "model.dim=8",
            "train.progress=false",
        ]
    )
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_validation=interrupt)
    run = RunDir(tmp_path / "stopped")
    assert run.status()["status"] == INTERRUPTED and run.last.exists()
    train(None, resume=run.path)
    assert run.status()["status"] == FINISHED and run.results.exists()
