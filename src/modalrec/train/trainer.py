"""The training loop: minibatch epochs, validation, early stopping, checkpoints, resume.

The protocol is fixed here so no model can bend it: the VALIDATION split selects the checkpoint
and stops training; the TEST split is scored once, for the selected checkpoint, after training.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from modalrec.checks import check_fields
from modalrec.config import RunConfig
from modalrec.console import progress, progress_log
from modalrec.data.context import DataContext
from modalrec.data.dataset import TEST, VALID
from modalrec.data.views import make_train_batches
from modalrec.errors import ConfigError, ModalRecError, nearest
from modalrec.eval.ranking import Evaluator
from modalrec.eval.results import EvalResult
from modalrec.models.base import Recommender
from modalrec.train import distributed
from modalrec.train.checkpoint import TrainState, epoch_seed, restore_model, rng_state, seed_everything, set_rng_state
from modalrec.train.rundir import RunDir

log = logging.getLogger(__name__)

# Called after every validation with (epoch, validation summary), once the epoch's checkpoint is saved; it may
# raise to stop training (hyper-parameter search prunes bad trials this way; the run stays resumable).
ValidationCallback = Callable[[int, dict[str, Any]], None]


class TrainingError(ModalRecError):
    """Training cannot go on (e.g. the loss became NaN); the message says what to change."""


def build_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    groups = getattr(model, "parameter_groups", None)
    params = groups() if groups is not None else [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    choices = {
        "adam": lambda: torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay),
        "adamw": lambda: torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay),
        "sgd": lambda: torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay),
        "adagrad": lambda: torch.optim.Adagrad(params, lr=t.lr, weight_decay=t.weight_decay),
    }
    return choices[t.optimizer]()


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: RunConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    t = cfg.train
    choices = {
        "none": lambda: None,
        "step": lambda: torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.step_size, gamma=t.gamma),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, t.epochs)),
        "exponential": lambda: torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=t.gamma),
    }
    return choices[t.scheduler]()


def view_settings(model: Recommender, cfg: RunConfig) -> dict[str, Any]:
    """The options of the model's batch view, from the config."""
    if model.train_view == "triples":
        return {"negatives": cfg.train.negatives, "num_negatives": cfg.train.num_negatives}
    if model.train_view == "sequences":
        return {"max_len": model.max_len, "target": cfg.train.seq_target, "samples": cfg.train.epoch_samples}
    return {}


def micro_batches(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """``batch`` cut into ``parts`` strided micro-batches (gradient accumulation), empty ones dropped."""
    if parts == 1:
        return [batch]
    size = int(next(iter(batch.values())).shape[0])
    return [{k: v[i::parts].contiguous() for k, v in batch.items()} for i in range(min(parts, size))]


def _loss_terms(output: torch.Tensor | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(output, dict):
        if "loss" not in output:
            raise TypeError("a model's loss dict must hold the total under 'loss'")
        return output
    return {"loss": output}


class Trainer:
    """Fits one model on one split dataset, selecting on validation; see the module docstring."""

    def __init__(
        self,
        model: Recommender,
        ctx: DataContext,
        cfg: RunConfig,
        run_dir: RunDir,
        identity: dict[str, Any],
        device: torch.device,
        on_validation: ValidationCallback | None = None,
        dist: distributed.Dist = distributed.SINGLE,
        before_training: Callable[[], None] | None = None,
    ):
        self.model, self.ctx, self.cfg, self.run_dir, self.identity, self.device = model, ctx, cfg, run_dir, identity, device
        self.on_validation = on_validation
        self.before_training = before_training  # once before a fresh run's first epoch (the model's stages)
        self.dist = dist  # in a torchrun job, rank 0 alone validates, checkpoints and tests (see train/distributed.py)
        self._step: torch.nn.Module | None = None  # model.loss as a module, inside DDP when distributed
        check_fields(cfg)  # the declared ranges, choices and rules, also for a config built in Python
        self.evaluator = Evaluator(
            ctx,
            ks=tuple(cfg.eval.ks),
            metrics=tuple(cfg.eval.metrics),
            user_chunk=cfg.eval.user_chunk,
            item_chunk=cfg.eval.item_chunk,
            sampled=cfg.eval.sampled,
            n_negatives=cfg.eval.n_negatives,
            seed=cfg.train.seed,
        )
        self.select = cfg.train.select.lower()
        if self.select not in self.evaluator.summary_keys():
            guess = nearest(self.select, self.evaluator.summary_keys())
            raise ConfigError(
                f"train.select '{cfg.train.select}' is not among the validation metrics (eval.metrics x eval.ks)"
                f"{f'; did you mean {guess!r}?' if guess else ''}; valid: {', '.join(sorted(self.evaluator.summary_keys()))}"
            )
        self.optimizer = (model.configure_optimizer(cfg.train) or build_optimizer(model, cfg)) if model.trainable else None
        self.scheduler = build_scheduler(self.optimizer, cfg) if self.optimizer is not None else None
        self.state = TrainState()

    # ------------------------------------------------------------------ checkpoints
    def _payload(self, with_optimizer: bool, rngs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "identity": self.identity,
            "model_state": self.model.state_dict(),
            "train_state": self.state.to_dict(),
        }
        if with_optimizer:
            payload["optimizer"] = self.optimizer.state_dict() if self.optimizer else None
            payload["scheduler"] = self.scheduler.state_dict() if self.scheduler else None
            rngs = rngs or [rng_state()]
            payload["rng"] = rngs[0]
            if len(rngs) > 1:
                payload["rng_ranks"] = rngs  # every rank's, so a distributed run resumes exactly
        return payload

    def resume(self) -> None:
        """Continue from checkpoints/last.pt: model, optimiser, scheduler, RNG and early-stopping state."""
        payload = self.run_dir.load_checkpoint(self.run_dir.last, self.identity)
        restore_model(self.model, payload, self.run_dir.last)
        if self.optimizer is not None and payload.get("optimizer"):
            self.optimizer.load_state_dict(payload["optimizer"])
        if self.scheduler is not None and payload.get("scheduler"):
            self.scheduler.load_state_dict(payload["scheduler"])
        ranks = payload.get("rng_ranks", [payload["rng"]])
        if len(ranks) == self.dist.world_size:
            set_rng_state(ranks[self.dist.rank])
        else:
            log.warning("resuming a %d-process run on %d processes: the random streams restart", len(ranks), self.dist.world_size)
            set_rng_state(payload["rng"])
            if self.dist.rank > 0:
                seed_everything(distributed.rank_seed(self.cfg.train.seed, self.dist.rank))
        self.state = payload["train_state"]
        if self.dist.is_main:
            self.run_dir.write_metrics(self.state.history)
        log.info(
            "resumed after epoch %d (best %s=%.5f at epoch %d)",
            self.state.epoch,
            self.select,
            self.state.best_score,
            self.state.best_epoch,
        )

    # ------------------------------------------------------------------ training
    def fit(self) -> TrainState:
        """Train (or fit in closed form), validating and early-stopping on the validation split."""
        if not self.model.trainable:
            start, cpu_start = time.perf_counter(), time.process_time()
            self.model.fit(self.ctx)
            self.state.train_seconds = time.perf_counter() - start
            self.state.train_cpu_seconds = time.process_time() - cpu_start
            result = self._validate()
            self.state.epoch = 1
            self.state.best_epoch, self.state.best_score = 1, result.summary[self.select]
            progress_log.info(
                "fitted in closed form  valid %s %.5f  %.1fs", self.select, self.state.best_score, self.state.train_seconds
            )
            self.state.history.append(
                self._with_diagnostics({"epoch": 1, "seconds": self.state.train_seconds, "valid": result.summary})
            )
            self.run_dir.write_metrics(self.state.history)
            self.run_dir.save_checkpoint(self.run_dir.best, self._payload(with_optimizer=False))
            if self.on_validation is not None:
                self.on_validation(1, result.summary)
            return self.state

        t = self.cfg.train
        if self.state.epoch == 0:
            if self.before_training is not None:
                self.before_training()
            if self.dist.rank > 0:
                seed_everything(distributed.rank_seed(t.seed, self.dist.rank))  # independent dropout / noise per rank
        while self.state.epoch < t.epochs and not self.state.stopped_early:
            epoch = self.state.epoch
            distributed.inject_fault(self.dist, epoch)
            record = self.train_epoch(epoch)
            # rank 0 validates and saves; every rank continues from its state (so all stop together)
            self.state = distributed.on_main(self.dist, lambda: self._end_epoch(epoch, record))  # noqa: B023 (called at once)
            rngs = distributed.gather(self.dist, rng_state())
            distributed.on_main(self.dist, lambda: self._save_epoch(epoch, record, rngs))  # noqa: B023 (called at once)
        if self.state.stopped_early:
            log.info("early stop: no %s improvement in %d validations", self.select, t.patience)
        if self.state.best_epoch == 0:
            raise TrainingError(f"no checkpoint was selected: no validation {self.select} was a number above -inf (NaN scores?)")
        return self.state

    def _end_epoch(self, epoch: int, record: dict[str, Any]) -> TrainState:
        """Validate when due, update early stopping (saving best.pt on improvement), log; the new state."""
        t = self.cfg.train
        self._with_diagnostics(record)
        if (epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs:
            started = time.perf_counter()
            result = self._validate()
            record["valid"] = result.summary
            record["valid_seconds"] = time.perf_counter() - started  # beside "seconds" (the training steps)
            score = result.summary[self.select]
            if score > self.state.best_score:
                self.state.best_score, self.state.best_epoch, self.state.bad_evals = score, epoch + 1, 0
                self.run_dir.save_checkpoint(self.run_dir.best, self._payload(with_optimizer=False))
            else:
                self.state.bad_evals += 1
                self.state.stopped_early = self.state.bad_evals >= t.patience
            progress_log.info(
                "epoch %d/%d  loss %.4f  valid %s %.5f  (best %.5f @ %d)  %.1fs",
                epoch + 1,
                t.epochs,
                record["loss"],
                self.select,
                score,
                self.state.best_score,
                self.state.best_epoch,
                record["seconds"],
            )
        else:
            progress_log.info("epoch %d/%d  loss %.4f  %.1fs", epoch + 1, t.epochs, record["loss"], record["seconds"])
        self.state.epoch = epoch + 1
        self.state.history.append(record)
        return self.state

    def _save_epoch(self, epoch: int, record: dict[str, Any], rngs: list[dict[str, Any]]) -> None:
        self.run_dir.save_checkpoint(self.run_dir.last, self._payload(with_optimizer=True, rngs=rngs))
        self.run_dir.write_metrics(self.state.history)
        if "valid" in record and self.on_validation is not None:
            self.on_validation(epoch + 1, record["valid"])

    @property
    def step_module(self) -> torch.nn.Module:
        """``model.loss`` as a module (inside DDP when distributed); built on first use, after ``prepare``."""
        if self._step is None:
            self._step = distributed.wrap(self.model, self.dist, self.device, self.cfg.train.ddp_find_unused)
        return self._step

    def train_epoch(self, epoch: int) -> dict[str, Any]:
        """One epoch. Each optimiser step takes one batch of ``batch_size`` examples, shared by the ranks
        and cut into ``grad_accum`` micro-batches; a part of ``n`` of the step's ``N`` examples has its
        mean loss weighted by ``n * world_size / N``, so the (DDP-averaged) gradient is the gradient of
        the mean over the whole batch for losses that are means over examples."""
        model, t, dist, optimizer = self.model, self.cfg.train, self.dist, self.optimizer
        if optimizer is None:
            raise RuntimeError("train_epoch runs only for trainable models (they have an optimiser)")
        step_module = self.step_module
        model.train()
        model.before_epoch(epoch)
        batches = make_train_batches(
            model.train_view, self.ctx, t.batch_size, seed=epoch_seed(t.seed, epoch), **view_settings(model, self.cfg)
        ).shard(dist.rank, dist.world_size)
        sums: dict[str, float] = {}
        examples, steps = 0, 0
        start, cpu_start = time.perf_counter(), time.process_time()
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
            if t.amp and self.device.type in ("cuda", "cpu")
            else contextlib.nullcontext()
        )
        with progress(f"epoch {epoch + 1}/{t.epochs}", len(batches), unit="steps", enabled=t.progress and dist.is_main) as bar:
            for step, batch in enumerate(batches):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
                total = batches.global_batch_size(step)
                optimizer.zero_grad(set_to_none=True)
                parts = micro_batches(batch, t.grad_accum)
                for i, part in enumerate(parts):
                    size = int(next(iter(part.values())).shape[0])
                    # the last micro-batch all-reduces the accumulated gradients
                    with distributed.no_sync(step_module, sync=i == len(parts) - 1), distributed.explained_ddp_errors():
                        with autocast:
                            terms = _loss_terms(step_module(part))
                        loss = terms["loss"]
                        if not torch.isfinite(loss):
                            raise TrainingError(
                                f"the loss became {loss.item()} at epoch {epoch + 1}, step {steps + 1} "
                                f"(terms: {', '.join(f'{k}={v.item():.4g}' for k, v in terms.items())}). "
                                f"Lower train.lr (now {t.lr}) or set train.clip_grad_norm."
                            )
                        (loss * (size * dist.world_size / total)).backward()
                    examples += size
                    for key, value in terms.items():
                        sums[key] = sums.get(key, 0.0) + float(value.detach()) * size
                if t.clip_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_grad_norm)
                optimizer.step()
                steps += 1
                elapsed = time.perf_counter() - start
                bar.advance(1, f"loss {sums['loss'] / examples:.4f}  {examples * dist.world_size / max(elapsed, 1e-9):,.0f} ex/s")
        if self.scheduler is not None:
            self.scheduler.step()
        seconds = time.perf_counter() - start
        self.state.train_seconds += seconds
        self.state.train_cpu_seconds += time.process_time() - cpu_start
        keys = sorted(sums)
        all_examples, *totals = distributed.all_sum(dist, [float(examples), *(sums[k] for k in keys)])
        record = {k: v / max(1, all_examples) for k, v in zip(keys, totals)}
        record.update(epoch=epoch + 1, seconds=seconds, examples_per_s=all_examples / max(seconds, 1e-9), steps=steps)
        return record

    def _with_diagnostics(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with the model's diagnostics (``Recommender.diagnostics``, measured in eval mode without
        gradients) under ``"diagnostics"`` when it has any."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                values = self.model.diagnostics(self.ctx)
        finally:
            self.model.train(was_training)
        if values:
            record["diagnostics"] = {key: float(value) for key, value in values.items()}
        return record

    def _validate(self) -> EvalResult:
        return self.evaluator.evaluate(self.model, VALID)

    # ------------------------------------------------------------------ final scoring
    def test(self, score_test: bool = True) -> dict[str, Any]:
        """Load the checkpoint selected on validation and score it on VALID and TEST, once (on rank 0
        of a distributed run; every rank gets the results).

        ``score_test=False`` scores VALID only (hyper-parameter search: the test split is never read)."""
        return distributed.on_main(self.dist, lambda: self._score_selected(score_test))

    def _score_selected(self, score_test: bool) -> dict[str, Any]:
        payload = self.run_dir.load_checkpoint(self.run_dir.best, self.identity)
        if self.model.trainable:
            self.model.load_state_dict(payload["model_state"])
        results: dict[str, Any] = {
            "model": self.cfg.model_name,
            "dataset": self.cfg.dataset.name,
            "selected_by": f"valid {self.select}",
            "best_epoch": self.state.best_epoch,
            "epochs_run": self.state.epoch,
            "stopped_early": self.state.stopped_early,
            "train_seconds": self.state.train_seconds,
            "train_cpu_seconds": self.state.train_cpu_seconds,
            "epoch_cap": self.cfg.train.epochs if self.model.trainable else None,
        }
        for phase, label in ((VALID, "valid"), (TEST, "test")) if score_test else ((VALID, "valid"),):
            result = self.evaluator.evaluate(self.model, phase)
            results[label] = result.summary
            results[f"{label}_eval"] = result.to_dict()
            log.info(
                "%s of epoch %d: %s",
                label,
                self.state.best_epoch,
                "  ".join(f"{k} {v:.4f}" for k, v in result.summary.items() if isinstance(v, float)),
            )
            self.run_dir.save_per_user(label, result.users, result.per_user)
        results["n_parameters"] = int(sum(p.numel() for p in self.model.parameters()))
        if self.model.provenance():
            results["model_provenance"] = self.model.provenance()
        self.run_dir.write_json(self.run_dir.results, results)
        return results
