"""Lorentz geometry (float64) and Riemannian SGD on it (spec hdrm.md section 9)."""

from __future__ import annotations

import geoopt
import pytest
import torch

from modalrec.nn.hyperbolic import MAX_SQDIST, Lorentz, arcosh, lorentz_matmul, minkowski_dot

D = 9


def _tangent0(n: int, norm: float | torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Tangent vectors at the origin (u_0 = 0) with the given Euclidean norms."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, D, generator=g, dtype=torch.float64)
    u[:, 0] = 0
    return u / u.norm(dim=1, keepdim=True) * torch.as_tensor(norm, dtype=torch.float64).reshape(-1, 1)


@pytest.fixture(params=[1.0, 0.5])
def m(request) -> Lorentz:
    return Lorentz(k=request.param)


def test_expmap0_lands_on_the_manifold_and_ignores_u0(m: Lorentz) -> None:
    u = _tangent0(50, torch.linspace(1e-3, 6, 50))
    x = m.expmap0(u)
    # float64 keeps the constraint to rounding of x_0^2 (~1e-16 relative), ~1e-10 absolute at radius 6
    assert ((minkowski_dot(x, x) + m.k).abs() <= 1e-14 * x[:, :1] ** 2).all()
    assert (x[:, 0] > 0).all()
    shifted = u.clone()
    shifted[:, 0] = 3.0
    torch.testing.assert_close(m.expmap0(shifted), x, atol=0, rtol=0)
    torch.testing.assert_close(m.projx(m.projx(x)), m.projx(x))


@pytest.mark.parametrize("stable", [True, False])
def test_log_exp_round_trips(stable: bool) -> None:
    m = Lorentz(stable=stable)
    u = _tangent0(40, torch.linspace(1e-3, 6, 40))
    torch.testing.assert_close(m.logmap0(m.expmap0(u)), u, atol=1e-10 if stable else 1e-7, rtol=1e-10 if stable else 1e-7)
    x = m.expmap0(_tangent0(40, 2.0, seed=1))
    torch.testing.assert_close(m.expmap0(m.logmap0(x)), x, atol=1e-10, rtol=1e-10)
    assert minkowski_dot(m.logmap0(x), m.origin_like(x)).abs().max() == 0  # column 0 is exactly 0


def test_stable_logmap0_resolves_small_radii_in_float32() -> None:
    u = _tangent0(5, 1e-5).float()
    arcosh_path = Lorentz(stable=False).logmap0(Lorentz().expmap0(u))
    stable_path = Lorentz(stable=True).logmap0(Lorentz().expmap0(u))
    torch.testing.assert_close(stable_path, u, rtol=1e-4, atol=0)
    assert (arcosh_path.norm(dim=1) > 10 * u.norm(dim=1)).all()  # the arcosh form cannot see radius 1e-5


def test_distances(m: Lorentz) -> None:
    norms = torch.linspace(0.1, 3.0, 20)
    u = _tangent0(20, norms)
    x = m.expmap0(u)
    # d(o, exp_o(u)) = ||u|| (geodesic from the origin)
    torch.testing.assert_close(m.sqdist(m.origin_like(x), x), norms.double() ** 2, atol=1e-9, rtol=1e-9)
    y = m.expmap0(_tangent0(20, 1.5, seed=2))
    z = m.expmap0(_tangent0(20, 2.5, seed=3))
    torch.testing.assert_close(m.sqdist(x, y), m.sqdist(y, x))
    assert (m.dist(x, z) <= m.dist(x, y) + m.dist(y, z) + 1e-9).all()
    # identical points: the clamp at 1 + eps gives K arcosh(1 + eps)^2, not 0
    expected = m.k * arcosh(torch.tensor(1 + 1e-15, dtype=torch.float64)) ** 2
    torch.testing.assert_close(m.sqdist(x, x), expected.expand(20))
    far = m.expmap0(_tangent0(2, 20.0 * m.k**0.5))
    far[1, 1:] = -far[1, 1:]
    assert m.sqdist(far[:1], far[1:]).item() == MAX_SQDIST


def test_pairwise_matrix_matches_rowwise(m: Lorentz) -> None:
    x, y = m.expmap0(_tangent0(6, 1.0, seed=4)), m.expmap0(_tangent0(11, 2.0, seed=5))
    full = m.sqdist_matrix(x, y)
    for i in range(6):
        torch.testing.assert_close(full[i], m.sqdist(x[i].expand_as(y), y), atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(lorentz_matmul(x, y)[2, 3], minkowski_dot(x[2], y[3], keepdim=False))


def test_tangent_operations(m: Lorentz) -> None:
    x = m.expmap0(_tangent0(30, 1.7, seed=6))
    y = m.expmap0(_tangent0(30, 0.8, seed=7))
    v = m.proju(x, torch.randn(30, D, dtype=torch.float64))
    torch.testing.assert_close(minkowski_dot(x, v), torch.zeros(30, 1, dtype=torch.float64), atol=1e-10, rtol=0)
    rgrad = m.egrad2rgrad(x, torch.randn(30, D, dtype=torch.float64))
    torch.testing.assert_close(minkowski_dot(x, rgrad), torch.zeros(30, 1, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(m.expmap(x, torch.zeros_like(x)), x)
    torch.testing.assert_close(m.expmap(x, m.logmap(x, y)), y, atol=1e-8, rtol=1e-8)
    moved = m.transp(x, y, v)
    torch.testing.assert_close(minkowski_dot(y, moved), torch.zeros(30, 1, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(minkowski_dot(moved, moved), minkowski_dot(v, v), atol=1e-8, rtol=1e-8)
    # exp_x(v) is at distance ||v||_L from x
    step = 0.5 * v / m.tangent_norm(v)
    torch.testing.assert_close(m.dist(x, m.expmap(x, step)), torch.full((30,), 0.5, dtype=torch.float64), atol=1e-8, rtol=0)


def test_riemannian_sgd_keeps_points_on_manifold_and_descends(m: Lorentz) -> None:
    start = m.expmap0(_tangent0(8, 1.0, seed=8))
    target = m.expmap0(_tangent0(8, 2.0, seed=9))
    point = geoopt.ManifoldParameter(start.clone(), manifold=m)
    optimizer = geoopt.optim.RiemannianSGD([point], lr=0.05, momentum=0.9, weight_decay=1e-3)
    losses = []
    for _ in range(30):
        loss = m.sqdist(point, target).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        torch.testing.assert_close(minkowski_dot(point, point), torch.full((8, 1), -m.k, dtype=torch.float64), atol=1e-9, rtol=0)
    assert losses[-1] < 0.1 * losses[0]
    # zero gradient and no decay: the point does not move
    still = geoopt.ManifoldParameter(start.clone(), manifold=m)
    frozen = geoopt.optim.RiemannianSGD([still], lr=0.1, momentum=0.9)
    still.grad = torch.zeros_like(still)
    frozen.step()
    torch.testing.assert_close(still.detach(), start, atol=1e-12, rtol=0)
