"""Load test of ``modalrec serve``: N concurrent clients for T seconds against a real server on loopback.

For each run directory given, starts ``modalrec serve RUN`` on a free 127.0.0.1 port, warms it up,
then drives it with ``--clients`` asyncio clients (one process, one event loop, httpx) for
``--duration`` seconds with a request mix: GET /recommend for a random known user (70%), POST
/recommend with a random 5..20-item session (20%), POST /recommend/batch of 8 random users (10%),
all k=10. Prints requests/s, p50/p95/p99 latency per kind and overall, and the error count (any
non-200 or transport error). Bounded: loopback only, at most --max-requests requests per run.

    python benchmarks/serve_load.py runs/serve-bench/sasrec runs/serve-bench/ease --clients 50 --duration 30 --max-batch 1 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

KINDS = (("GET /recommend", 0.7), ("POST /recommend", 0.2), ("POST /recommend/batch", 0.1))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(run: Path, threads: int, extra: list[str]) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "modalrec",
        "serve",
        str(run),
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--threads",
        str(threads),
        *extra,
    ]
    began = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        if process.poll() is not None:
            raise SystemExit(f"server for {run} exited: {process.stderr.read()}")
        try:
            if httpx.get(url + "/health").status_code == 200:
                return process, url, time.perf_counter() - began
        except httpx.TransportError:
            time.sleep(0.2)


async def drive(
    url: str, users: list[str], items: list[str], clients: int, duration: float, max_requests: int, seed: int
) -> dict[str, list]:
    """Run the clients; returns latencies (s) per kind and the errors."""
    latencies: dict[str, list[float]] = {kind: [] for kind, _ in KINDS}
    errors: list[str] = []
    deadline = time.perf_counter() + duration
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def client(worker: int, http: httpx.AsyncClient) -> None:
        nonlocal sent
        rng = random.Random(seed * 1000 + worker)
        while time.perf_counter() < deadline and sent < max_requests:
            sent += 1
            kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
            began = time.perf_counter()
            try:
                if kind == "GET /recommend":
                    response = await http.get("/recommend", params={"user": rng.choice(users), "k": 10})
                elif kind == "POST /recommend":
                    response = await http.post("/recommend", json={"items": rng.sample(items, rng.randint(5, 20)), "k": 10})
                else:
                    response = await http.post("/recommend/batch", json={"users": rng.sample(users, 8), "k": 10})
                if response.status_code != 200:
                    errors.append(f"{kind}: {response.status_code} {response.text[:200]}")
                    continue
            except httpx.HTTPError as err:
                errors.append(f"{kind}: {type(err).__name__} {err}")
                continue
            latencies[kind].append(time.perf_counter() - began)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as http:
        await asyncio.gather(*(client(worker, http) for worker in range(clients)))
    return {"latencies": latencies, "errors": errors}


def report(result: dict, elapsed: float) -> None:
    rows = list(result["latencies"].items()) + [("all", [x for v in result["latencies"].values() for x in v])]
    print(f"{'':2}{'kind':<24}{'requests':>9}{'req/s':>9}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for kind, values in rows:
        if not values:
            continue
        p50, p95, p99 = (np.percentile(values, q) * 1000 for q in (50, 95, 99))
        print(f"{'':2}{kind:<24}{len(values):>9}{len(values) / elapsed:>9.1f}{p50:>9.1f}{p95:>9.1f}{p99:>9.1f}")
    print(f"  errors: {len(result['errors'])}")
    for line in result["errors"][:5]:
        print(f"    {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load per run (at most 120)")
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--max-batch", type=int, nargs="+", default=[1], help="server micro-batch sizes to compare (1: none)")
    args = parser.parse_args()
    duration = min(args.duration, 120.0)
    print(
        f"machine: {os.cpu_count()} CPUs (shared with other jobs), load average {os.getloadavg()[0]:.1f}; "
        f"server: 1 uvicorn worker, torch threads {args.threads}; client: {args.clients} asyncio clients in one process"
    )
    for run in args.runs:
        throughput = {}
        for max_batch in args.max_batch:
            throughput[max_batch] = load_one(run, args, duration, ["--max-batch", str(max_batch)])
        if len(throughput) > 1:
            base = throughput[args.max_batch[0]]
            print(
                "  throughput vs max-batch "
                + str(args.max_batch[0])
                + ": "
                + ", ".join(f"max-batch {b}: {t / base:.2f}x" for b, t in throughput.items())
            )


def load_one(run: Path, args: argparse.Namespace, duration: float, options: list[str]) -> float:
    """Serve one run with these options, load it, print the table; returns requests/s."""
    process, url, startup = start(run, args.threads, options)
    try:
        info = httpx.get(url + "/info").json()
        users = [u["user"] for u in httpx.get(url + "/users", params={"limit": 1000}).json()["users"]]
        items = [e["item"] for u in users[:50] for e in httpx.get(f"{url}/users/{u}", params={"limit": 20}).json()["history"]]
        items = sorted(set(items))
        asyncio.run(drive(url, users, items, args.clients, 3.0, 2000, seed=1))  # warm-up, not reported
        began = time.perf_counter()
        result = asyncio.run(drive(url, users, items, args.clients, duration, args.max_requests, seed=0))
        elapsed = time.perf_counter() - began
        print(
            f"\n{info['model']} ({info['family']}) on {info['dataset']}: {info['n_users']} users, {info['n_items']} items; "
            f"sessions by {info['session_strategy']}; serve {' '.join(options)}; startup {startup:.1f} s; {elapsed:.1f} s of load"
        )
        report(result, elapsed)
        alive = process.poll() is None and httpx.get(url + "/health").status_code == 200
        print(f"  server alive after the run: {alive}; load average now {os.getloadavg()[0]:.1f}")
        return sum(map(len, result["latencies"].values())) / elapsed
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
