"""``modalrec serve RUN_DIR``: the typer command (registered in :mod:`modalrec.cli`); FastAPI and
uvicorn are imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modalrec.console import setup_logging
from modalrec.serve.limits import ServeLimits

_DEFAULT = ServeLimits()


def serve_command(
    run: Annotated[Path, typer.Argument(help="A finished run directory (runs/<name>).")],
    host: Annotated[str, typer.Option(help="Interface to listen on (loopback by default; 0.0.0.0 exposes it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder of item images named <raw item id>.jpg/.png (default: the folder of the dataset's image feature, when "
            "on "
            "this disk)."
        ),
    ] = None,
    ann: Annotated[
        bool, typer.Option(help="Approximate top-K with a faiss HNSW index (dot-product models; extra 'ann').")
    ] = False,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: torch's).")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    max_batch: Annotated[
        int,
        typer.Option(
            help="Most concurrent GET /recommend users scored in one pass (1: no batching, the default; see docs/serving.md)."
        ),
    ] = 1,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body; larger gets 413.")] = _DEFAULT.max_body_bytes,
    max_batch_users: Annotated[
        int, typer.Option(help="Most users in one /recommend/batch; more gets 413.")
    ] = _DEFAULT.max_batch_users,
    max_session_items: Annotated[
        int, typer.Option(help="Most items in one posted session; more gets 413.")
    ] = _DEFAULT.max_session_items,
    max_filter_items: Annotated[
        int, typer.Option(help="Most items in an allow or deny list; more gets 413.")
    ] = _DEFAULT.max_filter_items,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve a trained run over HTTP: top-K for users, sessions and batches, item metadata, a try-it page at /."""
    from modalrec.serve.app import serve

    setup_logging()
    limits = ServeLimits(max_body_bytes, max_batch_users, max_session_items, max_filter_items)
    serve(
        run,
        host=host,
        port=port,
        limits=limits,
        threads=threads,
        max_batch=max_batch,
        log_level=log_level,
        device=device,
        ann=ann,
        image_dir=images,
    )
