"""RBF kernel derivatives against autograd, Stein kernel forms, KSD sanity, bandwidth, SVGD."""

from __future__ import annotations

import math

import pytest
import torch

from modalrec.nn.stein import (
    ksd,
    median_bandwidth,
    rbf_grad_x,
    rbf_grad_y,
    rbf_kernel,
    rbf_trace_xy,
    stein_alignment,
    stein_kernel,
    svgd_direction,
)

f64 = torch.float64


def points(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed), dtype=f64) + shift


def test_rbf_gradients_and_trace_match_autograd() -> None:
    x, y, h = points(3, 5, 0), points(4, 5, 1), 1.3
    gx, gy, trace = rbf_grad_x(x, y, h), rbf_grad_y(x, y, h), rbf_trace_xy(x, y, h)
    for i in range(3):
        for j in range(4):
            xi = x[i].clone().requires_grad_()
            yj = y[j].clone().requires_grad_()
            k = rbf_kernel(xi[None], yj[None], h)[0, 0]
            dx, dy = torch.autograd.grad(k, (xi, yj), create_graph=True)
            torch.testing.assert_close(gx[i, j], dx)
            torch.testing.assert_close(gy[i, j], dy)
            # tr(grad_x grad_y k) = sum_a d^2 k / dx_a dy_a, by double backward
            second = sum(torch.autograd.grad(dx[a], yj, retain_graph=True)[0][a] for a in range(5))
            torch.testing.assert_close(trace[i, j], second)


def test_stein_forms_match_their_definitions_from_the_closed_forms() -> None:
    x, y, sx, sy, h = points(3, 4, 0), points(5, 4, 1), points(3, 4, 2), points(5, 4, 3), 0.9
    k, gx, gy, tr = rbf_kernel(x, y, h), rbf_grad_x(x, y, h), rbf_grad_y(x, y, h), rbf_trace_xy(x, y, h)
    sxsy = sx @ sy.T
    sx_gy = torch.einsum("id,ijd->ij", sx, gy)
    sy_gx = torch.einsum("jd,ijd->ij", sy, gx)
    torch.testing.assert_close(stein_kernel(x, y, sx, sy, h, "ksd"), k * sxsy + sx_gy + sy_gx + tr)
    torch.testing.assert_close(stein_kernel(x, y, sx, sy, h, "findrec_code"), k * sxsy - sy_gx - tr)


def test_findrec_code_form_pinned_to_a_hand_computed_value() -> None:
    # x = (1, 0), y = (0, 0), h = 1: r = (1, 0), ||r||^2 = 1, k = e^-1/2, D = 2
    x, y = torch.tensor([[1.0, 0.0]], dtype=f64), torch.tensor([[0.0, 0.0]], dtype=f64)
    sx, sy = torch.tensor([[2.0, 1.0]], dtype=f64), torch.tensor([[1.0, 3.0]], dtype=f64)
    k = math.exp(-0.5)
    # k sx.sy + k (r.sy)/h^2 + k (||r||^2/h^4 - D/h^2) = k (5 + 1 + (1 - 2)) = 5k
    assert stein_kernel(x, y, sx, sy, 1.0, "findrec_code").item() == pytest.approx(5 * k, rel=1e-12)
    # textbook: k sx.sy + k sx.r - k sy.r + k (D - ||r||^2) = k (5 + 2 - 1 + 1) = 7k
    assert stein_kernel(x, y, sx, sy, 1.0, "ksd").item() == pytest.approx(7 * k, rel=1e-12)


def test_ksd_is_near_zero_on_target_samples_and_large_off_target() -> None:
    h = 1.5
    on_target = [ksd(z, -z, h).item() for z in (points(50, 2, 0), points(400, 2, 1))]
    shifted = points(400, 2, 2, shift=1.0)
    off_target = ksd(shifted, -shifted, h).item()
    assert on_target[1] < on_target[0]  # decreasing with n (V-statistic bias ~ 1/n)
    assert on_target[1] < 0.05 and off_target > 10 * on_target[1]
    for seed in range(5):  # the textbook V-statistic is a Gram-matrix mean: never negative
        z, s = points(20, 3, 10 + seed), points(20, 3, 20 + seed)
        assert ksd(z, s, 0.7).item() >= -1e-12
    assert stein_alignment(points(8, 3, 5), points(8, 3, 5), -points(8, 3, 5), -points(8, 3, 5), 1.0, "ksd", "u").item() == pytest.approx(
        ksd(points(8, 3, 5), -points(8, 3, 5), 1.0, "u").item()
    )


def test_findrec_code_form_can_be_negative() -> None:
    x, y = points(16, 8, 0) * 0.1, points(16, 8, 1) * 0.1
    assert stein_alignment(x, y, torch.zeros_like(x), torch.zeros_like(y), 1.0, "findrec_code").item() < 0


def test_median_bandwidth_value_clamps_and_carries_no_gradient() -> None:
    x = torch.tensor([[0.0, 0.0], [3.0, 0.0]], dtype=f64, requires_grad=True)
    y = torch.tensor([[0.0, 4.0], [0.0, 0.0]], dtype=f64, requires_grad=True)
    # D^2 = [[16, 0], [25, 9]] -> lower median 9 -> h = sqrt(9 / 2)
    h = median_bandwidth(x, y)
    assert h.item() == pytest.approx(math.sqrt(4.5))
    assert not h.requires_grad
    assert median_bandwidth(x * 1e-3, y * 1e-3).item() == pytest.approx(0.1)
    assert median_bandwidth(x * 1e3, y * 1e3).item() == pytest.approx(10.0)
    assert median_bandwidth(x, y, factor=2.0).item() == pytest.approx(2 * math.sqrt(4.5))
    # the gradient of a kernel built with h only flows through x and y
    rbf_kernel(x, y, h).sum().backward()
    assert x.grad is not None and h.grad is None


def test_paired_rbf_is_one_minus_the_mean_paired_kernel() -> None:
    x, y = points(6, 3, 0), points(6, 3, 1)
    expected = 1 - rbf_kernel(x, y, 0.8).diagonal().mean()
    torch.testing.assert_close(stein_alignment(x, y, x, y, 0.8, "paired_rbf"), expected)


def test_svgd_step_moves_particles_toward_the_target() -> None:
    z = points(200, 2, 0) * 0.3 + 2.0  # far from N(0, I): mean 2, variance ~0.09
    moved = z + 0.1 * svgd_direction(z, -z, median_bandwidth(z, z))
    assert (moved.mean(0).abs() < z.mean(0).abs()).all()  # mean pulled toward 0
    assert (moved.var(0) > z.var(0)).all()  # spread pushed toward 1 by the kernel repulsion
