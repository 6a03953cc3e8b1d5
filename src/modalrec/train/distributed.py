"""Distributed data-parallel training: PyTorch DDP over processes started by torchrun.

How a run is shared by N processes (ranks):

- every rank loads the same data (local rank 0 of each node first, so downloads and feature caches
  are filled once) and builds the same model; DDP broadcasts rank 0's parameters and persistent
  buffers when it wraps the model and averages the gradients in ``backward``;
- an optimiser step still consumes one *global* batch of ``train.batch_size`` examples: every rank
  draws the same epoch order (same seed) and takes examples ``rank, rank + N, ...`` of each batch
  (:meth:`modalrec.data.views.TrainBatches.shard`), so the update does not depend on N and the
  hyper-parameters tuned on one process carry over;
- rank 0 alone validates, selects, checkpoints, writes the run directory, logs and tests; the other
  ranks receive its training state after every epoch, so all ranks stop at the same epoch;
- NCCL on CUDA (one GPU per process: ``cuda:LOCAL_RANK``), gloo on CPU.

``modalrec train ... --nproc N`` starts N local processes through torchrun's own launcher
(:func:`launch_train`); ``torchrun --nproc-per-node N -m modalrec train ...`` does the same, and
torchrun's rendezvous flags span several nodes (docs/distributed.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as tdist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from modalrec.errors import ConfigError, ModalRecError
from modalrec.models.base import Recommender

log = logging.getLogger(__name__)

T = TypeVar("T")

_joined_group = False  # this process joined a torch.distributed process group (see end_worker_process)

# Fault injection for the failure-path tests: "R@E" makes rank R raise when epoch E (1-based) starts.
FAULT_ENV = "MODALREC_DDP_FAULT"


class DistributedError(ModalRecError):
    """A distributed run cannot go on: a rank failed, or the request cannot be distributed."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (one process when not launched by torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def env_dist() -> Dist:
    """The layout torchrun put in the environment (RANK, LOCAL_RANK, WORLD_SIZE)."""
    values = {}
    for key, name in (("rank", "RANK"), ("local_rank", "LOCAL_RANK"), ("world_size", "WORLD_SIZE")):
        raw = os.environ.get(name, "1" if name == "WORLD_SIZE" else "0")
        try:
            values[key] = int(raw)
        except ValueError:
            raise DistributedError(f"environment variable {name}={raw!r} is not an integer") from None
    return Dist(**values)


def is_main_process() -> bool:
    return env_dist().is_main


def check_distributable(model_cls: type[Recommender], world_size: int) -> None:
    """Closed-form models (train_view 'none') have no minibatch loop to share between processes."""
    if world_size > 1 and model_cls.train_view == "none":
        raise DistributedError(
            f"model '{model_cls.name}' is fitted in closed form (no minibatch training), so it does not run on "
            f"{world_size} processes; train it with one process (drop --nproc / torchrun)"
        )


# ---------------------------------------------------------------------------------- process group
def setup(dist: Dist, device: torch.device, backend: str = "auto", timeout_s: int = 1800) -> torch.device:
    """Join the process group (when distributed) and return this rank's device.

    CUDA ranks get ``cuda:LOCAL_RANK`` and NCCL; CPU ranks gloo. Ranks other than 0 log warnings only.
    """
    if not dist.enabled:
        return device
    if device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    chosen = backend if backend != "auto" else ("nccl" if device.type == "cuda" else "gloo")
    if chosen == "nccl" and device.type != "cuda":
        raise ConfigError("train.dist_backend=nccl needs CUDA devices; use gloo (or auto) for CPU training")
    global _joined_group
    _joined_group = True
    if not tdist.is_initialized():
        tdist.init_process_group(
            chosen,
            rank=dist.rank,
            world_size=dist.world_size,
            timeout=timedelta(seconds=timeout_s),
            device_id=device if chosen == "nccl" else None,
        )
    if not dist.is_main:
        log.setLevel(logging.WARNING)
    return device


def teardown(dist: Dist) -> None:
    if dist.enabled and tdist.is_initialized():
        tdist.destroy_process_group()


def joined_group() -> bool:
    """Whether this process joined a process group (then it ends through :func:`end_worker_process`)."""
    return _joined_group


def end_worker_process(code: int | str | None) -> None:
    """End a process that joined a process group with ``os._exit(code)`` once its output is flushed, so
    the interpreter is never finalised while gloo's worker threads live (a no-op in other processes).

    Why: once a DDP model has been built, the gloo process group outlives ``destroy_process_group`` (a
    reference stays in torch's C++ side), so its worker threads outlive the run. A worker thread drops
    its last reference to a finished collective just after the caller's ``wait()`` returned; when that
    collective's tensors belong to Python objects (``broadcast_object_list``, ``all_reduce`` of a tensor
    made in Python) the thread must take the GIL to release them. If the main thread has reached
    interpreter finalisation by then, taking the GIL ends the thread inside a noexcept destructor:
    ``terminate called without an active exception``, SIGABRT, torchrun SIGTERMs the other rank and
    the job fails after its work is done (3 of 16 runs on a loaded 2-core machine). Skipping
    finalisation in these processes removes the race; nothing there needs it (files are closed, logs
    and the console flushed here). ``cli.main`` calls this for every ``sys.exit``: success and user
    errors; a crashed rank exits as usual (see there)."""
    if not _joined_group:
        return
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message") prints the message and exits with 1
        print(code, file=sys.stderr)
        status = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def broadcast(dist: Dist, obj: T) -> T:
    """Rank 0's ``obj`` on every rank."""
    if not dist.enabled:
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def gather(dist: Dist, obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not dist.enabled:
        return [obj]
    out: list[Any] = [None] * dist.world_size
    tdist.all_gather_object(out, obj)
    return out


def all_sum(dist: Dist, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64)."""
    if not dist.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if tdist.get_backend() == "nccl":
        tensor = tensor.cuda()
    tdist.all_reduce(tensor)
    return tensor.cpu().tolist()


def on_main(dist: Dist, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank.

    The other ranks wait for it; if ``fn`` raises, rank 0 re-raises and the others raise a
    :class:`DistributedError` quoting it, so no rank waits for a result that never comes.
    """
    if not dist.enabled:
        return fn()
    result: Any = None
    error: BaseException | None = None
    if dist.is_main:
        try:
            result = fn()
        except Exception as err:  # re-raised below, after the others were told
            error = err
    result, message = broadcast(dist, (result, None if error is None else f"{type(error).__name__}: {error}"))
    if error is not None:
        raise error
    if message is not None:
        raise DistributedError(f"rank 0 failed: {message}")
    return result


@contextlib.contextmanager
def local_main_first(dist: Dist) -> Iterator[None]:
    """Local rank 0 of every node runs the block first (filling download and feature caches), then the rest."""
    if dist.enabled and dist.local_rank != 0:
        tdist.barrier()
    yield
    if dist.enabled and dist.local_rank == 0:
        tdist.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """The RNG seed of a rank > 0 during training, so ranks draw independent dropout masks and noise."""
    return int(np.random.SeedSequence([seed, 0x5EED, rank]).generate_state(1)[0])


# ------------------------------------------------------------------------------------- the model
class LossStep(nn.Module):
    """``model.loss`` as ``forward``: DDP's gradient hooks are armed around ``forward``, so the training
    step has to be one."""

    def __init__(self, model: Recommender):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> Any:
        return self.model.loss(batch)


def wrap(model: Recommender, dist: Dist, device: torch.device, find_unused: bool = False) -> nn.Module:
    """The module the trainer calls on a batch: ``LossStep(model)``, inside DDP when distributed.

    Non-persistent buffers (graphs, feature matrices: data every rank rebuilds from its own copy of
    the dataset) are left out of DDP's broadcasts; parameters and persistent buffers come from rank 0.
    """
    step = LossStep(model)
    if not dist.enabled:
        return step
    data_buffers = [
        f"{prefix}.{name}" if prefix else name
        for prefix, module in step.named_modules()
        for name in getattr(module, "_non_persistent_buffers_set", ())
    ]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(step, data_buffers)
    return DistributedDataParallel(
        step,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused,
    )


def no_sync(step: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Skip DDP's gradient all-reduce for an accumulation micro-batch (``sync=False``)."""
    if sync or not isinstance(step, DistributedDataParallel):
        return contextlib.nullcontext()
    return step.no_sync()


@contextlib.contextmanager
def explained_ddp_errors() -> Iterator[None]:
    """Turn DDP's 'parameters that did not receive gradients' error into the config key that fixes it."""
    try:
        yield
    except RuntimeError as err:
        if "find_unused_parameters" in str(err):
            raise ConfigError(
                "this model's loss leaves some parameters without gradients, which DDP must be told about: "
                "set train.ddp_find_unused=true"
            ) from err
        raise


def inject_fault(dist: Dist, epoch: int) -> None:
    """Raise on the rank and epoch named by ``MODALREC_DDP_FAULT=R@E`` (tests of the failure path only)."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    rank, _, at = spec.partition("@")
    if int(rank) == dist.rank and int(at) == epoch + 1:
        raise RuntimeError(f"injected fault on rank {dist.rank} at epoch {epoch + 1} ({FAULT_ENV}={spec})")


def record_failure(dist: Dist, err: BaseException) -> None:
    """Log the error with this rank's number and write torchrun's error file, so the launcher (and
    torchrun's summary) name the rank that failed and why."""
    if not dist.enabled:
        return
    log.error("rank %d failed: %s: %s", dist.rank, type(err).__name__, err)
    from torch.distributed.elastic.multiprocessing.errors import ErrorHandler

    ErrorHandler().record_exception(err)


# ------------------------------------------------------------------------------------- launching
def launch_train(nproc: int, overrides: list[str], config: Path | None, resume: Path | None, quiet: bool) -> None:
    """``modalrec train ... --nproc N``: run ``modalrec train`` on N local processes through torchrun's
    launcher (``--standalone``: a free port on this machine). A failed rank stops the job; the error
    names it and says how to resume."""
    from modalrec.config import resolve
    from modalrec.models.base import get_model_class
    from modalrec.train.rundir import RunDir, default_run_name

    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    if env_dist().enabled:
        raise DistributedError("--nproc starts its own processes; inside torchrun, leave it out")
    worker_args = list(overrides)
    if resume is not None:
        run_dir = RunDir(Path(resume))
        if not run_dir.config.exists():
            raise ModalRecError(f"{resume} is not a run directory (no config.yaml)")
        cfg = resolve(config_file=run_dir.config)
        worker_args += ["--resume", str(resume)]
    else:
        cfg = resolve(overrides, config)
        # fix the run's name here, so every rank (and the resume hint below) agrees on it
        name = cfg.run.name or default_run_name(cfg)
        run_dir = RunDir(Path(cfg.run.dir) / name)
        worker_args += [f"run.name={name}"] + (["--config", str(config)] if config else [])
    check_distributable(get_model_class(cfg.model_name), nproc)
    if quiet:
        worker_args.append("--quiet")

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--module", "modalrec", "train", *worker_args])
    try:
        run(args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        resumable = (run_dir.path / "checkpoints" / "last.pt").exists()
        hint = (
            f"; continue it with: modalrec train --resume {run_dir.path} --nproc {nproc}"
            if resumable
            else "; no epoch had finished, so there is nothing to resume"
        )
        raise DistributedError(f"rank {rank} of {nproc} failed (exit code {failure.exitcode}): {failure.message}{hint}") from None
