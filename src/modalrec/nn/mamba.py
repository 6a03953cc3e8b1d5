"""The Mamba (S6) selective state-space mixer, with the parameter names and shapes of ``mamba_ssm.Mamba``.

Gu & Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces", 2023 (Sec. 3, Alg. 2).
State dicts load both ways with ``mamba_ssm.Mamba`` and ``mambapy``'s ``MambaBlock``::

    in_proj  Linear(D -> 2 ED, no bias)      conv1d  depthwise Conv1d(ED, kernel d_conv, bias, pad d_conv-1)
    x_proj   Linear(ED -> R + 2N, no bias)   dt_proj Linear(R -> ED, bias)
    A_log    [ED, N]                         D       [ED]            out_proj Linear(ED -> D, no bias)

Forward: ``[u, z] = in_proj(x)``; ``u = silu(causal_conv(u))``; ``[δ, B, C] = x_proj(u)``;
``Δ = softplus(dt_proj(δ))``; ``A = -exp(A_log)``; the scan ``h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t``,
``y_t = <h_t, C_t> + D u_t``; ``out = out_proj(y * silu(z))``.

The scan has interchangeable backends, all exact for the diagonal A (``backend``):

- ``"ref"``: the sequential loop under autograd, mirroring ``selective_scan_ref`` of ``mamba_ssm``
  (the oracle the others are tested against);
- ``"chunked"``: the segment-sum form per chunk of ``chunk`` steps. The decay between steps s <= t
  of a chunk is ``exp(c_t - c_s)`` with ``c`` the cumulative sum of ``Δ A`` (<= 0); the upper triangle
  is filled with -inf *before* ``exp``, so no exponent is ever positive (the ``exp(c_t) cumsum(exp(-c_s)
  b_s)`` shortcut overflows in float32 and is not used);
- ``"fused"``: the sequential recurrence in a custom autograd function whose backward runs the
  reverse recurrence by hand (no autograd graph per step), the state laid out [B, N, ED] -- the fastest
  exact CPU path (on one core a scan over chunks does more work than the loop, not less: see
  ``docs/findrec.md``, "Speed on a CPU");
- ``"cuda"``: the ``mamba-ssm`` selective-scan kernel (optional extra ``modalrec[cuda]``), imported
  only when a CUDA tensor reaches the mixer, never on a CPU machine;
- ``"auto"`` (default): ``"cuda"`` when the input is on CUDA in float32/float16/bfloat16 and
  ``mamba_ssm`` imports, else ``"fused"``.

The env var ``MODALREC_MAMBA_BACKEND`` overrides ``"auto"``; the choice is logged once per backend.
:meth:`MambaMixer.step` advances one token with a (conv window, state) cache, equal to the full forward.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
import torch.nn.functional as F
from torch import nn

from modalrec.errors import ConfigError

log = logging.getLogger(__name__)

Backend = Literal["auto", "cuda", "ref", "chunked", "fused"]  # a model config's ``mamba_backend``
BACKENDS: tuple[str, ...] = get_args(Backend)
ENV_BACKEND = "MODALREC_MAMBA_BACKEND"
_CUDA_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_logged: set[str] = set()


def check_backend(backend: str) -> str:
    """Refuse an unknown backend name with the valid choices."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown Mamba backend '{backend}'; choose one of {', '.join(BACKENDS)}")
    return backend


@functools.cache
def cuda_selective_scan() -> Callable[..., torch.Tensor] | None:
    """``mamba_ssm``'s ``selective_scan_fn`` if the package and its compiled kernels load, else None.

    Broken CUDA builds raise OSError/RuntimeError on import, not only ImportError; all mean "absent".
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError, RuntimeError):
        return None
    return selective_scan_fn


def resolve_backend(requested: str, x: torch.Tensor) -> str:
    """The backend that will run for input ``x`` (``"auto"`` resolved; see the module docstring)."""
    backend = check_backend(requested)
    if backend == "auto":
        backend = check_backend(os.environ.get(ENV_BACKEND, "auto") or "auto")
    if backend == "auto":
        cuda_ok = x.is_cuda and x.dtype in _CUDA_DTYPES and cuda_selective_scan() is not None
        backend = "cuda" if cuda_ok else "fused"
    if backend == "cuda" and (not x.is_cuda or cuda_selective_scan() is None):
        raise ConfigError(
            "Mamba backend 'cuda' needs CUDA tensors and the mamba-ssm kernels "
            "(pip install 'modalrec[cuda]' on a CUDA machine); use backend 'auto' or 'fused' otherwise"
        )
    if backend not in _logged:
        _logged.add(backend)
        log.info("Mamba scan backend: %s (device %s, dtype %s)", backend, x.device, str(x.dtype).replace("torch.", ""))
    return backend


# ---------------------------------------------------------------------- scans
# Shapes: u, delta [B, L, ED]; A [ED, N]; Bm, Cm [B, L, N]; D [ED] -> y [B, L, ED].


def selective_scan_ref(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """The sequential scan step by step under autograd (the oracle)."""
    decay = torch.exp(delta.unsqueeze(-1) * A)  # a_t = exp(Δ_t A)      [B, L, ED, N]
    drive = (delta * u).unsqueeze(-1) * Bm.unsqueeze(2)  # b_t = Δ_t B_t u_t  [B, L, ED, N]
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        h = decay[:, t] * h + drive[:, t]
        ys.append((h * Cm[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, dim=1) + D * u


def selective_scan_chunked(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor, D: torch.Tensor, chunk: int = 16
) -> torch.Tensor:
    """The exact segment-sum scan over chunks of ``chunk`` steps (memory O(B T^2 ED N) per chunk)."""
    if chunk < 1:
        raise ConfigError(f"Mamba chunk size must be >= 1, got {chunk}")
    log_decay = delta.unsqueeze(-1) * A  # Δ_t A <= 0               [B, L, ED, N]
    drive = (delta * u).unsqueeze(-1) * Bm.unsqueeze(2)
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for start in range(0, u.shape[1], chunk):
        c = log_decay[:, start : start + chunk].cumsum(1)  # c_t            [B, T, ED, N]
        T = c.shape[1]
        below = torch.ones(T, T, dtype=torch.bool, device=u.device).tril()  # s <= t
        segment = (c.unsqueeze(2) - c.unsqueeze(1)).masked_fill(~below[None, :, :, None, None], -math.inf)
        states = torch.einsum("btsdn,bsdn->btdn", segment.exp(), drive[:, start : start + chunk])
        states = states + c.exp() * h.unsqueeze(1)  # carry the state entering the chunk
        h = states[:, -1]
        ys.append(torch.einsum("btdn,btn->btd", states, Cm[:, start : start + chunk]))
    return torch.cat(ys, dim=1) + D * u


class _SelectiveScan(torch.autograd.Function):
    """The scan step by step, time-major, never materialising [L, B, ED, N] decays or inputs.

    Forward per step: ``a_t = exp(Δ_t A)``, ``h_t = a_t h_{t-1} + (Δ_t u_t) B_t``, ``y_t = h_t C_t``; the backward
    runs the reverse recurrence by hand: ``g_t = dL/dh_t = dy_t C_t + a_{t+1} g_{t+1}``, then ``dC_t = h_t^T dy_t``,
    ``dB_t = g_t^T (Δ_t u_t)``, ``d(Δ_t u_t) = g_t B_t`` and, through ``log a_t = Δ_t A``, ``r_t = g_t h_{t-1} a_t``:
    ``dΔ_t += sum_n r_t A``, ``dA += sum_b r_t Δ_t``. Every step touches only [B, N, ED] tensors, which stay in cache.

    Two choices make a step ~2.3x cheaper on CPU than the [B, ED, N] layout with ``exp`` (same arithmetic, float
    rounding apart; the tests pin it to the reference loop): the state is kept as [B, N, ED], so every contraction
    over N (``y_t``, ``d(Δ_t u_t)``) is a product whose rows run along the contiguous ED axis and those over ED
    (``dC_t``, ``dB_t``) an elementwise product and a row sum (a [B, ED, N] x [B, N, 1] ``bmm`` is a batch of
    16-wide dot products, ~5-10x slower per element); and ``a_t = 2^(Δ_t A log2 e)``: torch's CPU ``exp2`` is ~4x
    cheaper than its ``exp`` in float32.

    The forward keeps only the state entering each chunk of :attr:`CHUNK` steps, not every h_t (L B N ED floats: 13 MB
    per layer at B 16, L 50, ED 256, N 16, 52 MB at L 200, each a fresh allocation that the OS pages in); the backward
    recomputes a chunk's states (and decays, which it needs anyway) with the forward's own operations, so bit for bit
    the same, into buffers of CHUNK + 1 states that stay in cache, then runs the chunk's reverse steps.
    """

    CHUNK = 8

    @staticmethod
    def forward(
        ctx: Any, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor
    ) -> torch.Tensor:
        length, batch, inner = u.shape
        chunk = _SelectiveScan.CHUNK
        log2_decay = A.t().contiguous() * (1.0 / math.log(2.0))  # A log2 e  [N, ED]
        entering = u.new_empty(-(-length // chunk), batch, A.shape[1], inner)  # h_{cK - 1} per chunk c, as [B, N, ED]
        work = u.new_empty(2, batch, A.shape[1], inner)  # h_t and h_{t-1}
        y = u.new_empty(length, batch, 1, inner)
        drive = delta * u
        for t in range(length):
            if t % chunk == 0 and t > 0:
                entering[t // chunk].copy_(work[(t - 1) % 2])
            elif t == 0:
                entering[0].zero_()
            h = torch.mul(drive[t].unsqueeze(1), Bm[t].unsqueeze(-1), out=work[t % 2])  # b_t, written in place
            if t > 0:
                h.addcmul_(torch.mul(delta[t].unsqueeze(1), log2_decay).exp2_(), work[(t - 1) % 2])  # + a_t h_{t-1}
            torch.bmm(Cm[t].unsqueeze(1), h, out=y[t])
        ctx.save_for_backward(u, delta, A, Bm, Cm, entering)
        return y.view(length, batch, inner)

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u, delta, A, Bm, Cm, entering = ctx.saved_tensors
        dy = dy.contiguous()
        length, batch, inner = u.shape
        chunk = _SelectiveScan.CHUNK
        a_t = A.t().contiguous()  # [N, ED]
        log2_decay = a_t * (1.0 / math.log(2.0))
        du, ddelta, d_a_t = torch.empty_like(u), torch.empty_like(delta), torch.zeros_like(a_t)
        dB, dC = torch.empty_like(Bm), torch.empty_like(Cm)
        drive = delta * u
        g = None
        next_decay = None
        r = torch.empty_like(entering[0])
        d_drive = u.new_empty(batch, 1, inner)
        states = u.new_empty(chunk + 1, batch, A.shape[1], inner)  # [0]: the state entering the chunk, [i + 1]: h_t
        decays = u.new_empty(chunk, batch, A.shape[1], inner)
        for start in range((length - 1) // chunk * chunk, -1, -chunk):
            stop = min(start + chunk, length)
            states[0].copy_(entering[start // chunk])
            for t in range(start, stop):  # the chunk's states and decays, by the forward's operations
                h = torch.mul(drive[t].unsqueeze(1), Bm[t].unsqueeze(-1), out=states[t - start + 1])
                torch.mul(delta[t].unsqueeze(1), log2_decay, out=decays[t - start]).exp2_()
                if t > 0:
                    h.addcmul_(decays[t - start], states[t - start])
            for t in range(stop - 1, start - 1, -1):
                i = t - start
                outer = torch.mul(dy[t].unsqueeze(1), Cm[t].unsqueeze(-1))
                g = outer if g is None or next_decay is None else outer.addcmul_(next_decay, g)
                torch.sum(torch.mul(states[i + 1], dy[t].unsqueeze(1), out=r), -1, out=dC[t])
                torch.sum(torch.mul(g, drive[t].unsqueeze(1), out=r), -1, out=dB[t])
                torch.bmm(Bm[t].unsqueeze(1), g, out=d_drive)
                torch.mul(d_drive[:, 0], delta[t], out=du[t])
                torch.mul(d_drive[:, 0], u[t], out=ddelta[t])
                if t > 0:
                    torch.mul(g, states[i], out=r).mul_(decays[i])  # dL/d(Δ_t A)
                    ddelta[t] += (r * a_t).sum(1)
                    d_a_t += (r * delta[t].unsqueeze(1)).sum(0)
                next_decay = decays[i].clone() if i == 0 else decays[i]  # the next chunk rewrites decays
        return du, ddelta, d_a_t.t(), dB, dC


def selective_scan_fused(
    u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """The sequential scan with a hand-written, cache-friendly backward (see :class:`_SelectiveScan`)."""

    def time_major(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(0, 1).contiguous()

    y = _SelectiveScan.apply(time_major(u), time_major(delta), A, time_major(Bm), time_major(Cm))
    return y.transpose(0, 1) + D * u


TORCH_SCANS: dict[str, Callable[..., torch.Tensor]] = {
    "ref": selective_scan_ref,
    "chunked": selective_scan_chunked,
    "fused": selective_scan_fused,
}


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """The mixer's ``conv1d`` (depthwise, kernel K, padding K - 1, first L outputs) on x [B, L, C] in its own layout:
    ``y_t = b + sum_k w_k x_{t - K + 1 + k}`` as K multiply-adds of shifted views. On CPU ~2x cheaper forward +
    backward than the convolution (whose input and output are transposed copies); the same values up to float rounding.
    """
    kernel, length = weight.shape[-1], x.shape[1]
    taps = weight[:, 0].t().to(x.dtype)  # [K, C]; in x's precision, as autocast runs the convolution (bf16 in, bf16 out)
    padded = F.pad(x, (0, 0, kernel - 1, 0))  # K - 1 zero steps in front
    tail = padded[:, kernel - 1 :]
    out = tail * taps[-1] if bias is None else torch.addcmul(bias.to(x.dtype), tail, taps[-1])
    for k in range(kernel - 1):
        out = out.addcmul(padded[:, k : k + length], taps[k])
    return out


# ---------------------------------------------------------------------- the mixer
@dataclass
class MambaCache:
    """Recurrent inference state: the last ``d_conv`` conv inputs [B, ED, d_conv] and the SSM state [B, ED, N]."""

    conv: torch.Tensor
    ssm: torch.Tensor


class MambaMixer(nn.Module):
    """One Mamba mixer (``mamba_ssm.Mamba`` layout); ``forward(x [B, L, D]) -> [B, L, D]``, causal in L."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: str = "auto",
        chunk: int = 16,
    ):
        super().__init__()
        if min(d_model, d_state, d_conv, expand) < 1:
            raise ConfigError(f"Mamba needs d_model, d_state, d_conv, expand >= 1, got {d_model}, {d_state}, {d_conv}, {expand}")
        self.d_model, self.d_state, self.d_conv = d_model, d_state, d_conv
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = check_backend(backend)
        self.chunk = chunk
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        # mamba_ssm's markers, read by optimisers that honour them (an attribute torch's Parameter does not declare)
        self.A_log._no_weight_decay = True  # type: ignore[attr-defined]
        self.D._no_weight_decay = True  # type: ignore[attr-defined]
        self.reset_ssm_parameters(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def reset_ssm_parameters(self, dt_min: float = 1e-3, dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> None:
        """The paper's S4D-real init: A_log = log(1..N), D = 1, Δ ~ logU[dt_min, dt_max] via the dt bias."""
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(
            min=dt_init_floor
        )
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.A_log.copy_(torch.log(torch.arange(1, self.d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        self.D.fill_(1.0)

    def _ssm_inputs(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Δ [.., ED] after softplus, A [ED, N], B [.., N], C [.., N]) from the conv output u."""
        dt, Bm, Cm = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), -torch.exp(self.A_log.float()).to(u.dtype), Bm, Cm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)  # [B, L, ED] each
        if x.device.type == "cpu":
            u = F.silu(causal_depthwise_conv(u, self.conv1d.weight, self.conv1d.bias))
        else:
            u = F.silu(self.conv1d(u.transpose(1, 2))[..., :length]).transpose(1, 2)  # causal depthwise conv
        backend = resolve_backend(self.backend, x)
        if backend == "cuda":
            return self.out_proj(self._cuda_scan(u, z))
        delta, A, Bm, Cm = self._ssm_inputs(u)
        scan = TORCH_SCANS[backend]
        y = scan(u, delta, A, Bm, Cm, self.D, chunk=self.chunk) if backend == "chunked" else scan(u, delta, A, Bm, Cm, self.D)
        return self.out_proj(y * F.silu(z))

    def _cuda_scan(self, u: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """y * silu(z) [B, L, ED] by ``mamba_ssm``'s kernel (channels-first layout, Δ bias + softplus fused)."""
        dt, Bm, Cm = self.x_proj(u).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = dt @ self.dt_proj.weight.T  # the kernel adds the bias and applies softplus
        kernel = cuda_selective_scan()
        if kernel is None:  # resolve_backend picks "cuda" only when the kernel loads
            raise RuntimeError("mamba_ssm's selective_scan_fn is not available")
        y = kernel(
            u.transpose(1, 2).contiguous(),
            delta.transpose(1, 2).contiguous(),
            -torch.exp(self.A_log.float()),
            Bm.transpose(1, 2).contiguous(),
            Cm.transpose(1, 2).contiguous(),
            self.D.float(),
            z=z.transpose(1, 2).contiguous(),
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
        )
        return y.transpose(1, 2)

    # ------------------------------------------------------------------ recurrent inference
    def init_cache(self, batch: int, device: torch.device | None = None, dtype: torch.dtype | None = None) -> MambaCache:
        """An empty cache (zero conv window and state) for ``batch`` sequences."""
        device = device or self.A_log.device
        dtype = dtype or self.A_log.dtype
        return MambaCache(
            conv=torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype),
            ssm=torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype),
        )

    def step(self, x: torch.Tensor, cache: MambaCache) -> tuple[torch.Tensor, MambaCache]:
        """One token ``x [B, D]`` -> (output [B, D], updated cache); O(1) in the sequence length."""
        u, z = self.in_proj(x).chunk(2, dim=-1)  # [B, ED]
        window = torch.cat([cache.conv[:, :, 1:], u.unsqueeze(-1)], dim=-1)  # the last d_conv inputs
        u = (window * self.conv1d.weight.squeeze(1)).sum(-1)
        if self.conv1d.bias is not None:
            u = u + self.conv1d.bias
        u = F.silu(u)
        delta, A, Bm, Cm = self._ssm_inputs(u)
        h = torch.exp(delta.unsqueeze(-1) * A) * cache.ssm + (delta * u).unsqueeze(-1) * Bm.unsqueeze(1)
        y = (h * Cm.unsqueeze(1)).sum(-1) + self.D * u
        return self.out_proj(y * F.silu(z)), MambaCache(conv=window, ssm=h)
