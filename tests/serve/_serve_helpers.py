"""Helpers of the serving tests: a real ``modalrec serve`` subprocess and a client bound to it
(a uniquely named module, so test files can import it next to other folders' conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running ``modalrec serve`` subprocess and an HTTP client bound to it."""

    process: subprocess.Popen
    url: str
    client: httpx.Client

    def alive(self) -> bool:
        return self.process.poll() is None and self.client.get("/health").status_code == 200


def start_server(run: Path, *options: str, timeout: float = 120.0) -> Iterator[Server]:
    """Start ``modalrec serve run`` on a free loopback port, wait for /health, stop it afterwards."""
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "modalrec", "serve", str(run), "--port", str(port), "--log-level", "warning", *options]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=30.0)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}:\n{process.stdout.read()}")
            try:
                if client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not answer /health in time")
            time.sleep(0.2)
        yield Server(process, url, client)
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
