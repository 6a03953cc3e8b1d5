"""The Mamba mixer: scan backends agree (values and gradients), gradcheck, recurrent steps, dispatch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from modalrec.errors import ConfigError
from modalrec.nn.mamba import (
    MambaMixer,
    _SelectiveScan,
    causal_depthwise_conv,
    resolve_backend,
    selective_scan_chunked,
    selective_scan_fused,
    selective_scan_ref,
)


def scan_inputs(batch: int, length: int, inner: int, state: int, dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(u, delta, A, B, C, D) with large decays (delta |A| up to ~60 per step) so overflow would show."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(batch, length, inner, generator=g, dtype=dtype)
    delta = torch.rand(batch, length, inner, generator=g, dtype=dtype) * 3.0
    A = -torch.rand(inner, state, generator=g, dtype=dtype) * 20.0
    Bm = torch.randn(batch, length, state, generator=g, dtype=dtype)
    Cm = torch.randn(batch, length, state, generator=g, dtype=dtype)
    D = torch.randn(inner, generator=g, dtype=dtype)
    return tuple(t.requires_grad_() for t in (u, delta, A, Bm, Cm, D))


def value_and_grads(scan, inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    y = scan(*inputs)
    weights = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).view_as(y)
    return (y.detach(), *torch.autograd.grad((y * weights).sum() + y.pow(2).sum(), inputs))


SCANS = {
    "chunked-1": lambda *a: selective_scan_chunked(*a, chunk=1),
    "chunked-3": lambda *a: selective_scan_chunked(*a, chunk=3),
    "chunked-8": lambda *a: selective_scan_chunked(*a, chunk=8),
    "chunked-L": lambda *a: selective_scan_chunked(*a, chunk=37),
    "fused": selective_scan_fused,
}


@pytest.mark.parametrize("name", list(SCANS))
def test_scans_equal_the_reference_in_float64(name: str) -> None:
    inputs = scan_inputs(2, 37, 5, 3, torch.float64)
    expected = value_and_grads(selective_scan_ref, inputs)
    got = value_and_grads(SCANS[name], inputs)
    for e, g in zip(expected, got):
        assert (e - g).abs().max().item() < 1e-10


@pytest.mark.parametrize("name", ["ref", "chunked-8", "fused"])
def test_float32_scans_match_float64_truth_without_overflow(name: str) -> None:
    """Errors relative to each tensor's scale (gradients reach ~1e3 here, so a fixed atol means nothing)."""
    inputs = scan_inputs(2, 50, 6, 4, torch.float32, seed=1)
    inputs[1].data.div_(3.0)  # Δ in [0, 1], |A| <= 16: decays up to e^-16 per step, as trained models reach
    truth = value_and_grads(selective_scan_ref, tuple(t.detach().double().requires_grad_() for t in inputs))
    got = value_and_grads(selective_scan_ref if name == "ref" else SCANS[name], inputs)
    for e, g in zip(truth, got):
        assert torch.isfinite(g).all()
        assert ((g.double() - e).abs().max() / e.abs().max()).item() < 1e-5


@pytest.mark.parametrize("scan", [selective_scan_ref, SCANS["chunked-3"], selective_scan_fused])
def test_gradcheck_on_tiny_shapes(scan) -> None:
    inputs = scan_inputs(2, 7, 3, 2, torch.float64, seed=2)
    inputs[1].data.mul_(0.3)  # moderate decays keep the finite differences well conditioned
    assert torch.autograd.gradcheck(scan, inputs, eps=1e-6, atol=1e-6)


def test_fused_scan_recomputes_its_states_bit_for_bit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fused backward recomputes each chunk's states from the state entering it (the forward keeps no others):
    with every state kept (a chunk of one step), chunks that do not divide L, one chunk and a chunk longer than L,
    the output and every gradient are identical to the last bit (the same operations on the same numbers)."""
    inputs = scan_inputs(3, 37, 6, 4, torch.float32, seed=3)
    results = []
    for chunk in (1, 3, 8, 37, 64):
        monkeypatch.setattr(_SelectiveScan, "CHUNK", chunk)
        results.append(value_and_grads(selective_scan_fused, inputs))
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("bias", [True, False])
def test_causal_depthwise_conv_is_the_mixers_conv1d(bias: bool) -> None:
    """The CPU path's shifted multiply-adds: the conv1d's values and gradients (input, weight, bias), float64."""
    torch.manual_seed(0)
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3, bias=bias).double()
    x = torch.randn(3, 9, 6, dtype=torch.float64)
    g = torch.randn(3, 9, 6, dtype=torch.float64)
    results = []
    for own in (False, True):
        conv.zero_grad()
        xi = x.clone().requires_grad_()
        y = causal_depthwise_conv(xi, conv.weight, conv.bias) if own else conv(xi.transpose(1, 2))[..., :9].transpose(1, 2)
        (y * g).sum().backward()
        results.append([y.detach(), xi.grad, *(p.grad for p in conv.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-13)
    assert torch.autograd.gradcheck(
        lambda a, w: causal_depthwise_conv(a, w, None), (x[:, :5].requires_grad_(), conv.weight.detach().clone().requires_grad_())
    )


def test_mixer_trains_under_bf16_autocast_like_the_convolution() -> None:
    """train.amp=true: the CPU conv path computes in the input's precision, as autocast runs the Conv1d (bf16), so the
    scan gets inputs of one dtype; output and gradients are finite and close to the convolution path's."""
    torch.manual_seed(0)
    mixer = MambaMixer(16, d_state=4, expand=2)
    x = torch.randn(2, 12, 16)
    results = []
    for path in ("own", "conv"):
        xi = x.clone().requires_grad_()
        mixer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            if path == "own":
                y = mixer(xi)
            else:  # the convolution path, as on CUDA
                u, z = mixer.in_proj(xi).chunk(2, dim=-1)
                u = torch.nn.functional.silu(mixer.conv1d(u.transpose(1, 2))[..., :12]).transpose(1, 2)
                delta, A, Bm, Cm = mixer._ssm_inputs(u)
                y = mixer.out_proj(selective_scan_fused(u, delta, A, Bm, Cm, mixer.D) * torch.nn.functional.silu(z))
        y.float().sum().backward()
        assert xi.grad is not None and torch.isfinite(xi.grad).all()
        results.append((y.detach().float(), xi.grad))
    for a, b in zip(*results):
        assert (a - b).norm() <= 0.02 * b.norm()


def float64_mixer(backend: str, seed: int = 0) -> MambaMixer:
    torch.manual_seed(seed)
    return MambaMixer(8, d_state=4, d_conv=3, expand=2, backend=backend, chunk=4).double()


def test_mixer_backends_agree_and_state_dicts_are_interchangeable() -> None:
    x = torch.randn(3, 11, 8, dtype=torch.float64)
    ref = float64_mixer("ref")
    outputs = {}
    for backend in ("ref", "chunked", "fused"):
        mixer = float64_mixer(backend, seed=1)
        mixer.load_state_dict(ref.state_dict())
        outputs[backend] = mixer(x)
    assert (outputs["chunked"] - outputs["ref"]).abs().max() < 1e-12
    assert (outputs["fused"] - outputs["ref"]).abs().max() < 1e-12


def test_parameter_names_and_shapes_are_mamba_ssm_s() -> None:
    mixer = MambaMixer(128, d_state=16, d_conv=4, expand=2)
    shapes = {k: tuple(v.shape) for k, v in mixer.state_dict().items()}
    assert shapes == {
        "in_proj.weight": (512, 128),
        "conv1d.weight": (256, 1, 4),
        "conv1d.bias": (256,),
        "x_proj.weight": (8 + 32, 256),
        "dt_proj.weight": (256, 8),
        "dt_proj.bias": (256,),
        "A_log": (256, 16),
        "D": (256,),
        "out_proj.weight": (128, 256),
    }
    assert sum(v.numel() for v in mixer.parameters()) == 116_480  # spec Sec. 1.11
    torch.testing.assert_close(mixer.A_log[3], torch.log(torch.arange(1, 17, dtype=torch.float32)))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6  # Δ ~ logU[1e-3, 0.1], floored at 1e-4


def test_recurrent_steps_equal_the_full_forward() -> None:
    mixer = float64_mixer("fused")
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    full = mixer(x)
    cache = mixer.init_cache(2, dtype=torch.float64)
    steps = []
    for t in range(9):
        y, cache = mixer.step(x[:, t], cache)
        steps.append(y)
    assert (torch.stack(steps, 1) - full).abs().max() < 1e-12


def test_mixer_is_causal() -> None:
    mixer = float64_mixer("fused")
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    changed = x.clone()
    changed[:, 6:] = torch.randn(2, 4, 8, dtype=torch.float64)
    assert torch.equal(mixer(x)[:, :6], mixer(changed)[:, :6])


def test_auto_picks_a_torch_scan_on_cpu_and_cuda_is_refused_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODALREC_MAMBA_BACKEND", raising=False)
    x = torch.zeros(1, 2, 3)
    assert resolve_backend("auto", x) == "fused"
    with pytest.raises(ConfigError, match="cuda"):
        resolve_backend("cuda", x)
    monkeypatch.setenv("MODALREC_MAMBA_BACKEND", "chunked")
    assert resolve_backend("auto", x) == "chunked"
    with pytest.raises(ConfigError, match="choose one of"):
        MambaMixer(4, backend="triton")


def test_cpu_use_never_imports_cuda_code() -> None:
    code = (
        "import sys, torch\n"
        "from modalrec.nn.mamba import MambaMixer\n"
        "MambaMixer(8)(torch.randn(2, 5, 8)).sum().backward()\n"
        "bad = [m for m in sys.modules if m.startswith(('mamba_ssm', 'causal_conv1d', 'triton'))]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
