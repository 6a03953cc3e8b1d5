"""FindRec's mechanisms in mode=mmd (issue #15): a bounded alignment that aligns, a bottleneck that does not
collapse, per-epoch diagnostics, and the routing explanation of each recommended item."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from modalrec.data.context import DataContext
from modalrec.data.dataset import ItemFeature
from modalrec.data.split import SplitConfig, split
from modalrec.data.synthetic import make_synthetic
from modalrec.data.views import make_train_batches
from modalrec.errors import ConfigError
from modalrec.models.base import get_model_class
from modalrec.models.sequential.findrec import FindRec, gaussian_kl_dims

SMALL = {"dim": 32, "modal_dim": 32, "heads": 4, "experts": 3, "router_hidden": 32, "max_len": 20}


@pytest.fixture(scope="module")
def ctx() -> DataContext:
    """Clustered walks over 120 items whose two modalities are different linear views of one item code plus
    noise: the content identifies the item and the modalities agree, as text and image of a real item do."""
    ds = make_synthetic(n_users=240, n_items=120, n_clusters=6, length=(8, 20), seed=1)
    rng = np.random.default_rng(0)
    code = rng.standard_normal((120, 16))
    for name, dim in (("text", 32), ("image", 48)):
        values = (code @ rng.standard_normal((16, dim)) / 4 + 0.1 * rng.standard_normal((120, dim))).astype(np.float32)
        ds = ds.with_feature(name, ItemFeature(values, np.ones(120, dtype=bool), {}))
    return DataContext.from_dataset(split(ds, SplitConfig(method="loo")))


def model(ctx: DataContext, **overrides: object) -> FindRec:
    torch.manual_seed(0)
    return FindRec(FindRec.Config(**{**SMALL, **overrides}), ctx)


def train(m: FindRec, ctx: DataContext, epochs: int) -> list[dict[str, float]]:
    """Train with the all-position objective; the diagnostics before training and after every epoch."""
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3, weight_decay=0.01)
    m.eval()
    with torch.no_grad():
        history = [m.diagnostics(ctx)]
    for epoch in range(epochs):
        m.train()
        m.before_epoch(epoch)
        for b in make_train_batches("sequences", ctx, batch_size=64, seed=epoch, max_len=20, target="all"):
            terms = m.loss(b)
            opt.zero_grad()
            terms["loss"].backward()
            opt.step()
        m.eval()
        with torch.no_grad():
            history.append(m.diagnostics(ctx))
    return history


def test_mmd_mode_has_no_score_networks_and_a_nonnegative_alignment(ctx: DataContext) -> None:
    m = model(ctx, mode="mmd")
    assert len(m.score_nets) == 0 and m.config.stein_form == "mmd" and m.config.align_latent == "mean"
    assert m.config.free_bits > 0 and m.config.logvar_init is not None
    seq = torch.randint(0, ctx.n_items, (16, 20), generator=torch.Generator().manual_seed(0))
    lengths = torch.randint(1, 21, (16,), generator=torch.Generator().manual_seed(1))
    seq[torch.arange(20) >= lengths[:, None]] = ctx.n_items
    for _ in range(3):
        m.train()
        assert m.forward_states(seq, lengths)[1]["align"].item() >= 0.0
    with pytest.raises(ConfigError, match="score_reg"):
        model(ctx, mode="mmd", score_reg=0.1)
    with pytest.raises(ConfigError, match="free_bits"):
        model(ctx, mode="mmd", free_bits=-1.0)


def test_free_bits_leave_the_first_nats_of_each_dimension_unpenalised(ctx: DataContext) -> None:
    """The KL objective is sum_d max(mean_rows KL_d, lambda): no gradient for dimensions under lambda."""
    m = model(ctx, mode="mmd", free_bits=0.3)
    mu = torch.zeros(10, 4, requires_grad=True)
    logvar = torch.tensor([0.0, -0.5, -3.0, 1.5]).expand(10, 4).clone().requires_grad_()
    kl_dims = gaussian_kl_dims(mu, logvar).mean(0)
    objective = kl_dims.clamp(min=m.config.free_bits).sum()
    objective.backward()
    below = kl_dims < 0.3
    assert below.tolist() == [True, True, False, False]
    assert (logvar.grad[:, below] == 0).all() and (logvar.grad[:, ~below] != 0).all()
    assert objective.item() == pytest.approx(0.6 + kl_dims[~below].sum().item())
    # the model's loss uses exactly this objective (and reports the raw KL)
    b = next(iter(make_train_batches("sequences", ctx, batch_size=8, seed=0, max_len=20, target="all")))
    torch.manual_seed(3)
    terms = m.loss(b)
    assert terms["kl_objective"].item() >= terms["kl"].item() - 1e-6
    expected = terms["ce"] + m.config.loss_weight * (terms["kl_objective"] + m.config.stein_weight * terms["align"])
    torch.testing.assert_close(terms["loss"], expected)


def test_kl_warmup_ramps_the_kl_weight(ctx: DataContext) -> None:
    m = model(ctx, mode="mmd", kl_warmup_epochs=3)
    scales = []
    for epoch in range(5):
        m.before_epoch(epoch)
        scales.append(m._kl_scale)
    assert scales == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])


def test_mmd_mode_aligns_the_modalities_and_its_bottleneck_does_not_collapse(ctx: DataContext) -> None:
    """After 5 epochs on content that identifies items: the alignment fell, text latents find the same item's
    image latent far above chance (and above the start), the KL did not collapse and a sampled z still finds its
    own item. The clean mode, trained the same way, collapses (KL per dim ~ 0, z at chance) and does not align."""
    chance = 1 / 120
    mmd_history = train(model(ctx, mode="mmd"), ctx, epochs=5)
    start, end = mmd_history[1], mmd_history[-1]
    assert end["align"] < 0.5 * start["align"]
    assert end["cross_modal_retrieval"] > max(20 * chance, mmd_history[0]["cross_modal_retrieval"] + 0.1)
    assert end["kl_per_dim"] > 0.5
    assert end["z_item_retrieval"] > 5 * chance
    clean_history = train(model(ctx, mode="clean"), ctx, epochs=5)
    assert clean_history[-1]["kl_per_dim"] < 0.05
    assert clean_history[-1]["z_item_retrieval"] < 3 * chance
    assert clean_history[-1]["cross_modal_retrieval"] < 5 * chance


def test_diagnostics_are_in_range(ctx: DataContext) -> None:
    m = model(ctx, mode="mmd").eval()
    with torch.no_grad():
        d = m.diagnostics(ctx)
        again = m.diagnostics(ctx)
    assert d == again  # a fixed sample, a fixed noise seed
    for key in ("z_item_retrieval", "cross_modal_retrieval"):
        assert 0.0 <= d[key] <= 1.0
    assert d["kl_per_dim"] >= 0 and d["align"] >= 0 and d["valid_ce"] > 0
    assert 0.0 <= d["router_entropy"] <= math.log(3) + 1e-6
    assert sum(d[f"expert_{k}"] for k in range(3)) == pytest.approx(1.0, abs=1e-4)
    assert sum(d[f"weight_{s}"] for s in ("id", "image", "text")) == pytest.approx(1.0, abs=1e-6)


def test_explanations_are_the_routing_of_each_recommended_item(ctx: DataContext) -> None:
    m = model(ctx, mode="mmd")
    train(m, ctx, epochs=1)
    users = np.array([0, 5, 7])
    batch = m.eval_batch(users, ctx, 2)
    items = torch.tensor([[3, 50, 100], [7, 8, 9], [0, 1, 119]])
    out = m.explain(batch, items)
    assert len(out) == 3 and all(len(row) == 3 for row in out)
    for row in out:
        for e in row:
            assert sum(e["experts"]) == pytest.approx(1.0, abs=1e-4) and len(e["experts"]) == 3
            assert len(e["head_experts"]) == 4 and all(sum(h) == pytest.approx(1.0, abs=1e-4) for h in e["head_experts"])
            assert set(e["streams"]) == {"id", "image", "text"} and sum(e["streams"].values()) == pytest.approx(1.0, abs=1e-5)
    assert out[0][0]["experts"] != out[0][1]["experts"]  # item-specific
    # the explanation is the routing read at the item appended to the history
    seq, length = batch["seq"][1], int(batch["lengths"][1])
    extended = torch.cat([seq[:length], torch.tensor([8])])[-m.max_len :]
    padded = torch.full((1, m.max_len), m.pad)
    padded[0, : len(extended)] = extended
    trace: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        m.forward_states(padded, torch.tensor([len(extended)]), last_only=True, trace=trace)
    np.testing.assert_allclose(out[1][1]["experts"], trace["gates"][0, :, 0].mean(0).numpy(), atol=1e-5)
    assert m.training is False


def test_models_without_explanations_say_so(ctx: DataContext) -> None:
    sasrec = get_model_class("sasrec")
    m = sasrec(sasrec.Config(dim=8, max_len=20), ctx)
    assert m.explain(m.eval_batch(np.array([0]), ctx, 2), torch.tensor([[1, 2]])) is None


def test_encoding_once_per_item_changes_nothing_at_evaluation(ctx: DataContext) -> None:
    b = next(iter(make_train_batches("sequences", ctx, batch_size=16, seed=0, max_len=20, target="all")))
    outputs = []
    for per_item in (True, False):
        m = model(ctx, mode="mmd", encode_per_item=per_item).eval()
        with torch.no_grad():
            states, terms = m.forward_states(b["seq"], b["lengths"])
        outputs.append((states, terms["kl"], terms["align"]))
    for a, c in zip(*outputs):
        torch.testing.assert_close(a, c)


@pytest.mark.parametrize("window", [1, 4, 7])
def test_windowed_cross_attention_equals_the_banded_mask(ctx: DataContext, window: int) -> None:
    """xattn_window=W: the blockwise O(L W) path gives what full attention with the band (t - W, t] gives."""
    m = model(ctx, mode="mmd", xattn_window=window).eval()
    b = next(iter(make_train_batches("sequences", ctx, batch_size=6, seed=0, max_len=20, target="all")))
    latents = [torch.randn(6, 20, 32, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    valid = torch.arange(20) < b["lengths"][:, None]
    attention = m.cross_attention
    heads = attention.split_heads(latents)
    everywhere = torch.arange(20).expand(6, 20)
    for mod in range(2):
        fast = attention.attend(heads, valid, mod)
        reference = attention.attend(heads, valid, mod, query_pos=everywhere)  # the masked full product
        torch.testing.assert_close(
            fast[valid.unsqueeze(1).expand_as(fast[..., 0])], reference[valid.unsqueeze(1).expand_as(reference[..., 0])]
        )
    assert torch.isfinite(attention(latents, valid)).all()
    m.train()
    terms = m.loss(b)
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    with pytest.raises(ConfigError, match="xattn_window"):
        model(ctx, mode="faithful", xattn_window=4)


def test_one_modality_diagnostics_measure_the_modal_id_alignment(ctx: DataContext) -> None:
    m = model(ctx, mode="mmd", modalities=["text"]).eval()
    assert m.align_pair == "modal_id"
    with torch.no_grad():
        d = m.diagnostics(ctx)
    assert "cross_modal_retrieval" not in d and 0.0 <= d["modal_id_retrieval"] <= 1.0
    assert sum(d[f"weight_{s}"] for s in ("id", "text")) == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------- router expert death and the load-balancing remedy
def test_switch_balance_loss_is_one_when_balanced_and_e_when_one_expert_takes_all() -> None:
    """Switch's auxiliary loss E sum_e f_e P_e: 1 for an even spread, E for one expert with every row at gate 1,
    and one gradient step on the logits moves gate mass from the overloaded expert to the others."""
    from modalrec.nn.routing import switch_balance_loss

    n_experts = 4
    uniform = torch.full((10, n_experts), 1 / n_experts)
    uniform[torch.arange(10), torch.arange(10) % n_experts] += 1e-3  # argmax spread evenly over the experts
    assert abs(switch_balance_loss(uniform).item() - 1.0) < 1e-2
    assert switch_balance_loss(torch.eye(n_experts)[torch.zeros(10, dtype=torch.long)]).item() == n_experts
    logits = torch.randn(64, n_experts, generator=torch.Generator().manual_seed(0))
    logits[:, 0] += 2.0  # expert 0 takes most rows
    logits.requires_grad_()
    before = torch.softmax(logits, -1).mean(0)
    switch_balance_loss(torch.softmax(logits, -1)).backward()
    after = torch.softmax(logits.detach() - 1.0 * logits.grad, -1).mean(0)
    assert after[0] < before[0] and (after[1:] > before[1:]).all()


def test_a_load_balancing_loss_keeps_every_expert_in_use(ctx: DataContext) -> None:
    """Without a balance loss the low-temperature router starves experts (top-1 load under 10 %); with Switch's
    auxiliary loss (balance_coef 0.01) every expert keeps 15-35 % of the rows. Loads read by the diagnostics."""
    loads = {}
    for name, overrides in (("none", {}), ("switch", {"balance_coef": 0.01, "balance_form": "switch"})):
        history = train(model(ctx, mode="mmd", experts=4, **overrides), ctx, epochs=10)
        loads[name] = [history[-1][f"load_{k}"] for k in range(4)]
        assert abs(sum(loads[name]) - 1.0) < 1e-6
        assert all(history[-1][f"logit_gap_{k}"] <= 0 for k in range(4))
    assert min(loads["none"]) < 0.1
    assert all(0.15 <= load <= 0.35 for load in loads["switch"]), loads


def cross_attention_inputs(batch: int = 6, length: int = 20) -> tuple[list[torch.Tensor], torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    latents = [torch.randn(batch, length, 32, generator=g, requires_grad=True) for _ in range(2)]
    lengths = torch.tensor([20, 13, 1, 7, 20, 2])[:batch]
    return latents, torch.arange(length) < lengths[:, None]


def test_cross_attention_forward_is_each_modality_attended_and_each_head_normalised(ctx: DataContext) -> None:
    """The mask built once and the H LayerNorms applied as one: the per-modality, per-head computation it
    replaced (same dropout draws in training, same values and gradients)."""
    attention = model(ctx, mode="mmd").cross_attention.train()
    with torch.no_grad():  # LayerNorm parameters off their init, so each head's own affine map matters
        for norm in attention.head_norms:
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.5, 0.5)
    latents, valid = cross_attention_inputs()

    def run(reference: bool) -> list[torch.Tensor]:
        torch.manual_seed(5)
        if reference:
            heads = attention.split_heads(latents)
            mixed = torch.cat([attention.attend(heads, valid, m) for m in range(2)], dim=-1)
            out = torch.stack([norm(mixed[:, j]) for j, norm in enumerate(attention.head_norms)], dim=1)
        else:
            out = attention(latents, valid)
        grads = torch.autograd.grad((out * torch.linspace(-1, 1, out.shape[-1])).sum(), [*latents, *attention.parameters()])
        return [out, *grads]

    for got, want in zip(run(False), run(True)):
        assert (got - want).norm().item() <= 1e-6 * want.norm().item()


def test_uniform_attention_dropout_masks(ctx: DataContext) -> None:
    """xattn_dropout_masks=uniform: torch's attention at evaluation (and at p = 0), seeded draws in training that
    repeat, are not evaluation's, and average out to it (unbiased)."""
    torch_masks = model(ctx, mode="mmd").cross_attention
    uniform = model(ctx, mode="mmd", xattn_dropout_masks="uniform").cross_attention
    assert uniform.dropout_masks == "uniform" and torch_masks.dropout_masks == "torch"
    latents, valid = cross_attention_inputs()
    with torch.no_grad():
        want = torch_masks.eval()(latents, valid)
        torch.testing.assert_close(uniform.eval()(latents, valid), want)
        uniform.train()
        torch.manual_seed(0)
        one = uniform(latents, valid)
        torch.manual_seed(0)
        assert torch.equal(uniform(latents, valid), one) and not torch.allclose(one, want)
        # unbiased: modality 0's attention term (its output less the residual query) averages to evaluation's
        heads = uniform.split_heads(latents)  # fixed inputs (split_heads drops out too)
        uniform.eval()
        reference = uniform.attend(heads, valid, 0) - heads[0]
        uniform.train()
        mean = torch.stack([uniform.attend(heads, valid, 0) for _ in range(400)]).mean(0) - heads[0]
        unscaled = mean * (1 - uniform.dropout)  # what masks without the 1 / (1 - p) rescaling would give
    error = (mean - reference).norm().item() / reference.norm().item()
    assert error < 0.05 < (unscaled - reference).norm().item() / reference.norm().item(), error
    banded = model(ctx, mode="mmd", xattn_window=4, xattn_dropout_masks="uniform").cross_attention
    torch.testing.assert_close(
        banded.eval()(latents, valid), model(ctx, mode="mmd", xattn_window=4).cross_attention.eval()(latents, valid)
    )


def test_per_item_bottleneck_terms_equal_the_per_position_computation(ctx: DataContext) -> None:
    """encode_per_item: the KL once per distinct item (the KL weighted by the item's share of the rows) and
    the alignment's rows picked before normalising give the latents, KL, alignment and gradients that the per-position
    computation gives (same noise draws; dropout off so that the reference can redraw them)."""
    m = model(ctx, mode="mmd", dropout=0.0, projection_dropout=0.0, fusion_dropout=0.0, bandwidth_rows=16).train()
    b = next(iter(make_train_batches("sequences", ctx, batch_size=12, seed=0, max_len=20, target="all")))
    seq, lengths = b["seq"], b["lengths"]
    seen: dict[str, list[torch.Tensor]] = {}
    m.cross_attention.register_forward_hook(lambda mod, inputs, out: seen.update(latents=inputs[0]))
    params = [p for p in m.parameters() if p.requires_grad]
    torch.manual_seed(7)
    _, terms = m.forward_states(seq, lengths)
    got = [*seen["latents"], terms["kl"], terms["align"]]
    got_grads = torch.autograd.grad(terms["kl"] + terms["align"], params, allow_unused=True)

    rows = (torch.arange(seq.shape[1]) < lengths[:, None]).nonzero(as_tuple=True)
    items, inverse = torch.unique(seq, return_inverse=True)
    assert len(items) < len(rows[0])  # items repeat: per item is not per position
    torch.manual_seed(7)
    latents, means, kls = [], [], []
    for name, bottleneck in zip(m.modalities, m.bottlenecks):
        mu, logvar = (t[inverse] for t in bottleneck.posterior(m.project(name, items)))
        latents.append(torch.nn.functional.normalize(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar), dim=-1))
        means.append(torch.nn.functional.normalize(mu, dim=-1)[rows])
        kls.append(gaussian_kl_dims(mu[rows], logvar[rows]).mean(0))
    keep = torch.linspace(0, len(rows[0]) - 1, 16).long()
    kl, align = torch.stack(kls).mean(0).sum(), m._alignment([x[keep] for x in means])["align"]
    want_grads = torch.autograd.grad(kl + align, params, allow_unused=True)
    for a, w in zip(got, [*latents, kl, align]):
        assert (a - w).norm().item() <= 1e-6 * w.norm().item()
    assert sum(g is not None for g in want_grads) > 4
    for a, w in zip(got_grads, want_grads):
        assert (a is None) == (w is None)
        if a is not None and w is not None:
            assert (a - w).norm().item() <= 1e-5 * w.norm().item()


def shared_offset(m: FindRec, scale: float = 0.1) -> FindRec:
    """Give every modality's posterior mean one common offset (the bias of mu), larger than the items' spread:
    latents start near one shared point, as FindRec-mmd's reached on ML-1M-MM."""
    p = m.config.modal_dim
    offset = scale * torch.randn(p, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for bottleneck in m.bottlenecks:
            bottleneck.encoder[-1].bias[:p] = offset
    return m


def test_contrastive_alignment_is_opt_in_log_n_at_collapse_and_part_of_the_loss(ctx: DataContext) -> None:
    b = next(iter(make_train_batches("sequences", ctx, batch_size=16, seed=0, max_len=20, target="all")))
    torch.manual_seed(3)
    assert "align_contrastive" not in model(ctx, mode="mmd").loss(b)  # off in every preset
    m = model(ctx, mode="mmd", align_contrastive=0.5, bandwidth_rows=10_000)  # every valid position aligned
    p = m.config.modal_dim
    with torch.no_grad():  # total collapse: every item's mean is the same point in both modalities
        for bottleneck in m.bottlenecks:
            bottleneck.encoder[-1].weight[:p] = 0.0
        shared_offset(m)
    torch.manual_seed(3)
    terms = m.loss(b)
    n = len(torch.unique(b["seq"][b["seq"] != ctx.n_items]))
    assert terms["align"].item() == pytest.approx(0.0, abs=1e-6)  # the MMD's collapsed minimum
    assert terms["align_contrastive"].item() == pytest.approx(math.log(n), rel=1e-5)
    expected = terms["ce"] + m.config.loss_weight * (
        terms["kl_objective"] + m.config.stein_weight * terms["align"] + 0.5 * terms["align_contrastive"]
    )
    torch.testing.assert_close(terms["loss"], expected)
    with torch.no_grad():
        d = m.eval().diagnostics(ctx)
    assert d["latent_cosine"] == pytest.approx(1.0, abs=1e-5) and d["kl_item_share"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="align_contrastive"):
        model(ctx, mode="mmd", modalities=["text"], align_contrastive=1.0)
    with pytest.raises(ConfigError, match="align_temperature"):
        model(ctx, mode="mmd", align_temperature=0.0)


def test_contrastive_alignment_spreads_latents_that_the_mmd_lets_collapse(ctx: DataContext) -> None:
    """From latents near one shared point (mean cosine ~0.9): 3 epochs of mode=mmd move them closer together and
    sampled z lose their item; with the cross-modal InfoNCE added they spread, z finds its item and text finds
    the same item's image far more often."""
    mmd_only = train(shared_offset(model(ctx, mode="mmd")), ctx, epochs=3)
    contrastive = train(shared_offset(model(ctx, mode="mmd", align_contrastive=1.0)), ctx, epochs=3)
    assert mmd_only[0]["latent_cosine"] > 0.8 and mmd_only[0] == {
        k: v for k, v in contrastive[0].items() if k != "align_contrastive"
    }
    assert mmd_only[-1]["latent_cosine"] > mmd_only[0]["latent_cosine"]
    assert mmd_only[-1]["z_item_retrieval"] < mmd_only[0]["z_item_retrieval"]
    assert contrastive[-1]["latent_cosine"] < 0.5 * contrastive[0]["latent_cosine"]
    assert contrastive[-1]["z_item_retrieval"] > 3 * mmd_only[-1]["z_item_retrieval"]
    assert contrastive[-1]["cross_modal_retrieval"] > mmd_only[-1]["cross_modal_retrieval"] + 0.2
    assert contrastive[-1]["align_contrastive"] < 0.5 * contrastive[0]["align_contrastive"]


def test_latent_spread_diagnostics_are_in_range(ctx: DataContext) -> None:
    with torch.no_grad():
        d = model(ctx, mode="mmd").eval().diagnostics(ctx)
    assert -1.0 <= d["latent_cosine"] < 0.9 and 0.0 <= d["kl_item_share"] <= 1.0
