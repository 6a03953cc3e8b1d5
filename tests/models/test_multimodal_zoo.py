"""The multimodal model zoo on tiny synthetic data whose item features carry the clusters: shapes,
chunked scoring, loss decrease, features that matter (real beats shuffled), train-only graphs,
and user errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _baseline_data import chunked_scores, single_thread  # noqa: F401  (single_thread: fixture)
from _multimodal_data import build, fit, in_cluster_rate, multimodal_dataset

from modalrec.data.context import DataContext
from modalrec.data.dataset import TEST, TRAIN, VALID, Dataset
from modalrec.errors import ConfigError
from modalrec.models.base import GeneralRecommender, registered_models

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.filterwarnings("ignore:split 'random'")]

# model -> (epochs, lr, overrides) of the short fit used by the behaviour tests
ZOO = {
    "vbpr": (10, 0.01, {}),
    "lattice": (6, 0.01, {}),
    "freedom": (8, 0.01, {}),
    "mmgcn": (8, 0.01, {}),
    "bm3": (10, 0.01, {"cl_weight": 5.0}),
    "grcn": (6, 0.01, {}),
    "dualgnn": (8, 0.01, {}),
    "slmrec": (6, 0.01, {"ssl_weight": 1.0}),  # the ID-content contrast carries the content here
    "mgcn": (6, 0.01, {}),
    "lgmrec": (6, 0.01, {}),
    "micro": (6, 0.01, {}),
    "dmrl": (6, 0.01, {}),
}


@pytest.fixture(scope="module", autouse=True)
def knn_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the kNN graph cache of these tests out of the user's cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODALREC_HOME", str(tmp_path_factory.mktemp("modalrec-home")))
        yield


@pytest.fixture(scope="module")
def contexts() -> dict[str, DataContext]:
    return {
        "real": DataContext.from_dataset(multimodal_dataset()),
        "shuffled": DataContext.from_dataset(multimodal_dataset(shuffle_features=True)),
    }


@pytest.fixture(scope="module")
def trained(contexts: dict[str, DataContext]) -> dict[tuple[str, str], tuple[object, list[float]]]:
    """Every model fitted once on the real and once on the shuffled features (same seed)."""
    torch.set_num_threads(1)
    out = {}
    for name, (epochs, lr, overrides) in ZOO.items():
        for kind, ctx in contexts.items():
            torch.manual_seed(0)
            model = build(name, ctx, **overrides)
            out[name, kind] = (model, fit(model, ctx, epochs, lr))
    return out


def test_every_zoo_model_is_registered_as_general() -> None:
    models = registered_models()
    for name in ZOO:
        assert name in models
        assert issubclass(models[name], GeneralRecommender) and models[name].family == "general"
        doc = models[name].__module__
        assert "Survey family" in (__import__(doc, fromlist=["_"]).__doc__ or ""), name


@pytest.mark.parametrize("name", list(ZOO))
def test_scores_have_the_full_ranking_shape_and_chunking_does_not_change_them(name: str, trained) -> None:
    model, _ = trained[name, "real"]
    users = {"users": torch.tensor([0, 5, 17, 42])}
    model.prepare_scoring()
    scores = model.score(users)
    assert scores.shape == (4, model.n_items) and torch.isfinite(scores).all()
    torch.testing.assert_close(chunked_scores(model, users, 7), scores, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", list(ZOO))
def test_loss_decreases(name: str, trained) -> None:
    _, losses = trained[name, "real"]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.parametrize("name", list(ZOO))
def test_content_features_matter(name: str, trained, contexts) -> None:
    """The same model, seed and budget ranks the users' own cluster higher with the real features
    than with the item rows of the features shuffled."""
    real = in_cluster_rate(trained[name, "real"][0], contexts["real"])
    shuffled = in_cluster_rate(trained[name, "shuffled"][0], contexts["shuffled"])
    assert real > shuffled + 0.02, (real, shuffled)


@pytest.mark.parametrize("name", ["vbpr", "freedom", "grcn"])
def test_a_single_modality_can_be_chosen(name: str, contexts) -> None:
    model = build(name, contexts["real"], modalities=["image"])
    assert model.modalities == ["image"] and len(model.features) == 1
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 1]), "neg": torch.tensor([2, 3])}
    assert torch.isfinite(model.loss(batch)["loss"])


def test_models_refuse_data_without_features_and_unknown_modalities(contexts) -> None:
    plain = DataContext.from_dataset(multimodal_dataset(feature_dims={}))
    with pytest.raises(ConfigError, match="needs item features"):
        build("freedom", plain)
    with pytest.raises(ConfigError, match="audio"):
        build("lattice", contexts["real"], modalities=["audio"])
    with pytest.raises(ConfigError, match="modality_weights"):
        build("freedom", contexts["real"], modality_weights={"text": 1.5})
    with pytest.raises(ConfigError, match="ssl_task"):
        build("slmrec", contexts["real"], ssl_task="rotate")


def _dense_grcn(model) -> tuple[torch.Tensor, torch.Tensor]:
    """GRCN's forward pass (routing, pruning, max fusion, refined-graph convolution) on dense
    matrices, from the model's own parameters: the brute-force reference of its CSR path."""
    import torch.nn.functional as F

    nu, ni = model.n_users, model.n_items
    edges = torch.zeros(nu, ni, dtype=torch.bool)
    edges[model.graph.rows, model.graph.cols] = True

    def routed(p: torch.Tensor, c: torch.Tensor, p0: torch.Tensor) -> torch.Tensor:
        a = torch.softmax((p @ c.T).masked_fill(~edges, -torch.inf), 1).nan_to_num(0.0)
        return F.normalize(p0 + a @ c, dim=1)

    fits, parts = [], []
    for m, f in enumerate(model.features):
        c = F.normalize(F.leaky_relu(model.content[m](f)), dim=1)
        p0 = model.preferences[m].weight
        p = F.normalize(p0, dim=1)
        with torch.no_grad():
            for _ in range(model.config.routing - 1):
                p = routed(p, c, p0)
        a = torch.softmax((p @ c.T).masked_fill(~edges, -torch.inf), 1).nan_to_num(0.0).detach()
        p = F.normalize(p0 + a @ c, dim=1)
        fits.append((p @ c.T) * edges)
        parts.append(torch.cat([p, c]))
    w = torch.stack(fits).amax(0).clamp_min(0)
    square = torch.zeros(nu + ni, nu + ni)
    square[:nu, nu:], square[nu:, :nu] = w, w.T
    degree = square.sum(1)
    inv = torch.where(degree > 0, degree.clamp_min(1e-12).rsqrt(), torch.zeros_like(degree))  # pruned-away nodes: 0
    adj = inv[:, None] * square * inv[None, :]
    x = [torch.cat([model.user_embedding.weight, model.item_embedding.weight])]
    for _ in range(model.config.layers):
        x.append(adj @ x[-1])
    final = torch.cat([torch.stack(x).mean(0), *(nodes + adj @ nodes for nodes in parts)], 1)
    return final[:nu], final[nu:]


def _dense_grcn_attention(model) -> tuple[torch.Tensor, torch.Tensor]:
    """GRCN's ``refine=attention`` forward (the authors' code) on dense matrices: attention-weighted
    content parts, edge weights attention x source confidence, max over modalities, summed ID layers."""
    import torch.nn.functional as F

    nu, ni = model.n_users, model.n_items
    edges = torch.zeros(nu, ni, dtype=torch.bool)
    edges[model.graph.rows, model.graph.cols] = True
    to_user, to_item, parts_u, parts_i = [], [], [], []
    for m, f in enumerate(model.features):
        c = F.normalize(F.leaky_relu(model.content[m](f)), dim=1)
        p = F.normalize(model.preferences[m].weight, dim=1)  # routing=0
        fit = (p @ c.T).masked_fill(~edges, -torch.inf)
        a_user, a_item = torch.softmax(fit, 1).nan_to_num(0.0), torch.softmax(fit, 0).nan_to_num(0.0)
        parts_u.append(p + a_user @ c)
        parts_i.append(c + a_item.T @ p)
        beta = model.confidence[:, m]
        to_user.append(a_user * beta[nu:][None, :])
        to_item.append(a_item * beta[:nu][:, None])
    w_u, w_i = torch.stack(to_user).amax(0).clamp_min(0), torch.stack(to_item).amax(0).clamp_min(0)
    xs = [(F.normalize(model.user_embedding.weight, dim=1), F.normalize(model.item_embedding.weight, dim=1))]
    for _ in range(model.config.layers):
        xs.append((w_u @ xs[-1][1], w_i.T @ xs[-1][0]))
    users = torch.cat([torch.stack([u for u, _ in xs]).sum(0), *parts_u], 1)
    items = torch.cat([torch.stack([i for _, i in xs]).sum(0), *parts_i], 1)
    return users, items


@pytest.mark.parametrize("layers", [0, 2])
def test_grcn_attention_refinement_equals_a_dense_brute_force(layers: int, contexts) -> None:
    torch.manual_seed(3)
    model = build("grcn", contexts["real"], routing=0, layers=layers)
    probe_u, probe_i = torch.randn(model.n_users, 192), torch.randn(model.n_items, 192)
    results = []
    for forward in (model.representations, lambda: _dense_grcn_attention(model)):
        model.zero_grad()
        users, items = forward()
        ((users * probe_u).sum() + (items * probe_i).sum()).backward()
        results.append(
            (users.detach(), items.detach(), {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        )
    (u_csr, i_csr, g_csr), (u_dense, i_dense, g_dense) = results
    assert g_csr.keys() == g_dense.keys() and ("confidence" in g_dense) == (layers > 0)
    torch.testing.assert_close(u_csr, u_dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(i_csr, i_dense, rtol=1e-5, atol=1e-5)
    for key in g_dense:
        torch.testing.assert_close(g_csr[key], g_dense[key], rtol=1e-4, atol=1e-5, msg=f"gradient of {key}")


@pytest.mark.parametrize("routing, layers", [(3, 2), (1, 0), (2, 3)])
def test_grcn_sparse_path_equals_a_dense_brute_force(routing: int, layers: int, contexts) -> None:
    torch.manual_seed(3)
    model = build(
        "grcn", contexts["real"], routing=routing, layers=layers, refine="affinity", readout="mean", normalize_ids=False
    )
    assert model.graph.n_edges == contexts["real"].train.nnz
    probe_u, probe_i = torch.randn(model.n_users, 192), torch.randn(model.n_items, 192)
    results = []
    for forward in (model.representations, lambda: _dense_grcn(model)):
        model.zero_grad()
        users, items = forward()
        ((users * probe_u).sum() + (items * probe_i).sum()).backward()
        results.append((users.detach(), items.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}))
    (u_csr, i_csr, g_csr), (u_dense, i_dense, g_dense) = results
    torch.testing.assert_close(u_csr, u_dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(i_csr, i_dense, rtol=1e-5, atol=1e-5)
    for key in g_dense:
        torch.testing.assert_close(g_csr[key], g_dense[key], rtol=1e-4, atol=1e-5, msg=f"gradient of {key}")


# ------------------------------------------------------------------ no test data reaches training
def _with_other_heldout(ds: Dataset, seed: int) -> Dataset:
    """Same train interactions and features; the valid/test items replaced by random other items."""
    rng = np.random.default_rng(seed)
    item = ds.item.copy()
    held = ds.split != TRAIN
    item[held] = rng.integers(ds.n_items, size=int(held.sum()))
    out = Dataset.from_raw(
        ds.name,
        ds.user,
        item,
        timestamp=ds.timestamp,
        split=ds.split,
        item_universe=np.arange(ds.n_items),
        user_universe=np.arange(ds.n_users),
    )
    for name, feature in ds.features.items():
        out = out.with_feature(name, feature)
    return out


@pytest.mark.parametrize("name", list(ZOO))
def test_graphs_and_masks_come_from_the_train_split_only(name: str) -> None:
    ds = multimodal_dataset()
    other = _with_other_heldout(ds, seed=5)
    assert (other.item[other.split != TRAIN] != ds.item[ds.split != TRAIN]).any()
    ctx_a, ctx_b = DataContext.from_dataset(ds), DataContext.from_dataset(other)
    assert ctx_a.histories[VALID].nnz == ctx_b.histories[VALID].nnz and ctx_a.histories[TEST].nnz == ctx_b.histories[TEST].nnz
    torch.manual_seed(0)
    a = build(name, ctx_a)
    torch.manual_seed(0)
    b = build(name, ctx_b)
    buffers_a, buffers_b = dict(a.named_buffers()), dict(b.named_buffers())
    assert buffers_a.keys() == buffers_b.keys()
    for key in buffers_a:
        x, y = buffers_a[key], buffers_b[key]
        if x.layout != torch.strided:
            x, y = x.to_dense(), y.to_dense()
        torch.testing.assert_close(x, y, msg=f"{name}: buffer {key} depends on valid/test data")
    a.eval(), b.eval()
    a.prepare_scoring(), b.prepare_scoring()
    users = {"users": torch.arange(ctx_a.n_users)}
    torch.testing.assert_close(a.score(users), b.score(users))


@pytest.mark.parametrize("name", ["freedom", "dmrl"])
def test_trains_end_to_end_under_the_protocol_and_reopens(name: str, tmp_path) -> None:
    """``modalrec train`` path: random 8:1:1 split, selection on validation Recall@20, a run that
    re-opens to the same validation scores (graphs are rebuilt, not read from the checkpoint)."""
    from modalrec.config import resolve
    from modalrec.data.storage import save_dataset
    from modalrec.data.synthetic import make_synthetic
    from modalrec.eval.ranking import Evaluator
    from modalrec.train.experiment import open_run, train

    save_dataset(make_synthetic(n_users=100, n_items=60, feature_dims={"text": 8, "image": 12}), tmp_path / "data")
    cfg = resolve(
        [
            f"model={name}",
            f"dataset={tmp_path / 'data'}",
            "dataset.split.method=random",
            "train.epochs=2",
            "train.select=recall@20",
            "eval.ks=[10,20,50]",
            "eval.metrics=[recall,ndcg,precision,map]",
            "train.progress=false",
            "train.batch_size=256",
            f"run.dir={tmp_path}",
            "run.name=zoo",
        ]
    )
    _, results = train(cfg)
    assert results["selected_by"] == "valid recall@20"
    assert {"recall@50", "ndcg@20", "precision@10", "map@50"} <= set(results["test"])
    loaded = open_run(tmp_path / "zoo")
    assert type(loaded.model).name == name
    again = Evaluator(loaded.ctx, ks=(20,), metrics=("recall",)).evaluate(loaded.model, VALID).summary["recall@20"]
    assert again == pytest.approx(results["valid"]["recall@20"], abs=1e-6)
