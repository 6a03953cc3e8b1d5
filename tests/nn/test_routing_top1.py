"""Sparse top-1 expert routing (``SharedExperts(top1=True)``, FindRec's ``expert_routing=top1``, issue #15 speed):
each row goes through its largest-gate expert only, scaled by that gate; the router still gets a gradient."""

from __future__ import annotations

import pytest
import torch

from modalrec.nn.routing import SharedExperts


def inputs(dtype: torch.dtype, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 5, 7, 12, generator=g, dtype=dtype)
    logits = torch.randn(3, 5, 7, 4, generator=g, dtype=dtype)
    logits[..., 2] -= 5.0  # expert 2 is never the largest: it gets no rows
    return x.requires_grad_(), torch.softmax(logits / 0.5, -1).requires_grad_()


def step(experts: SharedExperts, x: torch.Tensor, gates: torch.Tensor, seed: int = 2) -> list[torch.Tensor]:
    """Output and the gradients of x, the gates and every parameter for a fixed linear read-out."""
    for t in (x, gates):
        t.grad = None
    experts.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the dropout draws
    out = experts(x, gates)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    (out * weights).sum().backward()
    grads = [x.grad, gates.grad, *(p.grad for p in experts.parameters())]
    return [out.detach(), *(torch.zeros(()) if g is None else g for g in grads)]


def pair(dtype: torch.dtype, p: float = 0.2, fused: bool = True) -> tuple[SharedExperts, SharedExperts]:
    """(dense, top1) experts with the same weights."""
    torch.manual_seed(0)
    dense = SharedExperts(12, 10, 4, dropout=p, fused=fused).to(dtype)
    top1 = SharedExperts(12, 10, 4, dropout=p, fused=fused, top1=True).to(dtype)
    top1.load_state_dict(dense.state_dict())
    return dense, top1


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_each_row_is_its_argmax_expert_times_its_gate(dtype: torch.dtype) -> None:
    dense, top1 = pair(dtype)
    dense.eval(), top1.eval()
    x, gates = inputs(dtype)
    choice = gates.argmax(-1, keepdim=True)
    every = dense.expert_outputs(x)  # [..., E, d], each unit-norm
    want = gates.gather(-1, choice) * every.gather(-2, choice.unsqueeze(-1).expand(*choice.shape, 10)).squeeze(-2)
    torch.testing.assert_close(top1(x, gates), want, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_hot_gates_give_the_dense_mixture_and_its_gradients(dtype: torch.dtype) -> None:
    """Where the router is one-hot the two routings are the same function of x and of every expert."""
    dense, top1 = pair(dtype)
    dense.eval(), top1.eval()
    x, gates = inputs(dtype)
    one_hot = torch.nn.functional.one_hot(gates.argmax(-1), 4).to(dtype).requires_grad_()
    want, got = step(dense, x, one_hot), step(top1, x, one_hot)
    tol = 1e-6 if dtype == torch.float32 else 1e-13
    for i, (a, b) in enumerate(zip(got, want)):
        if i == 2:  # the gates: dense differentiates every gate, top-1 only the chosen one
            chosen = one_hot.detach().bool()
            torch.testing.assert_close(a[chosen], b[chosen], rtol=tol, atol=tol)
            assert torch.equal(a[~chosen], torch.zeros_like(a[~chosen]))
        else:
            assert (a - b).norm().item() <= tol * max(b.norm().item(), 1.0)


def test_the_router_learns_through_the_chosen_gate_and_idle_experts_get_zero_gradients() -> None:
    _, top1 = pair(torch.float32)
    top1.train()
    x, gates = inputs(torch.float32)
    got = step(top1, x, gates)
    d_gates = got[2]
    chosen = torch.nn.functional.one_hot(gates.argmax(-1), 4).bool()
    assert (d_gates[chosen] != 0).float().mean() > 0.9 and torch.equal(d_gates[~chosen], torch.zeros_like(d_gates[~chosen]))
    params = dict(top1.named_parameters())
    idle = [top1.experts[2].weight.grad, top1.experts[2].bias.grad]
    assert all(g is not None and torch.equal(g, torch.zeros_like(g)) for g in idle)
    assert params["experts.0.weight"].grad is not None and params["experts.0.weight"].grad.abs().sum() > 0
    # through a softmax router, every logit moves: the chosen one up where its expert helps, the others down
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(5), requires_grad=True)
    h = torch.randn(6, 12, generator=torch.Generator().manual_seed(6))
    top1.eval()(h, torch.softmax(logits / 0.5, -1)).sum().backward()
    assert logits.grad is not None and (logits.grad != 0).all()


@pytest.mark.parametrize("train", [True, False])
def test_fused_top1_equals_unfused_with_the_same_dropout_draws(train: bool) -> None:
    _, fused = pair(torch.float64, fused=True)
    _, plain = pair(torch.float64, fused=False)
    fused.train(train), plain.train(train)
    x, gates = inputs(torch.float64)
    want, got = step(plain, x, gates), step(fused, x, gates)
    for a, b in zip(got, want):
        assert (a - b).norm().item() <= 1e-13 * max(b.norm().item(), 1.0)
    if train:  # dropout was drawn
        assert not torch.allclose(got[0], step(fused.eval(), x, gates)[0])


def test_top1_gradcheck_and_bf16_autocast() -> None:
    _, top1 = pair(torch.float64, p=0.0)
    x = torch.randn(9, 12, dtype=torch.float64, requires_grad=True)
    logits = torch.randn(9, 4, dtype=torch.float64)
    logits[torch.arange(9), torch.arange(9) % 4] += 3.0  # clear winners: the argmax is stable under the probes
    gates = torch.softmax(logits, -1).requires_grad_()
    assert torch.autograd.gradcheck(top1, (x, gates))
    plain = SharedExperts(8, 6, 3, top1=True).train()
    xb = torch.randn(4, 5, 8, requires_grad=True)
    gb = torch.softmax(torch.randn(4, 5, 3), -1).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = plain(xb, gb)
    out.float().sum().backward()
    assert out.shape == (4, 5, 6) and xb.grad is not None and gb.grad is not None
    assert torch.isfinite(xb.grad).all() and torch.isfinite(gb.grad).all()
