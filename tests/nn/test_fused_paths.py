"""The hand-differentiated paths FindRec trains through (issue #15, speed): each is the computation it replaced,
same values and same gradients (float rounding), same dropout draws under a seed."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from modalrec.nn.routing import SharedExperts
from modalrec.nn.unit import unit_norm


def rows_with_degenerate_norms(dtype: torch.dtype) -> torch.Tensor:
    x = torch.randn(40, 6, 17, generator=torch.Generator().manual_seed(0), dtype=dtype)
    x[3, 2] = 0.0  # a zero row (the norm is clamped at eps: no radial gradient)
    x[5, 1] = 1e-14  # below eps
    x[7, 0, 3:] = 0.0
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_unit_norm_is_f_normalize_with_its_gradient(dtype: torch.dtype) -> None:
    x = rows_with_degenerate_norms(dtype)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=dtype)
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    want = F.normalize(a, dim=-1)
    (want * g).sum().backward()
    got = unit_norm(b)
    (got * g).sum().backward()
    assert torch.equal(got, want)
    assert b.grad is not None and a.grad is not None
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-14}
    torch.testing.assert_close(b.grad, a.grad, **tol)  # the rows below eps (gradient g / eps) by rtol


def test_unit_norm_gradcheck_and_no_graph_without_grad() -> None:
    x = torch.randn(5, 4, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(unit_norm, (x,))
    with torch.no_grad():
        assert torch.equal(unit_norm(x), F.normalize(x, dim=-1))


def experts_step(fused: bool, train: bool, dtype: torch.dtype, p: float = 0.2) -> list[torch.Tensor]:
    """Output and every gradient of one forward/backward through SharedExperts (seeded init, input and dropout)."""
    torch.manual_seed(0)
    experts = SharedExperts(12, 10, 4, dropout=p, fused=fused).to(dtype).train(train)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, 7, 12, generator=g, dtype=dtype)
    x[0, 0, 0] = -1.0  # inputs whose pre-activations are all <= 0 for some experts: zero outputs, clamped norms
    x = x.requires_grad_()
    gates = torch.softmax(torch.randn(3, 5, 7, 4, generator=g, dtype=dtype) / 0.1, -1).requires_grad_()
    weights = torch.randn(3, 5, 7, 10, generator=g, dtype=dtype)
    with torch.no_grad():
        experts.experts[0].bias.fill_(-5.0)  # expert 0 mostly silent: many zero rows
    torch.manual_seed(2)  # the dropout draws
    out = experts(x, gates)
    (out * weights).sum().backward()
    grads = [x.grad, gates.grad, *(p.grad for p in experts.parameters())]
    return [out.detach(), *(grad for grad in grads if grad is not None)]


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_experts_equal_relu_dropout_normalize_and_gate_product(train: bool, dtype: torch.dtype) -> None:
    want = experts_step(fused=False, train=train, dtype=dtype)
    got = experts_step(fused=True, train=train, dtype=dtype)
    assert len(got) == len(want) == 3 + 2 * 4  # output, x, gates, each expert's weight and bias
    tol = 1e-6 if dtype == torch.float32 else 1e-14  # relative L2 error of each tensor (sums of ~100 rounded terms)
    for a, b in zip(got, want):
        assert (a - b).norm().item() <= tol * b.norm().item()
    if train:  # the dropout was drawn (the same draws: the outputs agree; without them they would not)
        assert not torch.allclose(want[0], experts_step(fused=False, train=False, dtype=dtype)[0])


def test_fused_experts_at_full_dropout_and_gradcheck() -> None:
    zero = experts_step(fused=True, train=True, dtype=torch.float64, p=1.0)
    assert torch.equal(zero[0], torch.zeros_like(zero[0])) and torch.equal(zero[1], torch.zeros_like(zero[1]))
    experts = SharedExperts(6, 5, 3, dropout=0.0).double()
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    gates = torch.softmax(torch.randn(4, 3, dtype=torch.float64), -1).requires_grad_()
    assert torch.autograd.gradcheck(experts, (x, gates))


def test_fused_experts_under_bf16_autocast_give_each_input_its_dtype() -> None:
    experts = SharedExperts(8, 6, 3).train()
    x = torch.randn(4, 5, 8, requires_grad=True)
    gates = torch.softmax(torch.randn(4, 5, 3), -1).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = experts(x, gates)
    out.float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float32 and gates.grad is not None
    assert torch.isfinite(x.grad).all() and torch.isfinite(gates.grad).all()
