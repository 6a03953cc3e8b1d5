"""VBPR with an end-to-end item tower: a training step that encodes the whole catalogue (before) against one that
encodes only the distinct items of its triples (after, ``VBPR.loss``), side by side in one process.

Run: python benchmarks/e2e_vbpr_batch.py [--cases text0 text1 image1] [--steps 8] [--threads 1]
A case is ``<encoder><finetune_layers>``: text = MiniLM over ml-100k-plot (10% cold-item split, as
docs/results/e2e-ml100k-plot), image = EfficientNet-Lite0 over the ml-1m-mm posters. Two models with the same seed
train on the same batches, their steps interleaved (before, after, before, ...) so load on the machine hits both
alike. A case with N = 0 runs a whole epoch; otherwise the first ``--steps`` steps are timed and the epoch is
projected (steps per epoch x mean step), marked "projected". Both forms give the same loss (tests/nn). The
tower's output at initialisation is compared with the dataset's extracted feature (equal for images; MiniLM's
differs as the tower reads 32 tokens and the feature the whole text).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import platform
import time

import torch

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.views import make_train_batches
from modalrec.models.base import Batch
from modalrec.models.multimodal.vbpr import VBPR
from modalrec.train.checkpoint import seed_everything
from modalrec.train.experiment import build_model, prepare_data
from modalrec.train.trainer import view_settings

DATASETS = {"text": ["dataset=ml-100k-plot", "dataset.split.cold_items=0.1"], "image": ["dataset=ml-1m-mm"]}


def whole_catalogue_loss(model: VBPR, batch: Batch) -> torch.Tensor:
    """The loss as VBPR computed it before: every user's and item's representation, then the batch's rows."""
    users, items = model.representations()
    prior = model.config.reg * model.l2_terms(batch, model.gamma_user, model.theta_user, model.gamma_item, model.beta_item)
    return model.bpr_terms(users, items, batch) + prior


def run_case(case: str, steps_cap: int) -> None:
    encoder, layers = case.rstrip("0123456789"), int(case[len(case.rstrip("0123456789")) :])
    overrides = ["model=vbpr", *DATASETS[encoder], f"model.item_encoder={encoder}", f"model.finetune_layers={layers}"]
    cfg = resolve([*overrides, "train.progress=false"])
    ds, _ = prepare_data(cfg, "general")
    ctx = DataContext.from_dataset(ds)
    models, optimisers = {}, {}
    for form in ("before", "after"):
        seed_everything(cfg.train.seed)
        start = time.perf_counter()
        model = build_model(cfg, ctx, torch.device("cpu"))
        assert isinstance(model, VBPR) and model.item_tower is not None
        tower = model.item_tower
        print(
            f"{case} {form}: model built in {time.perf_counter() - start:.1f} s (lower layers: cache "
            f"{'hit' if tower.cache_hit else 'miss'}, {tower.lower_seconds:.1f} s when computed; lower {tuple(tower.lower.shape)})",
            flush=True,
        )
        if form == "after" and encoder in ctx.features:  # at initialisation the tower gives the frozen encoder's output
            with torch.no_grad():
                gap = (tower.eval().pooled() - ctx.features[encoder] * ctx.feature_masks[encoder].unsqueeze(-1)).abs().max()
            print(f"{case}: max |tower output - the dataset's extracted {encoder} feature| = {gap:.2e}", flush=True)
        models[form] = model.train()
        optimisers[form] = torch.optim.Adam(model.parameter_groups(), lr=cfg.train.lr)
    batches = make_train_batches("triples", ctx, cfg.train.batch_size, seed=0, **view_settings(models["after"], cfg))
    distinct = [len(torch.unique(torch.cat([b["pos"], b["neg"]]))) for b in batches]
    timed = len(batches) if layers == 0 else min(steps_cap, len(batches))
    seconds = {"before": 0.0, "after": 0.0}
    for batch in itertools.islice(batches, timed):
        for form, loss_of in (("before", whole_catalogue_loss), ("after", lambda m, b: m.loss(b)["loss"])):
            model, optimiser = models[form], optimisers[form]
            start = time.perf_counter()
            loss = loss_of(model, batch)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            seconds[form] += time.perf_counter() - start
    n = len(batches)
    kind = "measured" if timed == n else f"projected from {timed} steps"
    print(
        f"{case}: {ctx.n_items:,} items, batch {cfg.train.batch_size}, {n} steps/epoch, distinct items per batch "
        f"{sum(distinct) / n:,.0f} (min {min(distinct):,}, max {max(distinct):,})"
    )
    per = {form: s / timed for form, s in seconds.items()}
    print(
        f"{case}: s/step before {per['before']:.3f}, after {per['after']:.3f}; epoch ({kind}) before "
        f"{per['before'] * n:,.1f} s, after {per['after'] * n:,.1f} s; after/before {per['after'] / per['before']:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=["text0", "text1", "image1"])
    parser.add_argument("--steps", type=int, default=8, help="steps timed per form when finetune_layers > 0")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("modalrec").setLevel(logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {platform.machine()}, machine shared with other jobs")
    for case in args.cases:
        run_case(case, args.steps)


if __name__ == "__main__":
    main()
