"""The Lorentz (hyperboloid) model of hyperbolic space, as HGCN / HGCF / HDRM use it.

Points are rows x in R^D (D = d + 1, coordinate 0 time-like) on
H = {x : <x, x>_L = -K, x_0 > 0}, with the Minkowski product <x, y>_L = -x_0 y_0 + sum_{k>=1} x_k y_k
and K = 1 / c (c = the curvature's magnitude). The origin is o = (sqrt K, 0, ..., 0); tangent
vectors at o have u_0 = 0, so T_oH is plain Euclidean R^d, where HGCF propagates and HDRM diffuses.

The formulas and clamps follow the HGCN/HGCF code the HDRM release uses (spec hdrm.md section 2):
``projx`` recomputes x_0 from the spatial part (the constraint holds by construction), cosh/sinh
arguments are clamped to [-15, 15], distances square-clamped to <= 50 with the arcosh argument
>= 1 + eps, and arcosh is evaluated in float64. Two deliberate differences, both exact on H:

- ``logmap0`` takes the radius as asinh(||x_{1:}|| / sqrt K) instead of arcosh(x_0 / sqrt K): the
  arcosh form cannot resolve radii below ~5e-4 in float32 (x_0 rounds to 1); ``stable=False``
  restores it.
- the exp map and the Euclidean-to-Riemannian gradient divide by sqrt K / K where HGCN's code is
  only right for K = 1.

The class is a ``geoopt`` manifold, so ``geoopt.ManifoldParameter`` tables on it are trained by
``geoopt.optim.RiemannianSGD`` / ``RiemannianAdam`` (which call ``egrad2rgrad``, ``retr`` and
``transp`` below). Methods take the point first, as geoopt does. Use float64 where the constraint
must hold tightly: float32 loses it like x_0^2 * 1e-7 (|<x,x>_L + 1| ~ 1e-3 at radius 5).
"""

from __future__ import annotations

import geoopt
import torch

MIN_NORM = 1e-15
MAX_NORM = 1e6
MAX_SQDIST = 50.0
MAX_COSH_ARG = 15.0
EPS = {torch.float32: 1e-7, torch.float64: 1e-15}


def _eps(x: torch.Tensor) -> float:
    return EPS.get(x.dtype, 1e-7)


def arcosh(x: torch.Tensor) -> torch.Tensor:
    """acosh computed in float64 and cast back (its gradient 1 / sqrt(x^2 - 1) is autograd's)."""
    return torch.acosh(x.double()).to(x.dtype)


def cosh(x: torch.Tensor) -> torch.Tensor:
    return torch.cosh(x.clamp(-MAX_COSH_ARG, MAX_COSH_ARG))


def sinh(x: torch.Tensor) -> torch.Tensor:
    return torch.sinh(x.clamp(-MAX_COSH_ARG, MAX_COSH_ARG))


def minkowski_dot(x: torch.Tensor, y: torch.Tensor, keepdim: bool = True) -> torch.Tensor:
    """<x, y>_L = -x_0 y_0 + sum_{k>=1} x_k y_k, row-wise."""
    prod = x * y
    out = prod[..., 1:].sum(-1, keepdim=True) - prod[..., :1]
    return out if keepdim else out.squeeze(-1)


def lorentz_matmul(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """All pairwise Minkowski products [N, M] of rows of x [N, D] and y [M, D] as one GEMM:
    (x J) y^T with J = diag(-1, 1, ..., 1)."""
    return x[:, 1:] @ y[:, 1:].T - x[:, :1] @ y[:, :1].T


class Lorentz(geoopt.Manifold):
    """Hyperboloid of curvature -1/K with HGCN's numerics (see the module docstring)."""

    ndim = 1
    reversible = False
    name = "Lorentz"

    def __init__(self, k: float = 1.0, stable: bool = True):
        super().__init__()
        if k <= 0:
            raise ValueError(f"Lorentz: K = 1/c must be > 0, got {k}")
        # A plain float, not geoopt's float32 ``k`` buffer, so float64 maths stays float64.
        self.k = float(k)
        self.sqrt_k = self.k**0.5
        self.stable = stable

    # ----------------------------------------------------------------- points and tangents
    def origin_like(self, x: torch.Tensor) -> torch.Tensor:
        """The origin o = (sqrt K, 0, ..., 0) with x's shape, dtype and device."""
        o = torch.zeros_like(x)
        o[..., 0] = self.sqrt_k
        return o

    def projx(self, x: torch.Tensor) -> torch.Tensor:
        """Onto H by recomputing x_0 = sqrt(K + ||x_{1:}||^2) (the spatial part is kept)."""
        space = x[..., 1:]
        time = (self.k + space.pow(2).sum(-1, keepdim=True)).clamp_min(_eps(x)).sqrt()
        return torch.cat([time, space], -1)

    def proju(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Onto T_xH by setting u_0 = <x_{1:}, u_{1:}> / x_0 (so <x, u>_L = 0)."""
        time = (x[..., 1:] * u[..., 1:]).sum(-1, keepdim=True) / x[..., :1].clamp_min(_eps(x))
        return torch.cat([time, u[..., 1:]], -1)

    def proju0(self, u: torch.Tensor) -> torch.Tensor:
        """Onto T_oH: u_0 = 0."""
        return torch.cat([torch.zeros_like(u[..., :1]), u[..., 1:]], -1)

    def inner(self, x: torch.Tensor, u: torch.Tensor, v: torch.Tensor | None = None, *, keepdim: bool = False) -> torch.Tensor:
        """The metric on T_xH: the Minkowski product (geoopt API)."""
        return minkowski_dot(u, u if v is None else v, keepdim=keepdim)

    def tangent_norm(self, u: torch.Tensor) -> torch.Tensor:
        """||u||_L = sqrt(max(<u, u>_L, eps)), clamped to MAX_NORM, [..., 1]."""
        return minkowski_dot(u, u).clamp_min(_eps(u)).sqrt().clamp_max(MAX_NORM)

    # ----------------------------------------------------------------- exp / log at the origin
    def expmap0(self, u: torch.Tensor) -> torch.Tensor:
        """exp_o(u) = (sqrt K cosh t, sqrt K sinh t u_{1:} / ||u_{1:}||), t = ||u_{1:}|| / sqrt K; u_0 is ignored."""
        space = u[..., 1:]
        norm = space.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)
        theta = norm / self.sqrt_k
        out = torch.cat([self.sqrt_k * cosh(theta), self.sqrt_k * sinh(theta) * space / norm], -1)
        return self.projx(out)

    def logmap0(self, x: torch.Tensor) -> torch.Tensor:
        """log_o(x) = (0, sqrt K r x_{1:} / ||x_{1:}||): r = asinh(||x_{1:}|| / sqrt K) (stable), or
        HGCN's arcosh(max(x_0 / sqrt K, 1 + eps))."""
        space = x[..., 1:]
        norm = space.norm(dim=-1, keepdim=True).clamp_min(MIN_NORM)
        if self.stable:
            radius = torch.asinh(norm / self.sqrt_k)
        else:
            radius = arcosh((x[..., :1] / self.sqrt_k).clamp_min(1.0 + _eps(x)))
        return torch.cat([torch.zeros_like(x[..., :1]), self.sqrt_k * radius * space / norm], -1)

    # ----------------------------------------------------------------- exp / log at a point
    def expmap(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """exp_x(u) = cosh(t) x + sqrt K sinh(t) u / ||u||_L, t = ||u||_L / sqrt K, re-projected."""
        norm = self.tangent_norm(u)
        theta = (norm / self.sqrt_k).clamp_min(MIN_NORM)
        return self.projx(cosh(theta) * x + self.sqrt_k * sinh(theta) * u / norm)

    def retr(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """geoopt's retraction: the exact exp map (as HGCF's RSGD)."""
        return self.expmap(x, u)

    def logmap(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log_x(y) = d(x, y) u / ||u||_L with u = y + <x, y>_L x / K, projected onto T_xH."""
        xy = (minkowski_dot(x, y) + self.k).clamp_max(-_eps(x)) - self.k
        u = y + xy * x / self.k
        dist = self.sqdist(x, y, keepdim=True).sqrt()
        return self.proju(x, dist * u / self.tangent_norm(u).clamp_min(MIN_NORM))

    def transp(self, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Parallel transport of v from T_xH to T_yH: v - <log_x y, v>_L / d^2 (log_x y + log_y x)."""
        log_xy, log_yx = self.logmap(x, y), self.logmap(y, x)
        d2 = self.sqdist(x, y, keepdim=True).clamp_min(MIN_NORM)
        return self.proju(y, v - minkowski_dot(log_xy, v) / d2 * (log_xy + log_yx))

    # ----------------------------------------------------------------- distances, gradients
    def sqdist(self, x: torch.Tensor, y: torch.Tensor, keepdim: bool = False) -> torch.Tensor:
        """d^2(x, y) = K arcosh(max(-<x, y>_L / K, 1 + eps))^2, clamped to <= 50 (HGCN)."""
        theta = (-minkowski_dot(x, y) / self.k).clamp_min(1.0 + _eps(x))
        out = (self.k * arcosh(theta).pow(2)).clamp_max(MAX_SQDIST)
        return out if keepdim else out.squeeze(-1)

    def sqdist_matrix(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """All pairwise d^2 [N, M] between rows of x [N, D] and y [M, D] from one Lorentz GEMM, with
        ``sqdist``'s clamps; row i equals ``sqdist(x[i].expand_as(y), y)``."""
        theta = (-lorentz_matmul(x, y) / self.k).clamp_min(1.0 + _eps(x))
        return (self.k * arcosh(theta).pow(2)).clamp_max(MAX_SQDIST)

    def dist(self, x: torch.Tensor, y: torch.Tensor, *, keepdim: bool = False) -> torch.Tensor:
        return self.sqdist(x, y, keepdim=keepdim).sqrt()

    def egrad2rgrad(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Riemannian gradient: flip the sign of coordinate 0 (J g, the inverse Minkowski metric) and
        project onto T_xH: r = Jg + <x, Jg>_L x / K."""
        g = torch.cat([-u[..., :1], u[..., 1:]], -1)
        return g + minkowski_dot(x, g) * x / self.k

    # ----------------------------------------------------------------- geoopt checks
    def _check_point_on_manifold(
        self, x: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5, dim: int = -1
    ) -> tuple[bool, str | None]:
        ok = torch.allclose(minkowski_dot(x, x), torch.full_like(x[..., :1], -self.k), atol=atol, rtol=rtol) and bool(
            (x[..., 0] > 0).all()
        )
        return ok, None if ok else f"<x, x>_L != -{self.k} or x_0 <= 0"

    def _check_vector_on_tangent(
        self, x: torch.Tensor, u: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-5, dim: int = -1
    ) -> tuple[bool, str | None]:
        ok = torch.allclose(minkowski_dot(x, u), torch.zeros_like(x[..., :1]), atol=atol, rtol=rtol)
        return ok, None if ok else "<x, u>_L != 0"

    def extra_repr(self) -> str:
        return f"k={self.k}, stable={self.stable}"
