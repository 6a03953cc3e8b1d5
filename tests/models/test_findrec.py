"""FindRec (specs/findrec.md Sec. 7): routing, attention, causality, masking, loss, init, size, protocol, training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import Dataset
from modalrec.data.preprocess import PreprocessConfig, preprocess
from modalrec.data.split import SplitConfig, split
from modalrec.data.synthetic import make_synthetic
from modalrec.data.views import make_train_batches
from modalrec.errors import ConfigError
from modalrec.eval.metrics import Hits, hit, mrr, ndcg
from modalrec.models.sequential.findrec import FindRec, GaussianBottleneck, gaussian_kl
from modalrec.nn.routing import SharedExperts, SharedRouter

SMALL = {"dim": 16, "modal_dim": 16, "heads": 4, "experts": 3, "router_hidden": 16, "max_len": 12}


@pytest.fixture(scope="module")
def ctx() -> DataContext:
    ds = make_synthetic(n_users=60, n_items=40, n_clusters=4, feature_dims={"text": 16, "image": 24}, seed=3)
    return DataContext.from_dataset(split(ds, SplitConfig(method="loo")))


def model(ctx: DataContext, **overrides: object) -> FindRec:
    torch.manual_seed(0)
    return FindRec(FindRec.Config(**{**SMALL, **overrides}), ctx)


def batch(ctx: DataContext, n: int = 5, length: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, ctx.n_items, (n, length), generator=g)
    lengths = torch.tensor([length, 3, 7, 1, 10][:n])
    seq[torch.arange(length) >= lengths[:, None]] = ctx.n_items
    return {"seq": seq, "lengths": lengths}


def user_vectors(m: FindRec, b: dict[str, torch.Tensor]) -> torch.Tensor:
    m.eval()
    with torch.no_grad():
        m.prepare_scoring()  # as the evaluator does once per pass
        return m.query_vectors(b)


# ---------------------------------------------------------------------- 6, 7: router and experts
def test_router_gates_shape_range_sums_and_sharpness() -> None:
    torch.manual_seed(0)
    router = SharedRouter(8, 4, hidden=16).eval()
    hf = torch.randn(2, 3, 5, 8)  # [B, H, L, d_head]
    gates = router(hf)
    assert gates.shape == (2, 3, 5, 4)
    assert gates.min() >= 1e-6 and gates.max() <= 1.0
    torch.testing.assert_close(gates.sum(-1), torch.ones(2, 3, 5), atol=1e-5, rtol=0)
    # one network for every head: routing head j's input alone gives head j's gates
    torch.testing.assert_close(router(hf[:, 1]), gates[:, 1])
    with torch.no_grad():
        router.net[-1].weight.mul_(100.0)
    router.temperature = 0.01
    assert router(hf).max(-1).values.min() > 0.99
    hard = SharedRouter(8, 4, hidden=16, gumbel_hard=True).train()(hf)
    assert set(hard.unique().tolist()) <= {0.0, 1.0} and torch.equal(hard.sum(-1), torch.ones(2, 3, 5))


def test_faithful_model_routes_densely(ctx: DataContext) -> None:
    m = model(ctx)
    assert not m.router.gumbel_hard and m.config.balance_coef == 0.0
    assert "balance" not in m.loss({**batch(ctx), "target": torch.zeros(5, dtype=torch.long)})


def test_top1_expert_routing_evaluates_each_row_by_its_argmax_expert_and_trains_the_router(ctx: DataContext) -> None:
    dense, sparse = model(ctx, mode="mmd"), model(ctx, mode="mmd", expert_routing="top1")
    assert not dense.experts.top1_routing and sparse.experts.top1_routing
    sparse.load_state_dict(dense.state_dict())  # the same parameters: only the routing differs
    b = {**batch(ctx), "targets": torch.randint(0, ctx.n_items, (5, 12), generator=torch.Generator().manual_seed(1))}
    captured: dict[str, torch.Tensor] = {}
    sparse.experts.register_forward_hook(lambda mod, inp, out: captured.update(hf=inp[0], gates=inp[1], out=out))
    sparse.eval()
    with torch.no_grad():
        sparse.forward_states(b["seq"], b["lengths"])
    hf, gates = captured["hf"], captured["gates"]
    every = sparse.experts.expert_outputs(hf)  # [B, H, L, E, d]
    k = gates.argmax(-1, keepdim=True)
    want = gates.gather(-1, k) * every.gather(-2, k.unsqueeze(-1).expand(*k.shape, every.shape[-1])).squeeze(-2)
    torch.testing.assert_close(captured["out"], want, rtol=1e-5, atol=1e-6)
    sparse.train()
    sparse.loss(b)["loss"].backward()
    router_grads = [p.grad for p in sparse.router.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in router_grads) and router_grads[-1].abs().sum() > 0


@pytest.mark.parametrize("routing", ["dense", "top1"])
def test_position_router_scope_routes_each_position_once_for_all_its_heads(ctx: DataContext, routing: str) -> None:
    """router_scope=position: one gate vector per position, the router reading every head's output concatenated,
    and the same gates for all H heads; the router and every expert still train. Default (head): gates per head."""
    per_head = model(ctx, mode="mmd", expert_routing=routing)
    shared = model(ctx, mode="mmd", expert_routing=routing, router_scope="position")
    heads, width = SMALL["heads"], 2 * SMALL["modal_dim"]  # M p: two modalities
    assert cast_linear(shared.router.net[1]).in_features == width
    assert cast_linear(per_head.router.net[1]).in_features == width // heads
    b = {**batch(ctx), "targets": torch.randint(0, ctx.n_items, (5, 12), generator=torch.Generator().manual_seed(1))}
    for m in (per_head, shared):
        captured: dict[str, torch.Tensor] = {}
        m.experts.register_forward_hook(lambda mod, inp, out, c=captured: c.update(hf=inp[0], gates=inp[1]))
        m.eval()
        with torch.no_grad():
            m.forward_states(b["seq"], b["lengths"])
            hf, gates = captured["hf"], captured["gates"]  # [B, H, L, M d_h], [B, H, L, E]
            if m is shared:
                assert torch.equal(gates, gates[:, :1].expand_as(gates))
                concatenated = hf.transpose(1, 2).flatten(2)  # [B, L, H M d_h]: position t's heads side by side
                torch.testing.assert_close(gates[:, 0], m.router(concatenated))
            else:
                assert not torch.allclose(gates[:, 0], gates[:, 1])
                torch.testing.assert_close(gates, m.router(hf))
    shared.train()
    shared.loss(b)["loss"].backward()
    grads = [p.grad for p in (*shared.router.parameters(), *shared.experts.parameters())]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    logit_weight = cast_linear(shared.router.net[-1]).weight.grad
    assert logit_weight is not None and logit_weight.abs().sum() > 0  # the router learns through the shared gates
    shared.eval()
    with torch.no_grad():
        d = shared.diagnostics(ctx)
    assert 0.0 <= d["router_entropy"] <= np.log(SMALL["experts"]) + 1e-6
    explained = shared.explain(shared.eval_batch(np.array([0, 1]), ctx, 2), torch.tensor([[1, 2], [3, 4]]))
    assert explained is not None and all(item["head_experts"][0] == item["head_experts"][-1] for row in explained for item in row)


def cast_linear(module: torch.nn.Module) -> torch.nn.Linear:
    assert isinstance(module, torch.nn.Linear)
    return module


def test_experts_are_unit_norm_and_mixtures_at_most_one() -> None:
    torch.manual_seed(0)
    experts = SharedExperts(8, 6, 3).eval()
    x = torch.randn(4, 5, 8)
    outs = experts.expert_outputs(x)
    norms = outs.norm(dim=-1)
    assert torch.all(((norms - 1).abs() < 1e-6) | (norms == 0))
    gates = torch.softmax(torch.randn(4, 5, 3), -1)
    assert (experts(x, gates).norm(dim=-1) <= 1 + 1e-6).all()


def test_shapes_and_unit_norm_modal_summary(ctx: DataContext) -> None:
    m = model(ctx).eval()
    b = batch(ctx)
    captured = {}
    m.head_fusion.register_forward_hook(lambda mod, inp, out: captured.update(fused=out))
    m.cross_attention.register_forward_hook(lambda mod, inp, out: captured.update(hf=out))
    with torch.no_grad():
        states, terms = m.forward_states(b["seq"], b["lengths"])
    assert states.shape == (5, 12, 16) and states.abs().max() <= 10
    assert captured["hf"].shape == (5, 4, 12, 2 * 16 // 4)  # [B, H, L, M d_h]
    modal = torch.nn.functional.normalize(captured["fused"], dim=-1)
    torch.testing.assert_close(modal.norm(dim=-1), torch.ones(5, 12))
    assert set(terms) == {"kl", "align"}


# ---------------------------------------------------------------------- 8, 9, 10: attention, causality, masking
def test_padded_keys_get_no_attention(ctx: DataContext) -> None:
    m = model(ctx).eval()
    b = batch(ctx)
    valid = torch.arange(12) < b["lengths"][:, None]
    with torch.no_grad():
        latents = [torch.randn(5, 12, 16) for _ in m.modalities]
        heads = m.cross_attention.split_heads(latents)
        weights = m.cross_attention.attend(heads, valid, 0, weights_only=True)  # [B, H, L, keys]
    assert (weights[~valid[:, None, None, :].expand_as(weights)] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(5, 4, 12))


def test_a_sample_does_not_depend_on_the_rest_of_the_batch(ctx: DataContext) -> None:
    m = model(ctx, sample_at_eval=False)
    b = batch(ctx)
    other = batch(ctx, seed=9)
    mixed = {k: torch.cat([b[k][:1], other[k][1:]]) for k in b}
    torch.testing.assert_close(user_vectors(m, b)[0], user_vectors(m, mixed)[0])


def test_id_stream_is_causal(ctx: DataContext) -> None:
    m = model(ctx).eval()
    seq = batch(ctx)["seq"][:1].clone()
    seq[0] = torch.arange(12) % ctx.n_items
    changed = seq.clone()
    changed[0, 6:] = (changed[0, 6:] + 5) % ctx.n_items
    with torch.no_grad():
        a, b = m.id_stream(m.item_embedding(seq)), m.id_stream(m.item_embedding(changed))
    assert torch.equal(a[:, :6], b[:, :6])


@pytest.mark.parametrize("mode", ["faithful", "clean"])
def test_full_model_causality_by_mode(ctx: DataContext, mode: str) -> None:
    m = model(ctx, mode=mode, sample_at_eval=False).eval()
    seq = (torch.arange(12) % ctx.n_items).unsqueeze(0)
    changed = seq.clone()
    changed[0, 6:] = (changed[0, 6:] + 5) % ctx.n_items
    lengths = torch.tensor([12])
    with torch.no_grad():
        a, _ = m.forward_states(seq, lengths)
        b, _ = m.forward_states(changed, lengths)
    earlier_changed = not torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert earlier_changed == (mode == "faithful")  # bidirectional cross-attention (A11) vs causal


def test_padding_content_does_not_change_the_user_vector(ctx: DataContext) -> None:
    m = model(ctx)
    b = batch(ctx)
    noisy = dict(b)
    noisy["seq"] = b["seq"].clone()
    pad = torch.arange(12) >= b["lengths"][:, None]
    noisy["seq"][pad] = torch.randint(0, ctx.n_items, (int(pad.sum()),))
    torch.testing.assert_close(user_vectors(m, b), user_vectors(m, noisy))


def test_feature_rows_follow_item_indices(ctx: DataContext) -> None:
    m = model(ctx)
    for name in ("image", "text"):
        table = getattr(m, f"feature_{name}")
        torch.testing.assert_close(table[:-1], ctx.features[name])
        assert (table[-1] == 0).all()  # padding row


# ---------------------------------------------------------------------- 5: bottleneck
def test_kl_matches_monte_carlo_and_eval_sampling_modes(ctx: DataContext) -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.randn(3, 4, generator=g, dtype=torch.float64) * 0.5
    z = mu + torch.randn(100_000, 3, 4, generator=g, dtype=torch.float64) * torch.exp(0.5 * logvar)
    log_q = (-0.5 * ((z - mu) ** 2 / logvar.exp() + logvar)).sum(-1)
    log_p = (-0.5 * z**2).sum(-1)
    mc = (log_q - log_p).mean(0)
    torch.testing.assert_close(gaussian_kl(mu, logvar), mc, rtol=0.02, atol=0.02)

    b = batch(ctx)
    deterministic = model(ctx, sample_at_eval=False)
    torch.testing.assert_close(user_vectors(deterministic, b), user_vectors(deterministic, b), rtol=0, atol=0)
    sampled = model(ctx, sample_at_eval=True)
    first = user_vectors(sampled, b)  # every evaluation pass re-seeds its noise: identical rankings
    torch.testing.assert_close(first, user_vectors(sampled, b), rtol=0, atol=0)
    assert not torch.allclose(first, user_vectors(deterministic, b))
    clamped = GaussianBottleneck(4, 0.0, logvar_clamp=10.0)
    with torch.no_grad():
        clamped.encoder[-1].bias.fill_(1e3)
    _, _, lv = clamped(torch.randn(2, 4), None)
    assert lv.max() == 10.0


# ---------------------------------------------------------------------- 11: loss assembly
def test_loss_is_ce_plus_weighted_kl_and_stein(ctx: DataContext) -> None:
    m = model(ctx)
    b = {**batch(ctx), "target": torch.tensor([1, 2, 3, 4, 5])}
    torch.manual_seed(7)
    terms = m.loss(b)
    torch.manual_seed(7)
    states, parts = m.forward_states(b["seq"], b["lengths"], last_only=True)
    user = states[:, 0]
    logits = user @ m.item_embedding.weight.T  # n_items + 1 columns: the pad row is a logit (A16)
    ce = -torch.log_softmax(logits, -1)[torch.arange(5), b["target"]].mean()
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["loss"], ce + 0.1 * (parts["kl"] + 1.0 * parts["align"]))
    m.eval()
    with torch.no_grad():
        assert m.score(batch(ctx)).shape == (5, ctx.n_items)  # the pad row is never ranked


@pytest.mark.parametrize(
    "overrides",
    [
        {"mode": "faithful"},
        {"mode": "clean"},
        {"mode": "clean", "modalities": ["text"]},
        {"mode": "faithful", "balance_coef": 0.1},
    ],
)
def test_last_only_path_equals_the_full_forward_at_the_last_item(ctx: DataContext, overrides: dict) -> None:
    """The cheap last-position path (queries only at the last item) computes the same user vectors and terms."""
    m = model(ctx, **overrides).eval()
    b = batch(ctx)
    with torch.no_grad():
        m.prepare_scoring()
        full, full_terms = m.forward_states(b["seq"], b["lengths"])
        m.prepare_scoring()
        last, last_terms = m.forward_states(b["seq"], b["lengths"], last_only=True)
    assert last.shape == (5, 1, 16)
    torch.testing.assert_close(last[:, 0], full[torch.arange(5), b["lengths"] - 1], rtol=1e-5, atol=1e-6)
    assert set(last_terms) == set(full_terms)
    for name in full_terms:
        torch.testing.assert_close(last_terms[name], full_terms[name], rtol=1e-5, atol=1e-6)


def test_all_position_batches_are_refused_with_bidirectional_attention(ctx: DataContext) -> None:
    b = {**batch(ctx), "targets": torch.zeros(5, 12, dtype=torch.long)}
    with pytest.raises(ConfigError, match="seq_target=last"):
        model(ctx).loss(b)
    assert torch.isfinite(model(ctx, mode="clean").loss(b)["loss"])


# ---------------------------------------------------------------------- 12, 13: init and size
def test_faithful_init(ctx: DataContext) -> None:
    m = FindRec(FindRec.Config(), ctx)
    linear = m.head_fusion[0]
    assert abs(linear.weight.std().item() - 0.01) < 1e-3 and (linear.bias == 0).all()
    mamba = m.id_stream[0].mamba
    assert (mamba.dt_proj.bias == 0).all()  # softplus(0) = 0.693 initial step
    torch.testing.assert_close(mamba.A_log[0], torch.log(torch.arange(1, 17, dtype=torch.float32)))
    assert (m.id_stream[1].layer_scale == 0.1).all()
    default = FindRec(FindRec.Config(init="module_default"), ctx)
    assert (torch.nn.functional.softplus(default.id_stream[0].mamba.dt_proj.bias) <= 0.1 + 1e-6).all()


def test_parameter_count_matches_the_released_code() -> None:
    n_items = 10
    feats = {name: np.zeros((n_items, 1024), np.float32) for name in ("image", "text")}
    ds = make_synthetic(n_users=6, n_items=n_items, n_clusters=2, seed=0)
    for name, values in feats.items():
        ds = ds.with_feature(
            name,
            dataclasses.replace(
                next(iter(make_synthetic(n_users=2, n_items=n_items, feature_dims={"x": 2}).features.values())), values=values
            ),
        )
    ctx = DataContext.from_dataset(split(ds, SplitConfig(method="loo")))

    def count(**overrides: object) -> int:
        m = FindRec(FindRec.Config(**overrides), ctx)
        return sum(p.numel() for k, p in m.named_parameters() if not k.startswith("item_embedding"))

    # spec Sec. 1.11: 2,100,356 counts a LayerNorm(256) the released attention defines but never calls
    assert count() == 2_100_356 - 512
    assert count(faithful_param_count=True) == 2_334_084


# ---------------------------------------------------------------------- 14: protocol
def test_protocol_core_filter_leave_one_out_prefixes_and_metrics() -> None:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(12), 9)
    items = rng.integers(0, 8, size=users.size)
    items[-3:] = 50  # a rare item: the 5-core filter removes it
    ds = Dataset.from_raw("toy", users, items, timestamp=np.arange(users.size, dtype=np.float64))
    ds = preprocess(ds, PreprocessConfig(dedupe=False, user_core=5, item_core=5))
    assert "50" not in set(ds.item_ids.tolist())
    ctx = DataContext.from_dataset(split(ds, SplitConfig(method="loo")))
    train_lengths = np.diff(ctx.histories[0].indptr)
    assert (train_lengths == np.bincount(ds.user) - 2).all()
    batches = make_train_batches("sequences", ctx, batch_size=1000, seed=0, max_len=4, target="last")
    assert batches.n_samples == int((train_lengths - 1).sum())  # every prefix is a sample
    seq, lengths = ctx.padded_history(np.array([0]), 1, 4)  # VALID: train history, last 4 kept
    expected = ctx.histories[0].indices[ctx.histories[0].indptr[0] : ctx.histories[0].indptr[1]][-4:]
    assert lengths.item() == 4 and seq[0].tolist() == expected.tolist()
    hits = Hits.from_matrix(np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=bool))  # ranks 3, 1, none
    one = np.ones(3)
    np.testing.assert_allclose(hit(hits, one), [1, 1, 0])
    np.testing.assert_allclose(ndcg(hits, one), [1 / np.log2(4), 1.0, 0.0])
    np.testing.assert_allclose(mrr(hits, one), [1 / 3, 1.0, 0.0])


# ---------------------------------------------------------------------- 16: smoke training
@pytest.mark.parametrize(
    "overrides,target",
    [({}, "last"), ({"stein_form": "ksd"}, "last"), ({"mode": "clean"}, "all"), ({"modalities": ["text"]}, "last")],
)
def test_training_decreases_the_loss(overrides: dict, target: str) -> None:
    ds = make_synthetic(n_users=40, n_items=30, n_clusters=3, length=(6, 12), feature_dims={"text": 32, "image": 32}, seed=1)
    ctx = DataContext.from_dataset(split(ds, SplitConfig(method="loo")))
    m = model(ctx, **overrides)
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.01)
    epochs = []
    for epoch in range(2):
        sums, count = 0.0, 0
        for b in make_train_batches("sequences", ctx, batch_size=32, seed=epoch, max_len=12, target=target):
            terms = m.loss(b)
            assert torch.isfinite(terms["align"])
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
            sums, count = sums + terms["ce"].item(), count + 1
        epochs.append(sums / count)
    assert epochs[1] < epochs[0]


def test_clean_mode_floors_the_stein_term_of_anti_aligned_score_networks(ctx: DataContext) -> None:
    """Two modalities' score networks pointing in opposite directions make k s_x^T s_y negative without bound;
    clean mode floors the term at 0 (where a valid KSD^2 stays), an explicit floor far below shows the raw value."""
    b = batch(ctx)
    align = {}
    for floor in (None, -1e9):
        m = model(ctx, mode="clean", **({} if floor is None else {"align_floor": floor}))
        with torch.no_grad():
            for net, sign in zip(m.score_nets, (1.0, -1.0), strict=True):
                last = [layer for layer in net if isinstance(layer, torch.nn.Linear)][-1]
                last.weight.zero_()
                last.bias.fill_(3.0 * sign)
        m.eval()
        align[floor] = m.forward_states(b["seq"], b["lengths"])[1]["align"].item()
    assert align[-1e9] < -1.0
    assert align[None] == 0.0


# ---------------------------------------------------------------------- ablation: ID stream only
def test_id_only_is_the_id_stream_through_the_fusion_with_the_ce_alone(ctx: DataContext) -> None:
    """``id_only`` builds no modal module, Z = clamp(LN(fusion(E_id))), and the loss is the CE (no KL, no align)."""
    m = model(ctx, mode="mmd", id_only=True)
    names = {name.split(".")[0] for name, _ in m.named_parameters()}
    assert names == {"item_embedding", "id_stream", "final_fusion", "final_norm"}
    assert m.final_fusion[0].in_features == 16
    b = {**batch(ctx), "target": torch.tensor([1, 2, 3, 4, 5])}
    m.eval()
    with torch.no_grad():
        terms = m.loss(b)
        z = m.final_norm(m.final_fusion(m.id_stream(m.item_embedding(b["seq"])))).clamp(-10, 10)
        user = z[torch.arange(5), b["lengths"] - 1]
    ce = torch.nn.functional.cross_entropy(user @ m.item_embedding.weight[: ctx.n_items].T, b["target"])
    torch.testing.assert_close(terms["ce"], ce)
    torch.testing.assert_close(terms["loss"], ce)
    assert set(terms) == {"loss", "ce"}
    torch.testing.assert_close(user_vectors(m, b), user)
    assert m.explain(b, torch.zeros(5, 2, dtype=torch.long)) is None  # nothing is routed
    with torch.no_grad():
        assert set(m.diagnostics(ctx)) == {"valid_ce"}


def test_id_only_needs_no_features_and_ignores_them() -> None:
    """An ID-only FindRec trains on a dataset without content, and its scores do not move when content changes."""
    plain = make_synthetic(n_users=40, n_items=30, n_clusters=3, length=(6, 12), seed=1)
    with_text = make_synthetic(n_users=40, n_items=30, n_clusters=3, length=(6, 12), feature_dims={"text": 8}, seed=1)
    noisy = with_text.with_feature(
        "text",
        dataclasses.replace(with_text.features["text"], values=np.random.default_rng(0).normal(size=(30, 8)).astype(np.float32)),
    )
    scores = []
    for ds in (plain, with_text, noisy):
        c = DataContext.from_dataset(split(ds, SplitConfig(method="loo")))
        m = model(c, mode="mmd", id_only=True)
        opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
        losses = []
        for epoch in range(3):
            for b in make_train_batches("sequences", c, batch_size=64, seed=epoch, max_len=12, target="all"):
                torch.manual_seed(epoch)
                loss = m.loss(b)["loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(loss.item())
        assert losses[-1] < losses[0]
        scores.append(user_vectors(m, batch(c)))
    torch.testing.assert_close(scores[0], scores[1])
    torch.testing.assert_close(scores[1], scores[2])
    with pytest.raises(ConfigError, match="needs item features"):
        model(DataContext.from_dataset(split(plain, SplitConfig(method="loo"))), mode="mmd")
