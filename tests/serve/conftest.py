"""Fixtures for the serving tests: small runs trained on synthetic data, and real servers.

The runs are trained once per session on a planted-cluster dataset (200 users, 100 items, 5
clusters of 20 items): EASE (general, closed form, no item vectors), BPR (general, item vectors)
and SASRec (sequential). Servers are real ``modalrec serve`` subprocesses on free loopback ports.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from _serve_helpers import Server, start_server

from modalrec.config import resolve
from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.train.experiment import train

RUN_SETTINGS = {
    "ease": [],
    "bpr": ["train.epochs=20", "model.dim=16", "train.lr=0.02", "train.batch_size=256"],
    "sasrec": ["train.epochs=10", "model.dim=32", "train.lr=0.005"],
}


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run directories by model name, trained on one saved synthetic dataset."""
    root = tmp_path_factory.mktemp("serve")
    data = root / "synthetic"
    save_dataset(make_synthetic(n_users=200, n_items=100, n_clusters=5, seed=0), data)
    out = {}
    for model, extra in RUN_SETTINGS.items():
        cfg = resolve(
            [f"model={model}", f"dataset={data}", f"run.dir={root / 'runs'}", f"run.name={model}", "train.progress=false", *extra]
        )
        run_dir, _ = train(cfg)
        out[model] = run_dir.path
    return out


def _png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A valid one-colour RGB PNG."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated 'posters' for items 0..9 (named <raw item id>.png), one colour each."""
    folder = tmp_path_factory.mktemp("images")
    for item in range(10):
        (folder / f"{item}.png").write_bytes(_png(20, 30, (item * 25, 90, 200 - item * 15)))
    return folder


@pytest.fixture(scope="session")
def ease_server(runs: dict[str, Path], image_dir: Path) -> Iterator[Server]:
    """EASE served with images and small limits (to reach the 413 paths cheaply)."""
    yield from start_server(
        runs["ease"],
        "--images",
        str(image_dir),
        "--max-body-bytes",
        "4000",
        "--max-batch-users",
        "50",
        "--max-session-items",
        "40",
        "--max-filter-items",
        "60",
    )


@pytest.fixture(scope="session")
def sasrec_server(runs: dict[str, Path]) -> Iterator[Server]:
    yield from start_server(runs["sasrec"])
