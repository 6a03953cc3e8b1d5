"""The authors'-code behaviours of BM3 and MGCN (and FREEDOM's kNN convention), pinned on tiny inputs whose
expected values are worked out by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

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


# ------------------------------------------------------------------------------------------- SLMRec
def slmrec_model(**overrides):
    # layers 0: every source's view is its own table; the text projection zeroed to map every item to
    # its bias b, so the text view of every item is b
    model = build("slmrec", circle_context(), dim=2, layers=0, **overrides)
    set_embeddings_slmrec(model, [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    with torch.no_grad():
        model.projections[0].weight.zero_()
        model.projections[0].bias.copy_(torch.tensor([0.0, 2.0]))
    return model


def set_embeddings_slmrec(model, users: list[list[float]], items: list[list[float]]) -> None:
    with torch.no_grad():
        for table in model.user_embeddings:
            table.weight.copy_(torch.tensor(users))
        model.item_embedding.weight.copy_(torch.tensor(items))


def test_slmrec_defaults_are_the_authors() -> None:
    cfg = get_model_class("slmrec").Config()
    assert (cfg.layers, cfg.objective, cfg.fusion, cfg.shared_users, cfg.normalize_features, cfg.ssl_task) == (
        3,
        "infonce",
        "linear",
        True,
        True,
        "fac",
    )
    assert (cfg.reg, cfg.init_std, cfg.temperature, cfg.ssl_temperature, cfg.ssl_weight) == (0.0, None, 0.2, 0.2, 0.1)
    assert resolve(["model=slmrec"]).train.weight_decay == 1e-4  # the code's Adam weight decay, its only L2
    model = build("slmrec", circle_context())
    assert len(model.user_embeddings) == 1  # one user table under every source
    assert model.user_fusion.in_features == model.item_fusion.in_features == 2 * 64  # ID + text -> d


def test_slmrec_main_task_is_the_in_batch_softmax_over_cosines() -> None:
    model = slmrec_model(fusion="concat", ssl_weight=0.0)
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([3, 3])}
    # concat: u = [e_u; e_u] (shared users), i = [e_i; (0, 2)]. u0 = (1,0,1,0), u1 = (0,1,0,1);
    # i0 = (1,0,0,2), i2 = (1,1,0,2). Cosines: u0.i0 = 1/(sqrt2 sqrt5), u0.i2 = 1/(sqrt2 sqrt6),
    # u1.i0 = 2/(sqrt2 sqrt5), u1.i2 = 3/(sqrt2 sqrt6); logits = cosine / 0.2, target the diagonal
    s = np.array([[1 / math.sqrt(10), 1 / math.sqrt(12)], [2 / math.sqrt(10), 3 / math.sqrt(12)]]) / 0.2
    expected = np.mean([np.log(np.exp(s[r]).sum()) - s[r, r] for r in range(2)])
    assert model.loss(batch)["main"].item() == pytest.approx(expected, rel=1e-5)
    bpr = slmrec_model(fusion="concat", ssl_weight=0.0, objective="bpr")
    # BPR: -log sigmoid(<u, i+> - <u, i->), i3 = (0,0,0,2): <u0,i0> - <u0,i3> = 1, <u1,i2> - <u1,i3> = 1 + 2 - 2 = 1
    assert bpr.loss(batch)["main"].item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))), rel=1e-5)


def test_slmrec_fac_contrasts_the_id_chain_with_the_modality_view_by_raw_dot_products() -> None:
    model = slmrec_model(ssl_weight=1.0, ssl_temperature=0.5)
    with torch.no_grad():  # one modality: one step, d/2 = 1 wide; g reads the ID view's first coordinate,
        model.chain[0].weight.copy_(torch.tensor([[1.0, 0.0]]))  # h the text view's second; the text view is
        model.chain[0].bias.zero_()  # the (unit) CIRCLE features themselves
        model.views[0].weight.copy_(torch.tensor([[0.0, 1.0]]))
        model.views[0].bias.zero_()
        model.projections[0].weight.copy_(torch.eye(2))
        model.projections[0].bias.zero_()
    batch = {"users": torch.tensor([0, 1, 1]), "pos": torch.tensor([0, 1, 0]), "neg": torch.tensor([3, 3, 3])}
    # items 0, 1, 0 as drawn: x = (1, 0, 1), h = (0, 0.8, 0); logits x_a h_b / 0.5 = rows (0, 1.6, 0), (0, 0, 0),
    # (0, 1.6, 0); each row's target is its own column: mean of lse - 0, log 3 - 0, lse - 0
    lse = math.log(2 + math.exp(1.6))
    assert model.loss(batch)["ssl"].item() == pytest.approx((2 * lse + math.log(3)) / 3, rel=1e-6)


def test_slmrec_refuses_unknown_choices() -> None:
    with pytest.raises(ConfigError, match="'model.objective' must be one of infonce, bpr"):
        build("slmrec", circle_context(), objective="softmax")
    with pytest.raises(ConfigError, match="'model.ssl_task' must be one of fac, content_fd, content_fm, content_fac"):
        build("slmrec", circle_context(), ssl_task="rotate")


# ------------------------------------------------------------------------------------------- LGMRec
def test_lgmrec_defaults_are_the_authors() -> None:
    cfg = get_model_class("lgmrec").Config()
    assert (cfg.hyperedge_input, cfg.modality_readout, cfg.reg_form, cfg.projection_bias) == ("raw", "last", "final_norm", False)
    assert (cfg.reg, cfg.keep_rate, cfg.cl_weight, cfg.alpha, cfg.hyperedges, cfg.init_std) == (1e-6, 0.5, 1e-4, 0.3, 4, None)
    model = build("lgmrec", circle_context())
    assert model.hyperedge_keys[0].shape == (2, 4)  # V^m reads the raw 2-d features
    with pytest.raises(ConfigError, match="'model.reg_form' must be one of final_norm, id_l2"):
        build("lgmrec", circle_context(), reg_form="l1")


def test_lgmrec_user_hyperedge_dependencies_are_the_softmax_of_their_items_summed_logits() -> None:
    model = build("lgmrec", circle_context(), dim=2, hyperedges=2, tau=0.5).eval()
    with torch.no_grad():
        model.hyperedge_keys[0].copy_(torch.eye(2))  # item logits = its raw features
    h_users, h_items = model._dependencies(0, torch.zeros(4, 2))
    # u0 has items 0, 1: logits (1, 0) + (0.6, 0.8) = (1.6, 0.8); u1 items 2, 3: (0, 1) + (-1, 0) = (-1, 1)
    expected_users = torch.softmax(torch.tensor([[1.6, 0.8], [-1.0, 1.0]]) / 0.5, dim=1)
    torch.testing.assert_close(h_users, expected_users)
    torch.testing.assert_close(h_items, torch.softmax(torch.tensor(CIRCLE) / 0.5, dim=1))
    projected = build("lgmrec", circle_context(), dim=2, hyperedges=2, tau=0.5, hyperedge_input="projected").eval()
    items = torch.tensor(CIRCLE)
    with torch.no_grad():
        projected.hyperedge_keys[0].copy_(torch.eye(2))
    h_users, _ = projected._dependencies(0, items)
    soft = torch.softmax(items / 0.5, dim=1)  # earlier form: users average their items' dependencies
    torch.testing.assert_close(h_users, torch.stack([soft[:2].mean(0), soft[2:].mean(0)]))


@pytest.mark.parametrize(
    "readout, item0",
    [
        ("last", [1 / math.sqrt(2), 1 / math.sqrt(2)]),  # normalize(A x)_0 = normalize(u / sqrt2)
        (
            "mean",
            [v / math.hypot(1 + 0.5 / math.sqrt(2), 0.5 / math.sqrt(2)) for v in (1 + 0.5 / math.sqrt(2), 0.5 / math.sqrt(2))],
        ),
    ],
)
def test_lgmrec_modality_embedding_keeps_the_last_propagation_layer(readout: str, item0: list[float]) -> None:
    # one user with items 0 = (1, 0) and 1 = (0, 1); W = I; the user's row is the mean of its items, (1/2, 1/2).
    # A: user-item edges 1 / sqrt(2 * 1); A x: user (1/sqrt2, 1/sqrt2), every item u / sqrt2 = (1/(2 sqrt2), 1/(2 sqrt2))
    ctx = tiny_context(["0", "0"], ["0", "1"], {"text": CIRCLE[[0, 2]]})
    model = build("lgmrec", ctx, dim=2, modality_layers=1, ui_layers=0, alpha=0.0, modality_readout=readout).eval()
    set_embeddings(model, [[0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]])
    with torch.no_grad():
        model.projections[0].weight.copy_(torch.eye(2))
    local, _, _ = model.embeddings()  # the ID part is 0, so E_local = normalize(E^text)
    np.testing.assert_allclose(local[1].detach().numpy(), item0, rtol=1e-6)


def test_lgmrec_regulariser_is_the_unsquared_norms_of_the_final_batch_rows() -> None:
    model = build("lgmrec", circle_context(), reg=0.5, cl_weight=0.0)
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([3, 1])}
    torch.manual_seed(0)  # the same Gumbel and dropout draws for the loss and the check
    out = model.loss(batch)
    torch.manual_seed(0)
    local, global_, _ = model.embeddings()
    users, items = (local + 0.3 * torch.nn.functional.normalize(global_, dim=1)).split([model.n_users, model.n_items])
    rows = (users[batch["users"]], items[batch["pos"]], items[batch["neg"]])
    # ||U_b||_F + ||I+_b||_F + ||I-_b||_F over the batch size, not squared
    assert out["reg"].item() == pytest.approx(0.5 * sum(r.norm().item() for r in rows) / 2, rel=1e-5)


def test_lgmrec_contrast_sums_over_the_batch_against_every_row_of_the_other_modality() -> None:
    model = build("lgmrec", circle_context(("image", "text")), tau=0.5)
    a, b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), torch.tensor([[2.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    anchors = torch.tensor([0, 0, 2])
    cos = torch.nn.functional.normalize(a, dim=1) @ torch.nn.functional.normalize(b, dim=1).T / 0.5
    # anchor 0: cosines to b = (1, 0, -1); anchor 2: (1/sqrt2, 1/sqrt2, -1/sqrt2); positives on the same row index
    expected = 2 * (cos[0].logsumexp(0) - cos[0, 0]) + (cos[2].logsumexp(0) - cos[2, 2])
    assert model.contrast(a, b, anchors).item() == pytest.approx(expected.item(), rel=1e-6)


# ------------------------------------------------------------------------------------------ DualGNN
def test_dualgnn_defaults_are_the_authors() -> None:
    cfg = get_model_class("dualgnn").Config()
    assert (cfg.readout, cfg.feature_mlp, cfg.normalize_inputs, cfg.item_id, cfg.user_k, cfg.init_std) == (
        "sum",
        True,
        True,
        False,
        40,
        None,
    )
    model = build("dualgnn", circle_context(), dim=3)
    first, _, second = model.projections[0]  # d_f -> 4d -> d with LeakyReLU between
    assert (first.in_features, first.out_features, second.out_features) == (2, 12, 3)
    assert not hasattr(model, "item_embedding")
    with pytest.raises(ConfigError, match="'model.readout' must be one of sum, mean"):
        build("dualgnn", circle_context(), readout="max")


@pytest.mark.parametrize("readout", ["sum", "mean"])
def test_dualgnn_propagates_normalised_rows_and_sums_the_layers_and_modalities(readout: str) -> None:
    # one user, one item: A = [[0, 1], [1, 0]]; one user neighbour cannot exist, so u = u_fused
    ctx = tiny_context(["0"], ["0"], {"image": CIRCLE[:1], "text": CIRCLE[:1]})
    model = build("dualgnn", ctx, dim=2, layers=1, feature_mlp=False, readout=readout)
    with torch.no_grad():
        for pref, proj, scale in zip(model.preferences, model.projections, (3.0, 5.0)):
            pref.weight.copy_(torch.tensor([[0.0, scale]]))  # normalised to (0, 1)
            proj.weight.copy_(scale * torch.eye(2))  # item feature (1, 0) -> (scale, 0), normalised to (1, 0)
            proj.bias.zero_()
    users, items = model.representations()
    # per modality x = [(0,1); (1,0)], A x = [(1,0); (0,1)]: sum x + A x = (1,1) for both rows, mean (1/2, 1/2)
    per = 1.0 if readout == "sum" else 0.5
    assert users.tolist() == [[per, per]]  # softmax of equal fusion weights: the mean over modalities
    assert items.tolist() == [[2 * per, 2 * per]]  # the sum over the two modalities, no ID embedding


# --------------------------------------------------------------------------------------------- GRCN
def test_grcn_defaults_are_the_authors_but_the_routing() -> None:
    cfg = get_model_class("grcn").Config()
    assert (cfg.refine, cfg.readout, cfg.normalize_ids, cfg.init_std) == ("attention", "sum", True, None)
    assert cfg.routing == 3  # the paper's; the code's routing never changes the preferences (routing=0)
    model = build("grcn", circle_context(("image", "text")))
    assert model.confidence.shape == (2 + 4, 2)  # one learned confidence per node and modality
    with pytest.raises(ConfigError, match="'model.refine' must be one of attention, affinity"):
        build("grcn", circle_context(), refine="hard")


def test_grcn_routing_0_keeps_the_normalised_preferences() -> None:
    model = build("grcn", circle_context(), dim=2, routing=0)
    _, p, _ = model.refine_modality(0)
    torch.testing.assert_close(p, torch.nn.functional.normalize(model.preferences[0].weight, dim=1))


# -------------------------------------------------------------------------------------------- MICRO
def test_grace_loss_has_intra_and_inter_view_negatives() -> None:
    from modalrec.nn.contrastive import grace_loss

    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # cosines: a0.b = (1, 1/sqrt2), a1.b = (0, 1/sqrt2), a0.a1 = 0; t = 0.5
    # row 0: -log e^2 / (e^2 + e^(sqrt2) + e^0); row 1: -log e^(sqrt2) / (e^0 + e^(sqrt2) + e^0)
    r = math.sqrt(2)
    row0 = math.log(math.exp(2) + math.exp(r) + 1) - 2
    row1 = math.log(2 + math.exp(r)) - r
    assert grace_loss(a, b, 0.5).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)
    assert grace_loss(a, b, 0.5, chunk=1).item() == pytest.approx((row0 + row1) / 2, rel=1e-6)


def test_micro_defaults_are_the_authors() -> None:
    cfg = get_model_class("micro").Config()
    assert (cfg.contrast, cfg.reg_form, cfg.reg, cfg.init_std, cfg.cl_weight, cfg.temperature) == (
        "all_items",
        "final",
        1e-5,
        None,
        0.03,
        0.5,
    )
    with pytest.raises(ConfigError, match="'model.contrast' must be one of all_items, batch"):
        build("micro", circle_context(), contrast="pairs")


def test_micro_contrast_runs_over_every_item_and_l2_over_the_final_rows() -> None:
    from modalrec.nn.contrastive import grace_loss

    model = build("micro", circle_context(("image", "text")), knn_k=2, cl_weight=1.0, reg=0.5)
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([3, 1])}
    model.before_epoch(0)
    out = model.loss(batch)
    views, fused = model.item_views()
    expected = sum(grace_loss(v, fused, 0.5) for v in views)  # all 4 items, not the batch's 2
    assert out["contrast"].item() == pytest.approx(expected.item(), rel=1e-5)
    users, items = model.representations()
    rows = [users[batch["users"]], items[batch["pos"]], items[batch["neg"]]]
    assert out["reg"].item() == pytest.approx(0.5 * sum(r.pow(2).sum().item() for r in rows) / (2 * 2), rel=1e-5)


# ------------------------------------------------------------------------------------ LATTICE / MICRO
@pytest.mark.parametrize("name", ["lattice", "micro"])
def test_row_self_user_item_graph_is_the_codes_mean_over_neighbours_and_self(name: str) -> None:
    # 2 users, 3 items: u0-i0, u0-i1, u1-i2; nodes u0, u1, i0, i1, i2
    model = build(name, bm3_context(), dim=2, knn_k=1, ui_graph="row_self")
    # D^-1 (A + I): u0 sees itself, i0, i1 (1/3 each); u1 itself and i2 (1/2); i0 itself and u0 (1/2), ...
    expected = torch.tensor(
        [
            [1 / 3, 0, 1 / 3, 1 / 3, 0],
            [0, 1 / 2, 0, 0, 1 / 2],
            [1 / 2, 0, 1 / 2, 0, 0],
            [1 / 2, 0, 0, 1 / 2, 0],
            [0, 1 / 2, 0, 0, 1 / 2],
        ]
    )
    assert torch.allclose(model.adjacency.to_dense(), expected)
    assert torch.allclose(model.adjacency_t.to_dense(), expected.T)
    # the default stays LightGCN's D^-1/2 A D^-1/2, no self loops: u0-i0 weighs 1/sqrt(2 * 1)
    default = build(name, bm3_context(), dim=2, knn_k=1).adjacency.to_dense()
    assert default[0, 0].item() == 0 and default[0, 2].item() == pytest.approx(1 / math.sqrt(2))


@pytest.mark.parametrize("name", ["lattice", "micro"])
def test_first_batch_graph_gradient_reuses_the_weights_detached_until_the_next_refresh(name: str) -> None:
    model = build(name, circle_context(), knn_k=2, graph_grad="first_batch")
    graph, features = model.item_graph, model.features
    model.before_epoch(0)
    first = graph.modality_graph(0, features)[2]
    assert first.requires_grad  # the epoch's first batch: the projections get a gradient
    with torch.no_grad():
        graph.projections[0].weight.mul_(-1.0)  # an optimiser step changes the projections...
    again = graph.modality_graph(0, features)[2]
    assert not again.requires_grad and torch.equal(again, first.detach())  # ...later batches reuse the old weights
    with torch.no_grad():  # scoring computes them afresh
        assert not torch.equal(graph.modality_graph(0, features)[2], first.detach())
    model.before_epoch(1)
    assert graph.modality_graph(0, features)[2].requires_grad  # a new epoch: gradient once more
    every = build(name, circle_context(), knn_k=2)  # the default: a gradient in every batch
    every.before_epoch(0)
    every.item_graph.modality_graph(0, every.features)
    assert every.item_graph.modality_graph(0, every.features)[2].requires_grad


# ---------------------------------------------------------------------------------------------- DMRL
def dmrl_code(**overrides):
    torch.manual_seed(0)
    return build("dmrl", circle_context(("image", "text")), dim=4, factors=2, form="code", hidden=3, init_std=None, **overrides)


def test_dmrl_code_form_scores_by_the_mlp_attention_over_softplus_source_scores() -> None:
    model = dmrl_code()
    users, items = model._factors(model.user_embedding.weight), model.item_sources(slice(None))  # [2,2,2], [4,3,2,2]
    expected = torch.zeros(2, 4)
    for u in range(2):
        for i in range(4):
            for k in range(2):
                x = torch.cat([users[u, k], *items[i, :, k]])  # [u_k; id_k; image_k; text_k]
                h = torch.tanh(model.source_hidden.weight @ (x / x.norm()) + model.source_hidden.bias)
                a = torch.softmax(model.source_out.weight @ h, dim=0)
                expected[u, i] += (a * F.softplus(items[i, :, k] @ users[u, k])).sum()
    assert torch.allclose(model.preference(users, items), expected, atol=1e-6)
    # the training path (matched rows) gives the same numbers
    pair = model._pair_preference(users[[0, 1, 1]], items[[3, 0, 2]])
    assert torch.allclose(pair, expected[[0, 1, 1], [3, 0, 2]], atol=1e-6)


def test_dmrl_code_form_trains_the_id_tables_only_on_the_hardest_negative() -> None:
    model = dmrl_code(dcor_weight=0.0, reg=0.0)
    batch = {"users": torch.tensor([0, 1]), "pos": torch.tensor([0, 2]), "neg": torch.tensor([[3, 1, 2], [1, 3, 0]])}
    out = model.loss(batch)
    users, items = model._factors(model.user_embedding.weight), model.item_sources(slice(None))
    scores = model.preference(users, items)
    hardest = torch.stack([scores[0, [3, 1, 2]].max(), scores[1, [1, 3, 0]].max()])
    expected = -F.logsigmoid(torch.stack([scores[0, 0], scores[1, 2]]) - hardest).mean()
    assert out["bpr"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["loss"].backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained == {"user_embedding.weight", "item_embedding.weight"}  # projections and attention stay at init


def test_dmrl_code_form_distance_correlation_over_consecutive_factors() -> None:
    from modalrec.nn.contrastive import distance_correlation

    model = build("dmrl", circle_context(), dim=6, factors=3, form="code")
    x = torch.randn(8, 3, 2, generator=torch.Generator().manual_seed(0))
    pairs = distance_correlation(x[:, 0], x[:, 1]) + distance_correlation(x[:, 1], x[:, 2])  # not (0, 2)
    assert model.disentanglement(x).item() == pytest.approx(pairs.item() / 6, rel=1e-6)  # K(K+1)/2 = 6
    paper = build("dmrl", circle_context(), dim=6, factors=3)
    every = pairs + distance_correlation(x[:, 0], x[:, 2])
    assert paper.disentanglement(x).item() == pytest.approx(every.item() / 3, rel=1e-6)
