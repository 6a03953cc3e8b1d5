"""FindRec / Mamba on an accelerator: the CUDA scan is used, matches the CPU reference, and how much faster it is.

Run on a CUDA machine with ``pip install -e '.[cuda]'`` (mamba-ssm): python benchmarks/findrec_cuda_check.py
One short script (about a minute on an H100), prints everything and exits 1 when a check fails:

1. dispatch: ``backend="auto"`` resolves to ``cuda`` for float32 CUDA input (and to ``fused`` on CPU);
2. the mixer (batch 64, L 50, d 64): CUDA forward and input/parameter gradients against the CPU ``ref``
   scan on the same weights and input, within mamba-ssm's own selective-scan test tolerances
   (float32: rtol 6e-4, atol 2e-3, relative to each tensor's scale for the gradients);
3. a FindRec training step (faithful, d 128, L 50, batch 128, 1024-d features) on CUDA vs CPU: the loss
   agrees in evaluation mode without bottleneck noise (the CPU and CUDA random streams differ);
4. speed: mixer forward+backward and a FindRec training step, CPU (fused scan, all threads) vs CUDA.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch

from modalrec.nn.mamba import MambaMixer, cuda_selective_scan, resolve_backend

RTOL, ATOL = 6e-4, 2e-3  # mamba_ssm tests/ops/test_selective_scan.py, float32


def timed(step: Callable[[], None], device: torch.device, repeats: int = 5) -> float:
    step()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def close(name: str, got: torch.Tensor, want: torch.Tensor) -> bool:
    got, want = got.detach().cpu().double(), want.detach().cpu().double()
    scale = want.abs().max().clamp(min=1.0)
    err = ((got - want).abs() - RTOL * want.abs()).max().item() / scale.item()
    ok = err <= ATOL
    print(f"  {name:24s} max excess error / scale {err:9.2e}  {'ok' if ok else 'FAIL'}")
    return ok


def mixer_check(cuda: torch.device) -> bool:
    print("== Mamba mixer (batch 64, L 50, d 64): CUDA vs CPU reference scan")
    torch.manual_seed(0)
    cpu_ref, on_gpu = MambaMixer(64, backend="ref"), MambaMixer(64, backend="auto").to(cuda)
    on_gpu.load_state_dict(cpu_ref.state_dict())
    x = torch.randn(64, 50, 64)
    ok = resolve_backend("auto", x) == "fused" and resolve_backend("auto", x.to(cuda)) == "cuda"
    print(f"  dispatch auto -> CPU {resolve_backend('auto', x)}, CUDA {resolve_backend('auto', x.to(cuda))}")
    x_cpu, x_gpu = x.clone().requires_grad_(), x.to(cuda).requires_grad_()
    y_cpu, y_gpu = cpu_ref(x_cpu), on_gpu(x_gpu)
    weights = torch.linspace(-1, 1, y_cpu.numel()).view_as(y_cpu)
    (y_cpu * weights).sum().backward()
    (y_gpu * weights.to(cuda)).sum().backward()
    ok &= close("output", y_gpu, y_cpu)
    ok &= close("d input", x_gpu.grad, x_cpu.grad)
    for (name, p_cpu), p_gpu in zip(cpu_ref.named_parameters(), on_gpu.parameters()):
        ok &= close(f"d {name}", p_gpu.grad, p_cpu.grad)

    cpu_fused = MambaMixer(64, backend="fused")
    cpu_fused.load_state_dict(cpu_ref.state_dict())

    def step(module: torch.nn.Module, inp: torch.Tensor) -> Callable[[], None]:
        return lambda: module(inp).sum().backward()

    t_cpu, t_gpu = timed(step(cpu_fused, x_cpu), torch.device("cpu")), timed(step(on_gpu, x_gpu), cuda)
    print(
        f"  fwd+bwd  CPU fused ({torch.get_num_threads()} threads) {t_cpu * 1e3:8.2f} ms   CUDA {t_gpu * 1e3:8.2f} ms   speed-up {t_cpu / t_gpu:6.1f}x"
    )
    return ok


def findrec_check(cuda: torch.device) -> bool:
    from modalrec.data.context import DataContext
    from modalrec.data.split import SplitConfig, split
    from modalrec.data.synthetic import make_synthetic
    from modalrec.models.sequential.findrec import FindRec

    print("== FindRec training step (faithful, d 128, L 50, batch 128, 1024-d features): CUDA vs CPU")
    ds = make_synthetic(n_users=200, n_items=3000, n_clusters=10, feature_dims={"text": 1024, "image": 1024}, seed=0)
    ctx = DataContext.from_dataset(split(ds, SplitConfig(method="loo")))
    g = torch.Generator().manual_seed(0)
    batch = {
        "seq": torch.randint(0, 3000, (128, 50), generator=g),
        "lengths": torch.randint(1, 51, (128,), generator=g),
        "target": torch.randint(0, 3000, (128,), generator=g),
    }
    # deterministic forward for the comparison (CPU and CUDA random streams differ): eval mode, no bottleneck noise
    config = FindRec.Config(sample_at_eval=False)
    torch.manual_seed(0)
    cpu_model = FindRec(config, ctx).eval()
    gpu_model = FindRec(config, ctx).to(cuda).eval()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_batch = {k: v.to(cuda) for k, v in batch.items()}
    with torch.no_grad():
        ok = close("loss (eval mode)", gpu_model.loss(gpu_batch)["loss"], cpu_model.loss(batch)["loss"])
    cpu_model.train()
    gpu_model.train()

    def step(model: FindRec, b: dict[str, torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            model.loss(b)["loss"].backward()

        return run

    t_cpu, t_gpu = timed(step(cpu_model, batch), torch.device("cpu"), 2), timed(step(gpu_model, gpu_batch), cuda)
    print(
        f"  train step  CPU ({torch.get_num_threads()} threads) {t_cpu * 1e3:8.1f} ms   CUDA {t_gpu * 1e3:8.1f} ms   speed-up {t_cpu / t_gpu:6.1f}x"
    )
    return ok


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    if cuda_selective_scan() is None:
        print("mamba-ssm's CUDA kernels do not import: pip install -e '.[cuda]' on this machine")
        return 1
    cuda = torch.device("cuda")
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(cuda)}, CPU threads {torch.get_num_threads()}")
    ok = mixer_check(cuda)
    ok &= findrec_check(cuda)
    print("ALL OK" if ok else "SOME CHECKS FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
