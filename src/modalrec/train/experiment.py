"""One run end to end: config -> data -> model -> train -> select on validation -> test -> run dir.

Also re-opens a finished run (for ``evaluate``, ``recommend`` and serving): the dataset is rebuilt
from the saved config and checked against the saved content hash, so a run always scores the exact
data it was trained on.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import warnings
from dataclasses import dataclass
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import Any

import torch

from modalrec.config import RunConfig, load_yaml, model_config, resolve
from modalrec.console import LOGGER
from modalrec.data.context import DataContext
from modalrec.data.dataset import Dataset
from modalrec.data.features.corrupt import corrupt_features
from modalrec.data.preprocess import preprocess
from modalrec.data.registry import load_source
from modalrec.data.sources.feature_files import attach_feature_files
from modalrec.data.split import SplitConfig, SplitMethod, split
from modalrec.devices import resolve_device
from modalrec.errors import CheckpointError, ConfigError, ModalRecError
from modalrec.fileio import to_jsonable
from modalrec.models.base import Recommender, get_model_class
from modalrec.train import distributed
from modalrec.train.checkpoint import identity, restore_model, seed_everything
from modalrec.train.rundir import FAILED, FINISHED, INTERRUPTED, RUNNING, RunDir, default_run_name
from modalrec.train.trainer import Trainer, ValidationCallback

log = logging.getLogger(__name__)
package_log = logging.getLogger(LOGGER)  # every modalrec.* logger propagates here: train.log is attached to it


def resolved_split(cfg: SplitConfig, ds: Dataset, family: str) -> SplitConfig:
    """``method: auto`` -> the dataset's own split when it has one, else leave-one-out for
    sequential models and a per-user temporal 8:1:1 split for general ones (random when there are
    no timestamps)."""
    if cfg.method != "auto":
        return cfg
    method: SplitMethod
    if ds.split is not None:
        method = "given"
    elif family == "sequential":
        method = "loo"
    else:
        method = "temporal" if ds.timestamp is not None else "random"
    return dataclasses.replace(cfg, method=method)


def prepare_data(cfg: RunConfig, family: str) -> tuple[Dataset, SplitConfig]:
    """Load, preprocess and split the dataset the config names; returns it and the split used."""
    ds = load_source(cfg.dataset.name, cfg.dataset.columns, cfg.dataset.sep)
    if cfg.dataset.feature_files:
        ds = attach_feature_files(ds, cfg.dataset.feature_files, cfg.dataset.feature_rows)
    ds = corrupt_features(ds, cfg.dataset.feature_noise, cfg.dataset.feature_noise_kind, cfg.dataset.feature_noise_seed)
    split_cfg = resolved_split(cfg.dataset.split, ds, family)
    # a recomputed split de-duplicates over the whole history, not within the source's splits
    ds = preprocess(ds, cfg.dataset.preprocess, resplit=split_cfg.method != "given")
    ds = split(ds, split_cfg)
    ds.validate()
    return ds, split_cfg


def build_model(cfg: RunConfig, ctx: DataContext, device: torch.device) -> Recommender:
    """The configured model on ``device``. A model checks its own hyper-parameters as it is built;
    a value that a torch layer refuses instead (ValueError / RuntimeError) is reported with the
    model's config, never as a traceback."""
    model_cls = get_model_class(cfg.model_name)
    try:
        return model_cls(model_config(cfg), ctx).to(device)
    except (ValueError, RuntimeError) as err:
        settings = ", ".join(f"model.{key}={value}" for key, value in cfg.model.items() if key != "name")
        raise ConfigError(f"model '{cfg.model_name}' cannot be built with {settings}: {err}") from err


def run_identity(cfg: RunConfig, ds: Dataset) -> dict[str, Any]:
    return identity(cfg.model_name, dict(cfg.model), ds.content_hash(), ds.n_users, ds.n_items)


def train(
    cfg: RunConfig | None,
    resume: Path | None = None,
    on_validation: ValidationCallback | None = None,
    score_test: bool = True,
) -> tuple[RunDir, dict[str, Any]]:
    """Train and test one run; with ``resume`` continue the run in that directory (its saved config wins).

    ``on_validation(epoch, summary)`` is called after every validation (it may raise to stop the run);
    ``score_test=False`` never reads the test split (hyper-parameter search)."""
    if resume is not None:
        run_dir = RunDir(Path(resume))
        if not run_dir.config.exists():
            raise ModalRecError(f"{resume} is not a run directory (no config.yaml)")
        if not run_dir.last.exists():
            raise ModalRecError(f"{resume} has no checkpoints/last.pt to resume from (it never finished an epoch)")
        run_dir.verify(run_dir.config, run_dir.dataset, run_dir.last, run_dir.best)  # before any is parsed
        cfg = resolve(config_file=run_dir.config)
    elif cfg is None:
        raise ValueError("train() needs a config unless it resumes a run")

    # under torchrun (WORLD_SIZE > 1) every rank runs this; rank 0 alone writes the run directory
    dist = distributed.env_dist()
    distributed.check_distributable(get_model_class(cfg.model_name), dist.world_size)
    device = distributed.setup(
        dist, resolve_device(cfg.train.device, "train.device"), cfg.train.dist_backend, cfg.train.dist_timeout
    )
    try:
        if resume is None:
            run_dir = distributed.on_main(dist, lambda: _new_run_dir(cfg))
            cfg.run.name = run_dir.path.name
        return _train_in(run_dir, cfg, resume is not None, device, dist, on_validation, score_test)
    except Exception as err:
        distributed.record_failure(dist, err)
        raise
    finally:
        distributed.teardown(dist)


def check_run(cfg: RunConfig) -> None:
    """Build what a run of ``cfg`` needs (data, model on CPU, optimiser, evaluator and its selection
    metric) and write nothing: a search or a suite calls this before its first file, so a bad
    dataset, value or metric is one error instead of a folder of failed runs."""
    cfg = copy.deepcopy(cfg)
    resolve_device(cfg.train.device, "train.device")
    ds, cfg.dataset.split = prepare_data(cfg, get_model_class(cfg.model_name).family)
    ctx = DataContext.from_dataset(ds)
    model = build_model(cfg, ctx, torch.device("cpu"))
    Trainer(model, ctx, cfg, RunDir(Path(cfg.run.dir)), run_identity(cfg, ds), torch.device("cpu"))


def _new_run_dir(cfg: RunConfig) -> RunDir:
    """The run directory the config names; checked to be free, but not created (nothing is written
    before the data and the model are built)."""
    name = cfg.run.name or default_run_name(cfg)
    run_dir = RunDir(Path(cfg.run.dir) / name)
    if run_dir.path.exists() and any(run_dir.path.iterdir()):
        raise ModalRecError(f"run directory {run_dir.path} exists; pick another run.name or continue it with --resume")
    return run_dir


def _train_in(
    run_dir: RunDir,
    cfg: RunConfig,
    resume: bool,
    device: torch.device,
    dist: distributed.Dist,
    on_validation: ValidationCallback | None,
    score_test: bool,
) -> tuple[RunDir, dict[str, Any]]:
    """Build everything (data, model, optimiser, evaluator: each validates its input) and only then
    write the run directory; a run that fails after that is marked failed in it (status.json)."""
    # the lines logged while building (data notes, warnings) wait in memory for train.log
    early = _hold_log(package_log) if dist.is_main else None
    try:
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        family = get_model_class(cfg.model_name).family
        with distributed.local_main_first(dist):
            ds, split_cfg = prepare_data(cfg, family)
        cfg.dataset.split = split_cfg
        ctx = DataContext.from_dataset(ds)
        model = build_model(cfg, ctx, device)
        ident = run_identity(cfg, ds)
        trainer = Trainer(
            model, ctx, cfg, run_dir, ident, device, on_validation, dist, lambda: run_stages(model, cfg, ctx, run_dir.path)
        )
        handler = None
        if dist.is_main:
            if not resume:
                run_dir.create()
                run_dir.write_recorded_text(run_dir.config, cfg.to_yaml())
                dataset = {"stats": ds.stats(), "content_hash": ds.content_hash(), "meta": ds.meta}
                if model.provenance():  # e.g. the item encoder the model trains end to end
                    dataset["model_inputs"] = model.provenance()
                run_dir.write_recorded_text(run_dir.dataset, json.dumps(to_jsonable(dataset), indent=2) + "\n")
            run_dir.mark(RUNNING)
            handler = run_dir.attach_log(package_log)
            if early is not None:  # always on the main process
                early.setTarget(handler)
    finally:
        if early is not None:
            package_log.removeHandler(early)
            early.close()  # hands the held lines to train.log, or drops them when nothing was written
    try:
        if dist.is_main and not resume:
            log.info("run %s: %s on %s (%s) on %s", run_dir.path, cfg.model_name, ds.name, ds.stats(), device)
            if dist.enabled:
                log.info("distributed: %d processes (%s), global batch %d", dist.world_size, device.type, cfg.train.batch_size)
        if resume:
            trainer.resume()
        trainer.fit()
        results = trainer.test(score_test)
    except BaseException as err:
        if dist.is_main:
            run_dir.mark(INTERRUPTED if isinstance(err, KeyboardInterrupt) else FAILED, err)
        raise
    finally:
        if handler is not None:
            package_log.removeHandler(handler)
            handler.close()
    if dist.is_main:
        run_dir.mark(FINISHED)
    return run_dir, results


def _hold_log(logger: logging.Logger) -> MemoryHandler:
    """A handler that keeps ``logger``'s INFO-and-up records until it is given a target (and drops
    them if it never is)."""
    held = MemoryHandler(capacity=1_000_000, flushLevel=logging.CRITICAL + 1)
    held.setLevel(logging.INFO)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)
    logger.addHandler(held)
    return held


def run_stages(model: Recommender, cfg: RunConfig, ctx: DataContext, run_path: Path) -> None:
    """Train (or load) the stages the model declares and hand each one's selected model to it."""
    for stage in model.stages():
        source = stage.source
        if not source:
            stage_cfg = dataclasses.replace(
                cfg,
                model=dict(stage.model),
                train=dataclasses.replace(cfg.train, **stage.train),
                run=dataclasses.replace(cfg.run, dir=str(run_path), name=stage.name),
            )
            stage_cfg.dataset = dataclasses.replace(cfg.dataset)
            log.info(
                "%s: training stage '%s' (%s) into %s", cfg.model_name, stage.name, stage.model["name"], run_path / stage.name
            )
            train(stage_cfg)
            source = str(run_path / stage.name)
        loaded = open_run(source, device=str(model.device))
        model.load_stage(stage, loaded.model, loaded.ctx, ctx, source)


@dataclass
class LoadedRun:
    """A finished run re-opened: its config, data, context and the selected model (eval mode)."""

    run_dir: RunDir
    cfg: RunConfig
    dataset: Dataset
    ctx: DataContext
    model: Recommender

    @property
    def results(self) -> dict[str, Any]:
        return self.run_dir.read_json(self.run_dir.results) if self.run_dir.results.exists() else {}


def open_run(path: str | Path, device: str = "cpu") -> LoadedRun:
    """Re-open a run directory: rebuild its data (checked by content hash) and load the selected checkpoint."""
    run_dir = RunDir(Path(path))
    if not run_dir.config.exists():
        raise ModalRecError(f"{path} is not a run directory (no config.yaml)")
    if not run_dir.best.exists():
        raise ModalRecError(f"{path} has no selected checkpoint (checkpoints/best.pt); did training finish?")
    run_dir.verify(run_dir.config, run_dir.dataset, run_dir.best)  # before any of them is parsed
    status = run_dir.status()
    if status["status"] != FINISHED:
        error = f": {status['error']}" if status.get("error") else ""
        log.warning(
            "%s did not finish (status %s%s); using the best checkpoint it selected before that", path, status["status"], error
        )
    raw = load_yaml(run_dir.config)
    cfg = resolve(config_file=run_dir.config)
    seed_everything(cfg.train.seed)
    family = get_model_class(cfg.model_name).family
    with warnings.catch_warnings():  # notes on the data (e.g. cold interactions dropped) were given at training
        warnings.simplefilter("ignore", UserWarning)
        ds, _ = prepare_data(cfg, family)
    saved = run_dir.read_json(run_dir.dataset)
    if saved.get("content_hash") != ds.content_hash():
        raise CheckpointError(
            f"the data rebuilt from {run_dir.config} differs from the data the run was trained on "
            f"(content hash {ds.content_hash()[:12]} != {str(saved.get('content_hash'))[:12]}); "
            f"was dataset '{raw.get('dataset', {}).get('name')}' changed since?"
        )
    ctx = DataContext.from_dataset(ds)
    model = build_model(cfg, ctx, resolve_device(device))
    payload = run_dir.load_checkpoint(run_dir.best, run_identity(cfg, ds))
    if model.trainable:
        restore_model(model, payload, run_dir.best)
    else:
        model.fit(ctx)  # closed-form models are re-fitted (deterministic) instead of storing e.g. a dense item-item matrix
    model.eval()
    return LoadedRun(run_dir, cfg, ds, ctx, model)
