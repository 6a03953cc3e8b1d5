"""FindRec speed on CPU: the Mamba mixer against mambapy; FindRec vs SASRec at equal width and their scaling in L.

Run: python benchmarks/findrec_speed.py [--threads N] [--repeats R] [--batch B] [--lengths 50,200] [--rows "a;b"]
     [--heap] [--profile N] [--profile-kinds mmd,"mmd sparse"] [--compile] [--skip-mixer] [--skip-versus]
Everything is measured side by side in one process (best of R repeats, forward + backward; the rows of a length
are timed in turn, one step of each per round, so that the shared machine's load falls on all alike): SASRec, FindRec
faithful (released last-position objective), FindRec mmd (all positions) and Mamba4Rec at d 128, FindRec with and
without the levers (cheaper dropout masks, the bottleneck encoded once per distinct item, the O(L W) windowed
cross-attention, top-1 sparse experts, routing per position, the alignment on 256 rows, bf16 autocast = train.amp=true). ``--compile`` adds torch.compile (inductor, CPU) side by side with eager: the
Mamba scan (the autograd reference loop compiled against the hand-written fused scan) and FindRec's dense blocks
(cross-attention, router, experts, fusions, bottleneck encoders), with compile time and the numerical difference.
``--profile N`` breaks N profiled all-position steps per length down by part (forward and the backward it causes), for
the FindRec configs of ``--profile-kinds`` (default mmd; "mmd sparse" = top-1 experts + uniform attention-dropout masks);
``--heap`` reruns the rows with glibc keeping freed memory; ``--rows`` runs only the named rows (and their SASRec bases).
Needs the ``bench`` extra (mambapy 1.2.0) for the first section; it is skipped without it.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from modalrec.data.context import DataContext
from modalrec.data.split import SplitConfig, split
from modalrec.data.synthetic import make_synthetic
from modalrec.models.sequential.findrec import FindRec
from modalrec.models.sequential.sasrec import SASRec
from modalrec.nn.dropout import Dropout
from modalrec.nn.mamba import MambaMixer


def best_time(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def fwd_bwd(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()

    return step


def mixer_vs_mambapy(repeats: int) -> None:
    print("== Mamba mixer forward+backward, batch 64, length 50, d_model 64 (d_state 16, expand 2)")
    torch.manual_seed(0)
    x = torch.randn(64, 50, 64, requires_grad=True)
    ours = {b: MambaMixer(64, backend=b) for b in ("fused", "ref", "chunked")}
    for mixer in ours.values():
        mixer.load_state_dict(ours["fused"].state_dict())
    timings = {f"modalrec {b}": best_time(fwd_bwd(m, x), repeats) for b, m in ours.items()}
    try:
        from mambapy.mamba import MambaBlock, MambaConfig
    except ImportError:
        print("mambapy not installed (pip install 'modalrec[bench]'): comparison skipped")
    else:
        for pscan in (True, False):
            block = MambaBlock(MambaConfig(d_model=64, n_layers=1, d_state=16, expand_factor=2, d_conv=4, pscan=pscan))
            block.load_state_dict(ours["fused"].state_dict())  # same parameter names and shapes
            diff = (block(x) - ours["fused"](x)).abs().max().item()
            timings[f"mambapy {'pscan' if pscan else 'sequential'}"] = best_time(fwd_bwd(block, x), repeats)
            print(f"  mambapy (pscan={pscan}) vs modalrec output max |diff| = {diff:.2e}")
    base = timings["modalrec fused"]
    for name, seconds in timings.items():
        print(f"  {name:26s} {seconds * 1e3:9.1f} ms   {seconds / base:5.2f}x fused")


def context(n_items: int, dim: int) -> DataContext:
    ds = make_synthetic(n_users=50, n_items=n_items, n_clusters=10, feature_dims={"text": dim, "image": dim}, seed=0)
    return DataContext.from_dataset(split(ds, SplitConfig(method="loo")))


def train_batch(n_items: int, batch: int, length: int, all_positions: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {"seq": torch.randint(0, n_items, (batch, length), generator=g), "lengths": torch.full((batch,), length)}
    if all_positions:
        out["targets"] = torch.randint(0, n_items, (batch, length), generator=g)
    else:
        out["target"] = torch.randint(0, n_items, (batch,), generator=g)
    return out


def loss_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        model.loss(batch)["loss"].backward()

    return step


@contextlib.contextmanager
def torch_dropout() -> Iterator[None]:
    """Run modalrec's Dropout as torch's (bernoulli_ masks): the 'before' of the cheaper-mask lever."""
    fast = Dropout.forward
    Dropout.forward = torch.nn.Dropout.forward
    try:
        yield
    finally:
        Dropout.forward = fast


@contextlib.contextmanager
def session4_paths(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` (a FindRec) through the experts and normalisations of session 4: ReLU -> dropout ->
    ``F.normalize`` -> gate product under autograd, and autograd's ``F.normalize`` for every row normalisation (the
    'before' of the fused mixture and :func:`~modalrec.nn.unit.unit_norm`; the same function, see their tests)."""
    import modalrec.models.sequential.findrec as findrec_module
    import modalrec.nn.routing as routing_module

    experts = getattr(model, "experts", None)
    fast = findrec_module.unit_norm

    def normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
        return torch.nn.functional.normalize(x, dim=-1, eps=eps)

    findrec_module.unit_norm = routing_module.unit_norm = normalize
    if experts is not None:
        experts.fused = False
    try:
        yield
    finally:
        findrec_module.unit_norm = routing_module.unit_norm = fast
        if experts is not None:
            experts.fused = True


def amp_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], amp: bool) -> Callable[[], None]:
    """One training step (forward + backward), under bf16 autocast when ``amp`` (what train.amp=true does)."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            loss = model.loss(batch)["loss"]
        loss.backward()

    return step


SESSION3 = "findrec mmd all (session 3 paths)"  # + torch dropout masks, each position encoded
SESSION4 = "findrec mmd all (session 4 paths)"  # autograd experts mixture and F.normalize


SPARSE = {"mode": "mmd", "expert_routing": "top1", "xattn_dropout_masks": "uniform"}  # the cheapest mmd options
FAST = "findrec mmd all, expert_routing=top1, xattn_dropout_masks=uniform, router_scope=position, bandwidth_rows=256"
FINDRECS: dict[str, dict[str, Any]] = {  # FindRec config overrides of the rows below
    "faithful": {},
    "mmd": {"mode": "mmd"},
    "mmd before": {"mode": "mmd", "encode_per_item": False},
    "mmd window": {"mode": "mmd", "xattn_window": 50},
    "mmd uniform": {"mode": "mmd", "xattn_dropout_masks": "uniform"},
    "mmd top1": {"mode": "mmd", "expert_routing": "top1"},
    "mmd sparse": SPARSE,
    "mmd top1 position": {"mode": "mmd", "expert_routing": "top1", "router_scope": "position"},
    "mmd top1 position rows256": {"mode": "mmd", "expert_routing": "top1", "router_scope": "position", "bandwidth_rows": 256},
    "mmd sparse position rows256": {**SPARSE, "router_scope": "position", "bandwidth_rows": 256},
}


def variants(ctx: DataContext, length: int) -> dict[str, tuple[Callable[[], torch.nn.Module], bool, str, bool]]:
    """name -> (the model, built on first use and shared by the rows that name it; all-position targets; the row whose
    old paths it runs (or ""); bf16 autocast). Built lazily, so ``--rows`` runs against an older library too."""

    @functools.cache
    def build(kind: str) -> torch.nn.Module:
        torch.manual_seed(0)
        if kind == "sasrec":
            return SASRec(SASRec.Config(dim=128, heads=2, max_len=length), ctx)
        if kind == "mamba4rec":
            from modalrec.models.sequential.mamba4rec import Mamba4Rec

            return Mamba4Rec(Mamba4Rec.Config(dim=128, max_len=length), ctx)
        return FindRec(FindRec.Config(max_len=length, **FINDRECS[kind]), ctx)

    def model(kind: str) -> Callable[[], torch.nn.Module]:
        return functools.partial(build, kind)

    return {
        "sasrec last": (model("sasrec"), False, "", False),
        "findrec faithful last": (model("faithful"), False, "", False),
        "findrec faithful last (session 4 paths)": (model("faithful"), False, SESSION4, False),
        "sasrec all": (model("sasrec"), True, "", False),
        "findrec mmd all": (model("mmd"), True, "", False),
        SESSION4: (model("mmd"), True, SESSION4, False),
        SESSION3: (model("mmd before"), True, SESSION3, False),
        "findrec mmd all, xattn_dropout_masks=uniform": (model("mmd uniform"), True, "", False),
        "findrec mmd all, xattn_window=50": (model("mmd window"), True, "", False),
        "findrec mmd all, expert_routing=top1": (model("mmd top1"), True, "", False),
        "findrec mmd all, expert_routing=top1, xattn_dropout_masks=uniform": (model("mmd sparse"), True, "", False),
        "findrec mmd all, expert_routing=top1, router_scope=position": (model("mmd top1 position"), True, "", False),
        "findrec mmd all, expert_routing=top1, router_scope=position, bandwidth_rows=256": (
            model("mmd top1 position rows256"),
            True,
            "",
            False,
        ),
        FAST: (model("mmd sparse position rows256"), True, "", False),
        "mamba4rec all (d 128, 1 layer, d_state 32)": (model("mamba4rec"), True, "", False),
        "sasrec all, bf16": (model("sasrec"), True, "", True),
        "findrec mmd all, bf16": (model("mmd"), True, "", True),
        "findrec mmd all, expert_routing=top1, xattn_dropout_masks=uniform, bf16": (model("mmd sparse"), True, "", True),
    }


def row_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], before: str, amp: bool) -> Callable[[], None]:
    """One training step of a row: ``model`` through the old paths of the row ``before`` names, if any."""
    step = amp_step(model, batch, amp)

    def run() -> None:
        with contextlib.ExitStack() as old:
            if before:  # session 3 ran session 4's paths too, with torch's dropout
                old.enter_context(session4_paths(model))
            if before == SESSION3:
                old.enter_context(torch_dropout())
            step()

    return run


def interleaved_best_times(steps: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Best of ``repeats`` wall times per step, the steps taken in turn (one of each per round, after a warm-up of
    each), so that a change in the machine's load falls on every row alike and the ratios between rows hold."""
    for step in steps.values():
        step()
    best = dict.fromkeys(steps, math.inf)
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def base_row(name: str) -> str:
    """The SASRec row a row is compared with: same objective, precision and allocator."""
    base = "sasrec " + ("last" if "last" in name else "all, bf16" if "bf16" in name else "all")
    return base + (", kept heap" if name.endswith(", kept heap") else "")


def keep_freed_memory(keep: bool) -> bool:
    """glibc's malloc: serve every allocation from the heap and keep what is freed (``mallopt(M_MMAP_MAX, 0)``,
    ``M_TRIM_THRESHOLD`` at its maximum), or back to its defaults' values. By default a block over the mmap threshold
    (at most 32 MB) is mapped fresh on every allocation and unmapped on free, so each [B, H, L, E, d] tensor of a
    FindRec step at L = 200 (52 MB) is page-faulted in anew: ~22 ms to allocate and fill, against ~1.5 ms in place.
    Process-wide; what ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295`` sets at
    start-up. False where there is no glibc ``mallopt``."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    if keep:
        return bool(mallopt(m_mmap_max, 0) and mallopt(m_trim_threshold, 2**31 - 1))
    return bool(mallopt(m_mmap_max, 65536) and mallopt(m_trim_threshold, 128 * 1024))


def width(times: dict[int, dict[str, float]]) -> int:
    """The name column's width: the longest row name, at least 72."""
    return max(72, *(len(name) for rows in times.values() for name in rows))


def findrec_vs_sasrec(repeats: int, batch: int, lengths: list[int], rows: list[str], heap: bool) -> None:
    """Every variant (or those of ``rows`` and their SASRec bases) at every length, side by side; ratios to SASRec
    at the same objective and precision, and time(L) / time(first L) per variant. ``heap``: then the same rows
    again with glibc keeping freed memory (:func:`keep_freed_memory`), every length, in this process."""
    n_items = 3000
    ctx = context(n_items, 1024)
    times: dict[int, dict[str, float]] = {length: {} for length in lengths}
    for suffix in ("", ", kept heap") if heap else ("",):
        if suffix and not keep_freed_memory(True):
            print("== no glibc mallopt here: the kept-heap rows are skipped")
            break
        for length in lengths:
            print(
                f"== training step (forward + backward), d 128, p 256, 8 heads, 2 x 1024-d features, {n_items} items, "
                f"batch {batch}, L {length}{suffix}"
            )
            wanted = {*rows, *map(base_row, rows)} if rows else None
            steps = {
                name + suffix: row_step(build(), train_batch(n_items, batch, length, all_positions), before, amp)
                for name, (build, all_positions, before, amp) in variants(ctx, length).items()
                if wanted is None or name in wanted
            }
            times[length].update(interleaved_best_times(steps, repeats))
            for name, seconds in times[length].items():
                if name.endswith(suffix) and (suffix or not name.endswith(", kept heap")):
                    base = base_row(name)
                    print(f"  {name:{width(times)}s} {seconds * 1e3:9.1f} ms   {seconds / times[length][base]:5.2f}x {base}")
    if heap:
        keep_freed_memory(False)
    first, last = lengths[0], lengths[-1]
    print(f"== time(L={last}) / time(L={first})")
    for name in times[first]:
        print(f"  {name:{width(times)}s} {times[last][name] / times[first][name]:5.2f}")


COMPILED_BLOCKS = ("cross_attention", "router", "experts", "head_fusion", "final_fusion")


def compiled_vs_eager(repeats: int, batch: int, length: int) -> None:
    """torch.compile of the scan and of FindRec's blocks against eager, in this process (compile time reported apart)."""
    from modalrec.nn.mamba import selective_scan_fused, selective_scan_ref

    print(f"== torch.compile (inductor) vs eager, forward + backward, batch {batch}, L {length}")
    g = torch.Generator().manual_seed(0)
    inner, state = 256, 16  # FindRec's Mamba: d 128, expand 2, d_state 16
    u = torch.randn(batch, length, inner, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(batch, length, inner, generator=g))
    inputs = [u, delta, -torch.rand(inner, state, generator=g) * 4, *torch.randn(2, batch, length, state, generator=g)]
    inputs.append(torch.randn(inner, generator=g))
    inputs = [x.requires_grad_() for x in inputs]

    def scan_step(scan: Callable[..., torch.Tensor]) -> Callable[[], list[torch.Tensor]]:
        def step() -> list[torch.Tensor]:
            for x in inputs:
                x.grad = None
            y = scan(*inputs)
            y.square().sum().backward()
            return [y.detach(), *(x.grad for x in inputs)]

        return step

    start = time.perf_counter()
    compiled_scan = torch.compile(selective_scan_ref, dynamic=False)
    got = scan_step(compiled_scan)()
    compile_s = time.perf_counter() - start
    want = scan_step(selective_scan_fused)()
    rel = max(((a - b).norm() / b.norm()).item() for a, b in zip(got, want))
    fused = best_time(scan_step(selective_scan_fused), repeats)
    print(f"  scan: compile {compile_s:6.1f} s, output and gradients max relative L2 difference to fused {rel:.1e}")
    for name, step in (
        ("fused (eager, the default)", scan_step(selective_scan_fused)),
        ("ref, compiled", scan_step(compiled_scan)),
    ):
        seconds = fused if name.startswith("fused") else best_time(step, repeats)
        print(f"  scan {name:56s} {seconds * 1e3:9.1f} ms   {seconds / fused:5.2f}x fused")
    print(f"  scan {'ref (eager)':56s} {best_time(scan_step(selective_scan_ref), repeats) / fused:14.2f}x fused")

    n_items = 3000
    ctx = context(n_items, 1024)
    torch.manual_seed(0)
    model = FindRec(FindRec.Config(mode="mmd", max_len=length), ctx)
    b = train_batch(n_items, batch, length, True)
    eager_modules = {name: getattr(model, name) for name in COMPILED_BLOCKS}
    eager_encoders = [bottleneck.encoder for bottleneck in model.bottlenecks]

    def use(compiled: bool) -> None:
        for name, module in eager_modules.items():
            setattr(model, name, torch.compile(module) if compiled else module)
        for bottleneck, encoder in zip(model.bottlenecks, eager_encoders):
            bottleneck.encoder = torch.compile(encoder) if compiled else encoder

    def grads() -> list[torch.Tensor]:  # evaluation mode: no dropout draws, so both paths compute the same function
        model.eval()
        model.zero_grad(set_to_none=True)
        model.loss(b)["loss"].backward()
        out = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.train()
        return out

    want = grads()
    use(True)
    start = time.perf_counter()
    got = grads()
    loss_step(model, b)()  # the training graph (dropout) compiles too
    compile_s = time.perf_counter() - start
    rel = max(((a - w).norm() / w.norm().clamp(min=1e-30)).item() for a, w in zip(got, want))
    compiled = best_time(loss_step(model, b), repeats)
    use(False)
    eager = best_time(loss_step(model, b), repeats)
    print(f"  findrec mmd all: compile {compile_s:6.1f} s, gradients max relative L2 difference to eager {rel:.1e}")
    print(f"  findrec mmd all, eager {eager * 1e3:38.1f} ms   1.00x eager")
    print(f"  findrec mmd all, blocks compiled {compiled * 1e3:28.1f} ms   {compiled / eager:5.2f}x eager")
    # where the eager step goes: two of its parts alone (forward + backward on inputs of their real shapes)
    ids = torch.randn(batch, length, model.config.dim, requires_grad=True)
    hf = torch.randn(batch, model.config.heads, length, 2 * model.config.modal_dim // model.config.heads, requires_grad=True)
    parts = {
        "ID Mamba stream (2 blocks)": lambda: model.id_stream(ids).sum().backward(),
        "router + experts": lambda: model.experts(hf, model.router(hf)).sum().backward(),
    }
    for name, part in parts.items():
        seconds = best_time(part, repeats)
        print(f"  part of the eager step: {name:37s} {seconds * 1e3:9.1f} ms   {seconds / eager:5.2f} of the step")


# the parts of a FindRec step, each a module (hooked) or a method (wrapped) of the model; an op belongs to the
# innermost part it runs in, and its backward to the part of the forward op that created its autograd node
PROFILED_MODULES = (
    ("ID embedding + Mamba stream", ("item_embedding", "id_stream")),
    ("modal projections (per distinct item)", ("projections",)),
    ("bottleneck encoders (IICM)", ("bottlenecks",)),
    ("cross-modal attention", ("cross_attention",)),
    ("router", ("router",)),
    ("experts + gate mixture", ("experts",)),
    ("head fusion", ("head_fusion",)),
    ("final fusion + norm", ("final_fusion", "final_norm")),
)
PROFILED_METHODS = (
    ("CE over the item table + loss sum", "loss"),
    ("forward glue (masks, gathers, concat, clamp)", "forward_states"),
    ("modal glue (unique, sampling, KL, row picks)", "_modal_path"),
    ("alignment (MMD, bandwidth)", "_alignment"),
)


def _label_modules(model: FindRec) -> list[Callable[[], None]]:
    """Profiler ranges "PART::<name>" around each part of ``model``; returns the undo functions."""
    from torch.profiler import record_function

    undo: list[Callable[[], None]] = []
    for label, names in PROFILED_MODULES:
        for name in names:
            module = getattr(model, name)
            if name == "bottlenecks":  # mmd encodes per distinct item through .posterior: hook the encoders
                module = torch.nn.ModuleList(bottleneck.encoder for bottleneck in module)
            ranges: list[Any] = []

            def enter(_m: torch.nn.Module, _i: Any, label: str = label, ranges: list[Any] = ranges) -> None:
                ranges.append(record_function("PART::" + label))
                ranges[-1].__enter__()

            def leave(_m: torch.nn.Module, _i: Any, _o: Any, ranges: list[Any] = ranges) -> None:
                ranges.pop().__exit__(None, None, None)

            for sub in module if isinstance(module, torch.nn.ModuleList) else [module]:
                handles = (sub.register_forward_pre_hook(enter), sub.register_forward_hook(leave))
                undo.extend(h.remove for h in handles)
    for label, method in PROFILED_METHODS:
        original = getattr(model, method)

        def wrapped(*args: Any, original: Callable[..., Any] = original, label: str = label, **kwargs: Any) -> Any:
            with record_function("PART::" + label):
                return original(*args, **kwargs)

        setattr(model, method, wrapped)
        undo.append(lambda method=method: delattr(model, method))
    return undo


def step_breakdown(model: FindRec, batch: dict[str, torch.Tensor], steps: int) -> tuple[dict[str, list[float]], float]:
    """Seconds per step by part: {part: [forward, backward]}, and the profiled step time, over ``steps`` steps."""
    from torch.autograd.profiler_util import EventList, FunctionEvent
    from torch.profiler import ProfilerActivity, profile

    undo = _label_modules(model)
    try:
        loss_step(model, batch)()  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(steps):
                loss_step(model, batch)()
    finally:
        for fn in undo:
            fn()
    events: EventList = prof.events()

    def owner(event: FunctionEvent) -> tuple[str | None, FunctionEvent | None]:
        """(innermost PART label, the enclosing backward node call) of an event."""
        part, node = None, None
        while event is not None:
            if part is None and event.name.startswith("PART::"):
                part = event.name[len("PART::") :]
            if event.name.startswith("autograd::engine::evaluate_function:"):
                node = event
            event = event.cpu_parent
        return part, node

    created: dict[int, str] = {}  # autograd node sequence number -> the part of the forward op that made it
    owners = [owner(e) for e in events]
    for e, (part, node) in zip(events, owners):
        if node is None and e.sequence_nr >= 0 and not e.name.startswith("PART::"):
            created.setdefault(e.sequence_nr, part or "outside the model")
    out: dict[str, list[float]] = {}
    total = 0.0
    for e, (part, node) in zip(events, owners):
        seconds = e.self_cpu_time_total / 1e6 / steps
        total += seconds
        if node is None:
            out.setdefault(part or "outside the model", [0.0, 0.0])[0] += seconds
        else:
            grad_of = created.get(node.sequence_nr, "gradient accumulation / unattributed")
            out.setdefault(grad_of, [0.0, 0.0])[1] += seconds
    return out, total


def profile_breakdown(batch: int, lengths: list[int], steps: int, kinds: list[str]) -> None:
    """Where a FindRec all-positions step goes, by part (forward and its backward), at each length, for each config
    of ``kinds`` (keys of :data:`FINDRECS`)."""
    n_items = 3000
    ctx = context(n_items, 1024)
    print(f"== where the findrec all-positions step goes (torch.profiler, {steps} steps, self CPU time by part;")
    print("   the backward of an op is charged to the part that ran the op; profiling adds per-op overhead)")
    for kind, length in itertools.product(kinds, lengths):
        torch.manual_seed(0)
        model = FindRec(FindRec.Config(max_len=length, **FINDRECS[kind]), ctx)
        parts, total = step_breakdown(model, train_batch(n_items, batch, length, True), steps)
        settings = ", ".join(f"{k}={v}" for k, v in FINDRECS[kind].items())
        print(f"  {settings}; L {length}, batch {batch}: profiled step {total * 1e3:.1f} ms  (forward / backward / share)")
        for name, (fwd, bwd) in sorted(parts.items(), key=lambda kv: -sum(kv[1])):
            print(f"    {name:48s} {fwd * 1e3:8.1f} {bwd * 1e3:8.1f} ms   {(fwd + bwd) / total:5.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="training batch of the FindRec vs SASRec section")
    parser.add_argument("--lengths", default="50,200", help="sequence lengths of the FindRec vs SASRec section")
    parser.add_argument("--skip-mixer", action="store_true", help="skip the Mamba mixer vs mambapy section")
    parser.add_argument("--compile", action="store_true", help="add torch.compile vs eager (scan and blocks, first length)")
    parser.add_argument("--profile", type=int, default=0, help="profile N all-position steps per length, by part")
    parser.add_argument("--profile-kinds", default="mmd", help="','-separated FindRec configs to profile (FINDRECS keys)")
    parser.add_argument("--skip-versus", action="store_true", help="skip the FindRec vs SASRec section")
    parser.add_argument("--rows", default="", help="';'-separated rows of that section to run (and their SASRec bases)")
    parser.add_argument("--heap", action="store_true", help="rerun those rows with glibc keeping freed memory")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of {args.repeats}")
    if not args.skip_mixer:
        mixer_vs_mambapy(args.repeats)
    lengths = [int(n) for n in args.lengths.split(",")]
    if not args.skip_versus:
        findrec_vs_sasrec(args.repeats, args.batch, lengths, [r for r in args.rows.split(";") if r], args.heap)
    if args.profile:
        profile_breakdown(args.batch, lengths, args.profile, args.profile_kinds.split(","))
    if args.compile:
        compiled_vs_eager(args.repeats, args.batch, lengths[0])


if __name__ == "__main__":
    main()
