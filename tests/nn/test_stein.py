"""RBF kernel derivatives against autograd, Stein kernel forms, KSD sanity, bandwidth, SVGD."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from modalrec.errors import ConfigError
from modalrec.nn.stein import (
    ksd,
    lower_median,
    median_bandwidth,
    median_heuristic,
    mmd,
    paired_kernel_distance,
    rbf_grad_x,
    rbf_grad_y,
    rbf_kernel,
    rbf_trace_xy,
    squared_distances,
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
    assert stein_alignment(
        points(8, 3, 5), points(8, 3, 5), -points(8, 3, 5), -points(8, 3, 5), 1.0, "ksd", "u"
    ).item() == pytest.approx(ksd(points(8, 3, 5), -points(8, 3, 5), 1.0, "u").item())


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


# ---------------------------------------------------------------------- the two-sample discrepancy (MMD)
SCALES = [0.5, 1.0, 2.0]


def alignment(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FindRec's mmd-mode term: multi-bandwidth MMD^2 (V) + paired kernel distance, median bandwidth."""
    bandwidths = median_bandwidth(x, y) * torch.tensor(SCALES, dtype=x.dtype)
    return mmd(x, y, bandwidths) + paired_kernel_distance(x, y, bandwidths)


def test_mmd_matches_its_definition_both_statistics() -> None:
    x, y, h = points(5, 3, 0), points(7, 3, 1), [0.7, 1.5]
    k = lambda a, b: (rbf_kernel(a, b, 0.7) + rbf_kernel(a, b, 1.5)) / 2  # noqa: E731
    v = k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    torch.testing.assert_close(mmd(x, y, h), v)
    off = lambda a: (k(a, a).sum() - k(a, a).diagonal().sum()) / (len(a) * (len(a) - 1))  # noqa: E731
    torch.testing.assert_close(mmd(x, y, h, "u"), off(x) + off(y) - 2 * k(x, y).mean())
    torch.testing.assert_close(paired_kernel_distance(x, y[:5], h), 1 - k(x, y[:5]).diagonal().mean())
    with pytest.raises(ConfigError, match="'v' .* or 'u'"):
        mmd(x, y, h, "w")


def kernel_definition_mmd(x: torch.Tensor, y: torch.Tensor, h: list[float], statistic: str) -> torch.Tensor:
    """The MMD^2 written with the kernel matrices under autograd (what :func:`mmd` computed before its own backward)."""
    k = lambda a, b: sum(rbf_kernel(a, b, s) for s in h) / len(h)  # noqa: E731
    if statistic == "v":
        return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    off = lambda a: (k(a, a).sum() - k(a, a).diagonal().sum()) / (len(a) * (len(a) - 1))  # noqa: E731
    return off(x) + off(y) - 2 * k(x, y).mean()


@pytest.mark.parametrize("statistic", ["v", "u"])
def test_mmd_values_and_gradients_equal_the_kernel_definition(statistic: str) -> None:
    """The hand-written backward: float64 to rounding; float32 against the float64 truth as close as the autograd
    definition in float32 is. Unit-norm rows at the median bandwidth (as FindRec aligns), n != m."""
    x64, y64 = F.normalize(points(70, 16, 0), dim=1), F.normalize(points(50, 16, 1, shift=0.3), dim=1)
    h = (median_bandwidth(x64, y64) * torch.tensor(SCALES, dtype=f64)).tolist()
    results = {}
    for name, dtype, fn in (
        ("truth", f64, kernel_definition_mmd),
        ("new64", f64, mmd),
        ("old32", torch.float32, kernel_definition_mmd),
        ("new32", torch.float32, mmd),
    ):
        x, y = x64.detach().to(dtype).requires_grad_(), y64.detach().to(dtype).requires_grad_()
        value = fn(x, y, h, statistic)
        value.backward()
        results[name] = [value.detach().double(), x.grad.double(), y.grad.double()]
    for got, want in zip(results["new64"], results["truth"]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-15)
    for got, old, want in zip(results["new32"], results["old32"], results["truth"]):
        assert (got - want).norm() <= 4 * (old - want).norm() + 1e-6 * want.norm()
    # the caller's cross distances are those it would compute
    x, y = x64.clone().requires_grad_(), y64.clone().requires_grad_()
    shared = mmd(x, y, h, statistic, cross_distances=squared_distances(x64, y64))
    torch.testing.assert_close(shared, results["new64"][0], rtol=0, atol=0)


def test_mmd_gradcheck_and_median_heuristic() -> None:
    x, y = points(6, 3, 0).requires_grad_(), points(4, 3, 1).requires_grad_()
    for statistic in ("v", "u"):
        assert torch.autograd.gradcheck(lambda a, b, s=statistic: mmd(a, b, [0.7, 1.5], s), (x, y))
    d2 = squared_distances(x.detach(), y.detach())
    assert torch.equal(median_heuristic(d2, 1.5, 0.1, 10.0), median_bandwidth(x, y, 1.5, 0.1, 10.0))
    with pytest.raises(ConfigError, match="at least 2 points"):
        mmd(x[:1], y, [1.0], "u")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 2, 7, 512 * 512])
def test_lower_median_is_torch_median(dtype: torch.dtype, n: int) -> None:
    values = torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(n)).to(dtype) / 7  # with ties
    got = lower_median(values.view(-1, 1) if n % 2 else values)
    assert got.dtype == dtype and torch.equal(got, values.median())


def test_alignment_is_monotone_in_the_shift_between_two_gaussians() -> None:
    """x ~ N(0, I) in 8-d, 300 points. The MMD^2 of an independent sample of N(delta e_1, I) and FindRec's term for
    the matched sample y_i = x_i + 0.1 noise + delta e_1 (two modalities of the same items) both grow with delta."""
    x = points(300, 8, 0)
    independent, noise = points(300, 8, 1), 0.1 * points(300, 8, 2)
    shift = torch.zeros(8, dtype=f64)
    shift[0] = 1.0
    fixed_h = torch.tensor(SCALES, dtype=f64) * median_bandwidth(x, independent)
    distribution, matched = [], []
    for delta in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
        distribution.append(mmd(x, independent + delta * shift, fixed_h).item())
        matched.append(alignment(x, x + noise + delta * shift).item())
    assert distribution == sorted(distribution) and distribution[0] < 0.01 < distribution[-1], distribution
    assert matched == sorted(matched) and matched[0] < matched[-1] / 20, matched


def test_alignment_is_minimal_exactly_at_equality() -> None:
    x = points(64, 8, 0)
    assert alignment(x, x.clone()).item() == pytest.approx(0.0, abs=1e-12)
    assert mmd(x, x[torch.randperm(64)], [1.0]).item() == pytest.approx(0.0, abs=1e-12)  # V: same distribution
    for seed in range(1, 6):  # any other point set scores above 0
        y = x + 0.05 * points(64, 8, seed)
        assert alignment(x, y).item() > 1e-4
        assert mmd(x, y, [0.5, 1.0, 2.0]).item() > 0


def test_alignment_is_bounded_below_even_when_optimised_adversarially() -> None:
    """No score network to game: an optimiser minimising the term over both point sets never gets below 0 (V),
    or below -2 / (n - 1) (the unbiased statistic's bound); the Stein forms of two free score networks do."""
    torch.manual_seed(0)
    x = points(32, 4, 0).requires_grad_()
    y = points(32, 4, 1).add(3.0).requires_grad_()
    opt = torch.optim.Adam([x, y], lr=0.05)
    low_v, low_u = math.inf, math.inf
    for _ in range(300):
        v = alignment(x, y)
        u = mmd(x, y, [0.3, 1.0], "u")
        opt.zero_grad()
        (v + u).backward()
        opt.step()
        low_v, low_u = min(low_v, v.item()), min(low_u, u.item())
    assert low_v >= -1e-12 and low_u >= -2 / 31
    # the textbook KSD across two sets with anti-aligned scores s_y = -c s_x has no lower bound
    a, b, s = points(32, 4, 2), points(32, 4, 3), torch.ones(32, 4, dtype=f64)
    ksd_values = [stein_alignment(a, b, s, -c * s, 1.0, "ksd").item() for c in (1.0, 10.0, 100.0)]
    assert ksd_values == sorted(ksd_values, reverse=True) and ksd_values[-1] < -10


def test_alignment_gradient_pulls_matched_pairs_together() -> None:
    """Two modalities of the same 100 items (y_i = x_i + noise): gradient steps on the term shrink every matched
    pair's distance on average and make y_i the nearest neighbour of x_i more often."""
    x = points(100, 16, 0)
    y = (x + 0.8 * points(100, 16, 1)).requires_grad_()

    def nearest_is_match(a: torch.Tensor, b: torch.Tensor) -> float:
        return (torch.cdist(a, b).argmin(1) == torch.arange(len(a))).double().mean().item()

    before_d, before_r = (x - y).norm(dim=1).detach(), nearest_is_match(x, y.detach())
    opt = torch.optim.SGD([y], lr=20.0)
    for _ in range(50):
        opt.zero_grad()
        alignment(x, y).backward()
        opt.step()
    after_d = (x - y).norm(dim=1).detach()
    assert after_d.mean() < 0.6 * before_d.mean()
    assert (after_d < before_d).all()
    assert nearest_is_match(x, y.detach()) > before_r
