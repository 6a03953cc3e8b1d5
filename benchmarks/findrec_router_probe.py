"""Why a FindRec expert dies: the router of a trained run read on every valid position of its validation users.

Run: python benchmarks/findrec_router_probe.py RUN_DIR [RUN_DIR ...]
For each run (its selected checkpoint, evaluation mode): per expert the mean gate, the top-1 load, the router
logit's mean and spread, the mean gap to the row's largest logit, the final router layer's weight-row norm, the
share of the expert's ReLU units that are active and its weight norm, the mean cosine between expert outputs, and
each attention head's top-1 loads (does a head route by input, or send every position to one expert?).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from modalrec.data.dataset import VALID
from modalrec.models.sequential.findrec import FindRec
from modalrec.train.experiment import open_run


def probe(path: str) -> None:
    run = open_run(path)
    model, ctx = run.model, run.ctx
    if not isinstance(model, FindRec) or model.config.id_only:
        raise SystemExit(f"{path}: not a FindRec run with a router")
    users = np.flatnonzero(np.diff(ctx.histories[VALID].indptr) > 0)
    seq, lengths = ctx.padded_history(users, VALID, model.max_len)
    trace: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        model.forward_states(seq, lengths, trace=trace)  # every position
        valid = torch.arange(seq.shape[1]) < lengths[:, None]
        rows = valid[:, None, :].expand(-1, trace["hf"].shape[1], -1)  # [B, H, L]
        hf, gates = trace["hf"][rows], trace["gates"][rows]
        logits = model.router.logits(hf)
        experts = model.experts.experts
        pre = F.linear(hf, torch.cat([e.weight for e in experts]), torch.cat([e.bias for e in experts]))
        hidden = F.relu(pre).unflatten(-1, (len(experts), -1))
        outputs = F.normalize(hidden, dim=-1)
        cosine = torch.einsum("nkd,njd->kj", outputs, outputs) / len(outputs)
    n_experts = gates.shape[-1]
    load = torch.bincount(gates.argmax(-1), minlength=n_experts) / len(gates)
    gap = logits - logits.max(-1, keepdim=True).values
    print(f"== {path}: {len(hf):,} (user, head, position) rows, router temperature {model.router.temperature}")
    print("  expert  mean gate  top-1 load  logit mean  logit std  mean gap  router row norm  active units  weight norm")
    for k in range(n_experts):
        print(
            f"  {k:6d} {gates[:, k].mean():10.4f} {load[k]:11.4f} {logits[:, k].mean():11.3f} {logits[:, k].std():10.3f}"
            f" {gap[:, k].mean():9.3f} {model.router.net[-1].weight[k].norm():16.3f}"
            f" {(hidden[:, k] > 0).float().mean():13.3f} {experts[k].weight.norm():12.3f}"
        )
    entropy = -(gates.clamp(min=1e-12) * gates.clamp(min=1e-12).log()).sum(-1).mean()
    print(f"  router entropy {entropy:.3f} nats (uniform {np.log(n_experts):.3f}); mean cosine between expert outputs:")
    for k in range(n_experts):
        print("   " + " ".join(f"{v:6.3f}" for v in cosine[k].tolist()))
    print("  top-1 load per head (rows: heads; a head whose row is one 1.000 sends every position to one expert):")
    for h in range(trace["gates"].shape[1]):
        head_load = torch.bincount(trace["gates"][:, h][valid].argmax(-1), minlength=n_experts) / int(valid.sum())
        print(f"  {h:6d} " + " ".join(f"{v:6.3f}" for v in head_load.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for path in args.runs:
        probe(path)


if __name__ == "__main__":
    main()
