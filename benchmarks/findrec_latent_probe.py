"""Where a FindRec bottleneck's KL goes: item information, a shared offset, or shrunken variances.

Run: python benchmarks/findrec_latent_probe.py RUN_DIR [RUN_DIR ...]
For each run (its selected checkpoint, evaluation mode) and each modality, over every item that has the modality:
the posterior q(z | item) = N(mu, diag sigma^2) of IICM's bottleneck. Its KL to N(0, I), averaged over items,
splits exactly into three parts, 0.5 |mean mu|^2 (an offset every item shares) + 0.5 mean |mu - mean mu|^2 (what
tells items apart) + the variance part 0.5 sum(sigma^2 - 1 - log sigma^2). The probe prints the three, the
items' spread against the noise scale (rms |mu - mean mu| vs |sigma|), the mean distance of an item's mean to its
nearest other item, and the mean cosine between items' L2-normalised means (1.0: every item has the same latent,
whatever the KL says). Free bits (``model.free_bits``) give no gradient below their floor, so a KL under the
floor can be spent on the offset and the variances without any item information: this probe tells which.
"""

from __future__ import annotations

import argparse

import torch

from modalrec.models.sequential.findrec import FindRec
from modalrec.nn.unit import mean_pairwise_cosine
from modalrec.train.experiment import open_run


def probe(path: str) -> None:
    run = open_run(path)
    model, ctx = run.model, run.ctx
    if not isinstance(model, FindRec) or model.config.id_only:
        raise SystemExit(f"{path}: not a FindRec run with a bottleneck")
    model.eval()
    print(path)
    with torch.no_grad():
        for modality, bottleneck in zip(model.modalities, model.bottlenecks):
            items = ctx.feature_masks[modality].cpu().nonzero().squeeze(1).to(model.device)
            mu, logvar = bottleneck.posterior(model.project(modality, items))
            centre = mu.mean(0)
            offset = 0.5 * centre.pow(2).sum()
            spread = 0.5 * (mu - centre).pow(2).sum(-1).mean()
            variances = (-0.5 * (1 + logvar - logvar.exp())).sum(-1).mean()
            sample = mu[:: max(1, len(mu) // 1024)]  # evenly spaced, at most ~1,024 items for the pairwise parts
            distances = torch.cdist(sample, sample).fill_diagonal_(float("inf"))
            n, cosine = len(mu), mean_pairwise_cosine(mu)
            print(
                f"  {modality}: {n} items; KL per item {offset + spread + variances:.1f} nats = offset {offset:.1f}"
                f" + item spread {spread:.1f} + variances {variances:.1f}"
            )
            print(
                f"    |mean mu| {centre.norm():.3f}, rms |mu - mean mu| {(mu - centre).norm(dim=-1).mean():.3f},"
                f" rms |sigma| {logvar.exp().sum(-1).sqrt().mean():.3f}, nearest other item's mean"
                f" {distances.min(1).values.mean():.3f}, mean cosine between items' L2(mu) {cosine:.4f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="run directories of FindRec runs")
    for path in parser.parse_args().runs:
        probe(path)


if __name__ == "__main__":
    main()
