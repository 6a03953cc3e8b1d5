"""Piece by piece, in one process: the reference (MMRec) and ModalRec's BM3, MGCN and FREEDOM with the same
parameters on the same data: graphs, final representations and the loss on one batch.

    python benchmarks/zoo_parity_pieces.py <mmrec checkout>    # after `zoo_parity.py export <mmrec>/data sci`

The reference runs from the user's checkout (see benchmarks/zoo_parity.md; MGCN needs ``torch_scatter.scatter_add``).
Each line prints the largest absolute difference and, as "scale", the largest magnitude of the reference's tensor.
"""

import os
import sys

import torch

MMREC = sys.argv[1]
sys.path.insert(0, os.path.join(MMREC, "src"))
cwd = os.getcwd()
os.chdir(os.path.join(MMREC, "src"))
from utils.configurator import Config
from utils.dataloader import TrainDataLoader
from utils.dataset import RecDataset
from utils.utils import get_model, init_seed

os.chdir(cwd)

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.models.base import get_model_class
from modalrec.train.experiment import prepare_data

torch.set_num_threads(1)
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
ctx = DataContext.from_dataset(ds)


def mmrec_model(name, extra):
    os.chdir(os.path.join(MMREC, "src"))
    cfg = Config(name, "sci", {"use_gpu": False, "seed": 1, **extra})
    data = RecDataset(cfg)
    str(data)
    train, _, _ = data.split()
    str(train)
    loader = TrainDataLoader(cfg, train, batch_size=cfg["train_batch_size"], shuffle=True)
    init_seed(1)
    model = get_model(name)(cfg, loader)
    os.chdir(cwd)
    return model, loader


def same(a, b):
    a, b = torch.as_tensor(a).detach().float(), torch.as_tensor(b).detach().float()
    return f"max |diff| {float((a - b).abs().max()):.2e} (scale {float(a.abs().max()):.2e})"


def copy_linear(dst, src):
    dst.weight.data.copy_(src.weight.data)
    dst.bias.data.copy_(src.bias.data)


# ------------------------------------------------------------------ MGCN
ref, loader = mmrec_model("MGCN", {"cl_loss": 0.01, "reg_weight": 1e-4, "knn_k": 10})
cls = get_model_class("mgcn")
ours = cls(cls.Config(), ctx)
ours.user_embedding.weight.data.copy_(ref.user_embedding.weight.data)
ours.item_embedding.weight.data.copy_(ref.item_id_embedding.weight.data)
copy_linear(ours.projections[0], ref.text_trs)
copy_linear(ours.gates[0], ref.gate_t[0])
copy_linear(ours.attention[0], ref.query_common[0])
ours.attention[2].weight.data.copy_(ref.query_common[2].weight.data)
copy_linear(ours.preference_gates[0], ref.gate_text_prefer[0])
print(
    "MGCN item graph (dense):",
    same(ref.text_original_adj.to_dense(), ours.item_graph_0.to_dense()),
)
print("MGCN user-item graph:", same(ref.norm_adj.to_dense(), ours.adjacency.to_dense()))
with torch.no_grad():
    ru, ri = ref.forward(ref.norm_adj)
    ou, oi = ours.representations()
print("MGCN final users:", same(ru, ou), " items:", same(ri, oi))
g = torch.Generator().manual_seed(0)
users = torch.randint(0, ctx.n_users, (2048,), generator=g)
pos = torch.randint(0, ctx.n_items, (2048,), generator=g)
neg = torch.randint(0, ctx.n_items, (2048,), generator=g)
with torch.no_grad():
    rl = ref.calculate_loss(torch.stack([users, pos, neg]))
    ol = ours.loss({"users": users, "pos": pos, "neg": neg})["loss"]
print("MGCN loss on one batch of 2,048:", float(rl), float(ol), same(rl, ol))
# the reference's user-item graph counts a repeated train interaction twice; with its graph in ours:
ours.adjacency = ref.norm_adj.coalesce().to_sparse_csr()
ours.adjacency_t = ours.adjacency  # symmetric
with torch.no_grad():
    ou, oi = ours.representations()
    ol = ours.loss({"users": users, "pos": pos, "neg": neg})["loss"]
print(
    "MGCN with the reference's user-item graph: users",
    same(ru, ou),
    " items:",
    same(ri, oi),
    " loss",
    same(rl, ol),
)

# ------------------------------------------------------------------ BM3 (dropout 0 so the loss is deterministic)
ref, loader = mmrec_model("BM3", {"n_layers": 1, "reg_weight": 0.1, "dropout": 0.0, "cl_weight": 2.0})
cls = get_model_class("bm3")
for residual, reg_form in [(True, "frobenius"), (False, "batch_l2")]:
    ours = cls(cls.Config(dropout=0.0, residual=residual, reg_form=reg_form), ctx)
    ours.user_embedding.weight.data.copy_(ref.user_embedding.weight.data)
    ours.item_embedding.weight.data.copy_(ref.item_id_embedding.weight.data)
    copy_linear(ours.predictor, ref.predictor)
    copy_linear(ours.projections[0], ref.text_trs)
    with torch.no_grad():
        ru, ri = ref.forward()
        ou, oi = ours.encode_graph()
        rl = ref.calculate_loss(torch.stack([users, pos]))
        ol = ours.loss({"users": users, "pos": pos, "neg": neg})["loss"]
    print(
        f"BM3 residual={residual} reg_form={reg_form}: h_u {same(ru, ou)}, h_i {same(ri, oi)}; loss {float(rl):.6f} vs {float(ol):.6f}"
    )

# ------------------------------------------------------------------ FREEDOM (full graph, no pruning, for the check)
ref, loader = mmrec_model("FREEDOM", {"dropout": 0.8, "reg_weight": 1e-4, "knn_k": 10})
cls = get_model_class("freedom")
for knn_self in (True, False):
    ours = cls(cls.Config(knn_self=knn_self), ctx)
    ours.user_embedding.weight.data.copy_(ref.user_embedding.weight.data)
    ours.item_embedding.weight.data.copy_(ref.item_id_embedding.weight.data)
    copy_linear(ours.projections[0], ref.text_trs)
    ref.masked_adj = ref.norm_adj
    with torch.no_grad():
        ru, ri = ref.forward(ref.norm_adj)
        ou, oi = ours.representations()
        rl = ref.calculate_loss(torch.stack([users, pos, neg]))
        ol = ours.loss({"users": users, "pos": pos, "neg": neg})["loss"]
    print(
        f"FREEDOM knn_self={knn_self}: item graph {same(ref.mm_adj.to_dense(), ours.item_graph.to_dense())}; users {same(ru, ou)}, items {same(ri, oi)}; loss {float(rl):.6f} vs {float(ol):.6f}"
    )
