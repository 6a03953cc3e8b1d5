"""The authors'-code behaviours of BM3 and MGCN (and FREEDOM's kNN convention), pinned on tiny inputs whose
expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalrec.config import resolve
from modalrec.data.context import DataContext
from modalrec.data.dataset import Dataset, ItemFeature
from modalrec.errors import ConfigError
from modalrec.models.base import get_model_class
from modalrec.train.trainer import build_scheduler

# four items on the unit circle: cos(0,1) = 0.6, cos(0,2) = 0, cos(0,3) = -1, cos(1,2) = 0.8, cos(1,3) = -0.6, cos(2,3) = 0
CIRCLE = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)


@pytest.fixture(autouse=True)
def knn_cache(tmp_path, monkeypatch) -> None:
    """Keep the kNN graph cache of these tests out of the user's cache."""
    monkeypatch.setenv("MODALREC_HOME", str(tmp_path / "home"))


def tiny_context(users: list[str], items: list[str], features: dict[str, np.ndarray]) -> DataContext:
    """Interactions (users[k], items[k]), all train, with the given item feature matrices (rows in item order)."""
    ds = Dataset.from_raw(
        "tiny",
        np.array(users),
        np.array(items),
        split=np.zeros(len(users), dtype=np.int8),
    )
    for name, values in features.items():
        ds = ds.with_feature(name, ItemFeature(values, np.ones(len(values), dtype=bool)))
    return DataContext.from_dataset(ds)


def build(name: str, ctx: DataContext, **overrides):
    cls = get_model_class(name)
    return cls(cls.Config(**overrides), ctx)


def set_embeddings(model, users: list[list[float]], items: list[list[float]]) -> None:
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor(users))
        model.item_embedding.weight.copy_(torch.tensor(items))


# ---------------------------------------------------------------------------------------------- BM3
def bm3_context() -> DataContext:
    # 2 users, 3 items: u0-i0, u0-i1, u1-i2
    return tiny_context(["0", "0", "1"], ["0", "1", "2"], {"text": CIRCLE[:3]})


def test_bm3_regulariser_is_the_authors_frobenius_norms_over_all_rows() -> None:
    model = build("bm3", bm3_context(), dim=2, layers=0, reg=0.5, dropout=0.0)
    # layers 0: h_u = e_u, h_i = e_i + e_i (the residual) -> H_i = [[2,0],[0,2],[0,0]]
    set_embeddings(model, [[3.0, 0.0], [0.0, 4.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    batch = {
        "users": torch.tensor([0]),
        "pos": torch.tensor([1]),
        "neg": torch.tensor([2]),
    }
    # reg * (||H_u||_F + ||H_i||_F) / n_items = 0.5 * (5 + sqrt(8)) / 3, whatever the batch
    assert model.loss(batch)["reg"].item() == pytest.approx(0.5 * (5 + math.sqrt(8)) / 3, rel=1e-6)


def test_bm3_batch_l2_regulariser_is_the_squared_norm_of_the_batch_rows() -> None:
    model = build("bm3", bm3_context(), dim=2, layers=0, reg=0.5, dropout=0.0, reg_form="batch_l2")
    set_embeddings(model, [[3.0, 0.0], [0.0, 4.0]], [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    batch = {
        "users": torch.tensor([0]),
        "pos": torch.tensor([1]),
        "neg": torch.tensor([2]),
    }
    # reg * 1/2 (||h_u0||^2 + ||h_i1||^2) / 1 = 0.5 * 0.5 * (9 + 4)
    assert model.loss(batch)["reg"].item() == pytest.approx(0.5 * 0.5 * 13, rel=1e-6)


@pytest.mark.parametrize("residual", [True, False])
def test_bm3_adds_the_item_id_embedding_back_as_a_residual(residual: bool) -> None:
    ctx = tiny_context(["0"], ["0"], {"text": CIRCLE[:1]})  # one user, one item: A = [[0,1],[1,0]], degrees 1
    model = build("bm3", ctx, dim=2, layers=1, residual=residual)
    set_embeddings(model, [[2.0, 0.0]], [[0.0, 2.0]])
    users, items = model.encode_graph()
    # LightGCN mean of (e, A e): user (e_u + e_i) / 2 = [1, 1], item the same; + e_i = [1, 3] with the residual
    assert users.tolist() == [[1.0, 1.0]]
    assert items.tolist() == ([[1.0, 3.0]] if residual else [[1.0, 1.0]])


def test_bm3_defaults_are_the_authors() -> None:
    cfg = get_model_class("bm3").Config()
    assert (cfg.reg_form, cfg.residual, cfg.init_std, cfg.reg) == (
        "frobenius",
        True,
        None,
        0.1,
    )
    with pytest.raises(ConfigError, match="'model.reg_form' must be one of frobenius, batch_l2, got 'l1'"):
        build("bm3", bm3_context(), reg_form="l1")


# --------------------------------------------------------------------------------------------- MGCN
def circle_context(modalities: tuple[str, ...] = ("text",)) -> DataContext:
    # 2 users over the 4 items; every modality gets the CIRCLE features
    return tiny_context(["0", "0", "1", "1"], ["0", "1", "2", "3"], dict.fromkeys(modalities, CIRCLE))


def test_mgcn_item_graph_has_cosine_weights_and_keeps_the_item_itself() -> None:
    model = build("mgcn", circle_context(), knn_k=2)
    # top-2 of the full similarity matrix: every item itself (1) and its best other item; item 3's best
    # other is item 2 at cosine 0 (kept, weight 0). Row sums d = (1.6, 1.8, 1.8, 1.0), S_ij = w_ij / sqrt(d_i d_j)
    d = np.array([1.6, 1.8, 1.8, 1.0])
    w = np.array([[1.0, 0.6, 0, 0], [0, 1.0, 0.8, 0], [0, 0.8, 1.0, 0], [0, 0, 0.0, 1.0]])
    expected = w / np.sqrt(d[:, None] * d[None, :])
    np.testing.assert_allclose(model.item_item_graph(0).toarray(), expected, rtol=1e-5, atol=1e-7)


def test_mgcn_item_graph_without_the_self_loop() -> None:
    model = build("mgcn", circle_context(), knn_k=2, knn_self=False)
    # top-2 other items: 0 -> {1: 0.6, 2: 0}, 1 -> {2: 0.8, 0: 0.6}, 2 -> {1: 0.8, 0 or 3: 0}, 3 -> {2: 0, 1: clipped -0.6}
    graph = model.item_item_graph(0).toarray()
    assert np.all(np.diag(graph) == 0)
    assert graph[1, 2] == pytest.approx(0.8 / math.sqrt(1.4 * 0.8), rel=1e-5)  # d_1 = 0.8 + 0.6, d_2 = 0.8 + 0
    assert graph[0, 1] == pytest.approx(0.6 / math.sqrt(0.6 * 1.4), rel=1e-5)  # d_0 = 0.6 + 0


def fusion_model(fusion: str):
    model = build("mgcn", circle_context(("image", "text")), dim=2, fusion=fusion)
    c = math.log(3) / math.tanh(1.0)
    with torch.no_grad():
        first, _, query = model.attention
        first.weight.copy_(torch.eye(2))
        first.bias.zero_()
        query.weight.copy_(torch.tensor([[c, 0.0]]))  # score_m = c tanh(v_m[0]): alpha = (3/4, 1/4) for v = e_1, e_2
        for gate, bias in zip(model.preference_gates, (30.0, 0.0)):  # gates sigmoid(30) ~ 1 and sigmoid(0) = 1/2
            gate.weight.zero_()
            gate.bias.fill_(bias)
    return model


@pytest.mark.parametrize(
    "fusion, expected",
    [
        # shared s = (3/4, 1/4); parts 1 (e_1 - s) + 1/2 (e_2 - s) = (-1/8, 1/8)
        ("code", [(0.75 - 0.125) / 3, (0.25 + 0.125) / 3]),  # (s + parts) / (|M| + 1)
        ("mean_specific", [0.75 - 0.125 / 2, 0.25 + 0.125 / 2]),  # s + parts / |M|
    ],
)
def test_mgcn_fusion_weights(fusion: str, expected: list[float]) -> None:
    model = fusion_model(fusion)
    views = [torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])]
    fused = model.fuse(torch.zeros(1, 2), views)
    np.testing.assert_allclose(fused.detach().numpy(), [expected], rtol=1e-6)


def test_mgcn_l2_is_on_the_final_representations_of_the_batch() -> None:
    ctx = circle_context()
    model = build("mgcn", ctx, reg=0.1, cl_weight=0.0)
    batch = {
        "users": torch.tensor([0, 0, 1]),
        "pos": torch.tensor([0, 1, 2]),
        "neg": torch.tensor([3, 2, 0]),
    }
    users, items = model.representations()
    rows = [users[batch["users"]], items[batch["pos"]], items[batch["neg"]]]
    expected = 0.1 * sum(r.pow(2).sum() for r in rows) / (2 * 3)
    assert model.loss(batch)["reg"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_mgcn_contrast_runs_from_the_fused_view_over_the_batch_rows_as_drawn() -> None:
    model = build("mgcn", circle_context(), cl_weight=1.0, temperature=0.2)
    batch = {
        "users": torch.tensor([0, 0, 1]),
        "pos": torch.tensor([0, 0, 2]),
        "neg": torch.tensor([3, 2, 1]),
    }
    id_view, views = model.views()
    fused = model.fuse(id_view, views)

    def info_nce(a: torch.Tensor, b: torch.Tensor) -> float:  # -mean log exp(s_ii/t) / sum_j exp(s_ij/t), s = cosine
        s = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T / 0.2
        return float((s.logsumexp(1) - s.diag()).mean().detach())

    u, i = batch["users"], batch["pos"] + model.n_users
    expected = info_nce(fused[u], id_view[u]) + info_nce(fused[i], id_view[i])
    assert model.loss(batch)["contrast"].item() == pytest.approx(expected, rel=1e-5)
    unique = build("mgcn", circle_context(), cl_weight=1.0, contrast_unique=True)
    unique.load_state_dict(model.state_dict())
    u, i = torch.unique(u), torch.unique(i)
    assert unique.loss(batch)["contrast"].item() == pytest.approx(
        info_nce(fused[u], id_view[u]) + info_nce(fused[i], id_view[i]), rel=1e-5
    )


def test_mgcn_learning_rate_decays_by_096_every_50_epochs() -> None:
    cfg = resolve(["model=mgcn", "train.lr=0.01"])
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=cfg.train.lr)
    scheduler = build_scheduler(optimizer, cfg)
    for _ in range(50):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 0.96, rel=1e-9)
    assert resolve(["model=mgcn", "train.scheduler=none"]).train.scheduler == "none"  # still the user's to change


def test_mgcn_refuses_an_unknown_fusion() -> None:
    with pytest.raises(ConfigError, match="'model.fusion' must be one of code, mean_specific, got 'sum'"):
        build("mgcn", circle_context(), fusion="sum")


# ------------------------------------------------------------------------------------------ FREEDOM
@pytest.mark.parametrize("knn_self", [True, False])
def test_freedom_item_graph_counts_the_item_among_its_k_neighbours(
    knn_self: bool,
) -> None:
    model = build("freedom", circle_context(), knn_k=2, knn_self=knn_self)
    graph = model.item_graph.to_dense().numpy()
    if knn_self:
        # unit weights on {0,1}, {1,2}, {2,1}, {3,2}: every row sum 2, so each edge 1 / sqrt(2 * 2)
        expected = np.zeros((4, 4))
        for i, j in [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2), (2, 1), (3, 3), (3, 2)]:
            expected[i, j] = 0.5
        np.testing.assert_allclose(graph, expected, rtol=1e-6)
    else:
        assert np.all(np.diag(graph) == 0) and np.all((graph > 0).sum(1) == 2)


def test_freedom_defaults_are_the_authors() -> None:
    cfg = get_model_class("freedom").Config()
    assert (cfg.knn_self, cfg.init_std) == (True, None)
