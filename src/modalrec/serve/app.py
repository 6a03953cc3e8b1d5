"""The HTTP service over a trained run: a FastAPI app factory and the ``modalrec serve`` entry point.

Endpoints (all JSON, raw ids in and out; the OpenAPI document is at ``/openapi.json``, docs at ``/docs``):

- ``GET /recommend?user=&k=&exclude_seen=&fallback=&explain=``: top-k for a known user (with ``max_batch``
  > 1, concurrent calls are scored together: :mod:`modalrec.serve.batching`);
- ``POST /recommend``: top-k after an ad-hoc session of items, with allow/deny candidate filters;
- ``POST /recommend/batch``: many users in one forward pass;
- ``GET /items/{id}``, ``GET /images/{id}``, ``GET /users``, ``GET /users/{id}``: catalogue and histories;
- ``GET /health``, ``GET /info``; ``GET /`` a small page to try it.

Bad input never reaches the model: unknown users 404 (or popularity with ``fallback=popularity``),
unknown posted items are reported and dropped, ``k`` outside [1, n_items] and malformed JSON 422,
requests over the :class:`~modalrec.serve.limits.ServeLimits` 413.
"""

import json
import logging
import math
import mimetypes
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias
from urllib.parse import quote

import numpy as np

from modalrec.errors import ConfigError
from modalrec.serve.batching import UserBatcher
from modalrec.serve.engine import (
    CandidateFilter,
    Ranked,
    RequestTooLargeError,
    ServeError,
    ServingEngine,
    UnknownItemError,
    UnknownUserError,
)
from modalrec.serve.limits import ServeLimits

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
ERRORS = {404: "unknown user or item", 413: "request over a configured limit"}  # 422: FastAPI documents its own


def _fastapi() -> Any:
    try:
        import fastapi
    except ImportError:
        raise ConfigError("serving needs FastAPI and uvicorn: pip install 'modalrec[serve]'") from None
    return fastapi


class BodyGuard:
    """ASGI middleware that checks request bodies before anything parses them.

    Over ``max_bytes``: 413 (a declared Content-Length at once, otherwise counted while reading, so
    chunked uploads are bounded too). Not decodable as JSON text: 422 like any malformed JSON (the
    framework would answer 400 for bytes that are not UTF-8). The checked body is replayed to the app."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, 413, f"request body over the limit of {self.max_bytes} bytes (serve --max-body-bytes)")
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._refuse(send, 413, f"request body over the limit of {self.max_bytes} bytes (serve --max-body-bytes)")
                return
            more = message.get("more_body", False)
        body = b"".join(chunks)
        try:
            body.decode(json.detect_encoding(body))
        except UnicodeDecodeError as err:
            detail = [{"type": "json_invalid", "loc": ["body", err.start], "msg": "request body is not UTF-8 encoded JSON"}]
            await self._refuse(send, 422, detail)
            return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Callable, status: int, detail: Any) -> None:
        payload = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def create_app(
    source: str | Path | ServingEngine, limits: ServeLimits | None = None, max_batch: int = 1, **engine_options: Any
) -> Any:
    """A FastAPI app serving a run directory (loaded once here) or an already built engine.

    ``max_batch``: most concurrent ``GET /recommend`` users scored in one pass (1: no batching, each
    request scored on its own in the thread pool);
    ``engine_options`` go to :class:`ServingEngine` (``ann``, ``image_dir``, ``item_chunk``, ``device``)."""
    fastapi = _fastapi()
    from fastapi import Body, Query
    from fastapi.encoders import jsonable_encoder
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool

    from modalrec.serve import schemas

    engine = source if isinstance(source, ServingEngine) else ServingEngine.open(source, **engine_options)
    engine.prepare_sessions()  # at start, not in the first session request
    limits = limits or ServeLimits()
    n_items, n_users = engine.n_items, len(engine.user_ids)
    example_user = engine.user_ids[0] if n_users else "1"
    example_items = engine.item_ids[engine.history(0)[-3:]].tolist() if n_users else []
    if TYPE_CHECKING:  # the fields; at run time FastAPI validates and documents the catalogue-bounded models
        SessionRequest: TypeAlias = schemas.SessionFields
        BatchRequest: TypeAlias = schemas.BatchFields
    else:
        SessionRequest, BatchRequest = schemas.request_models(n_items, example_items, engine.user_ids[:3].tolist())
    KQuery = Annotated[int, Query(ge=1, le=n_items, description=f"How many items, 1..{n_items}.")]
    error_responses = {status: {"model": schemas.ErrorOut, "description": text} for status, text in ERRORS.items()}

    app = fastapi.FastAPI(
        title=f"ModalRec: {engine.model.name} on {engine.dataset.name}",
        version="1",
        description=(
            f"Top-K recommendations from run `{engine.run.run_dir.path.name}` ({engine.family} model "
            f"`{engine.model.name}`, {n_users:,} users, {n_items:,} items). Ids are the dataset's raw ids."
        ),
    )
    app.add_middleware(BodyGuard, max_bytes=limits.max_body_bytes)
    app.state.engine = engine
    batcher = app.state.batcher = UserBatcher(engine, max_batch) if max_batch != 1 else None

    @app.exception_handler(ServeError)
    async def _serve_error(request: Any, err: ServeError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Any, err: RequestValidationError) -> JSONResponse:
        # FastAPI's own handler echoes the offending input, which fails to serialise when it is a
        # NaN or an infinity (json.loads accepts them; strict JSON output does not): a 500
        return JSONResponse({"detail": _json_safe(jsonable_encoder(err.errors()))}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Any, err: Exception) -> JSONResponse:  # a bug, never bad input: log it whole
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(err).__name__}); see the server log"}, status_code=500)

    # ------------------------------------------------------------------ helpers
    def item_out(item: int, score: float | None = None) -> schemas.ItemOut:
        image = engine.image(item)
        if image == "local":
            image = f"/images/{quote(engine.item_ids[item], safe='')}"
        return schemas.ItemOut(item=engine.item_ids[item], score=score, title=engine.title(item), image=image)

    def ranked_out(
        ranked: Ranked,
        k: int,
        user: str | None = None,
        unknown: list[str] | None = None,
        explain: bool = False,
        explanations: list[dict[str, Any]] | None = None,
    ) -> schemas.RecommendationOut:
        items = [item_out(int(i), float(s)) for i, s in zip(ranked.items, ranked.scores)]
        note = None
        if explain and explanations is not None:
            for item, explanation in zip(items, explanations):
                item.explanation = explanation
        elif explain:
            note = explain_note(ranked)
        return schemas.RecommendationOut(
            user=user, strategy=ranked.strategy, k=k, items=items, unknown_items=unknown or [], explain_note=note
        )

    def explain_note(ranked: Ranked) -> str:
        if not engine.explains:
            return f"model '{engine.model.name}' has no explanation of its recommendations"
        return f"the list was made by the {ranked.strategy} fallback, not by the model: no explanation"

    def check_size(what: str, count: int, bound: int, option: str) -> None:
        if count > bound:
            raise RequestTooLargeError(f"{count} {what} exceed the limit of {bound} per request (serve --{option})")

    def candidates(allow: list[str] | None, deny: list[str]) -> CandidateFilter:
        for name, values in (("allow", allow or []), ("deny", deny)):
            check_size(f"{name} items", len(values), limits.max_filter_items, "max-filter-items")
        return CandidateFilter(
            allow=None if allow is None else engine.item_indices(allow)[0],
            deny=engine.item_indices(deny)[0],
        )

    def unknown_user(raw: str) -> UnknownUserError:
        examples = ", ".join(engine.user_ids[:3].tolist())
        return UnknownUserError(
            f"unknown user '{raw}' in dataset '{engine.dataset.name}' ({n_users:,} users; raw ids look like: "
            f"{examples}); pass fallback=popularity to get popular items instead"
        )

    # ------------------------------------------------------------------ recommendations
    @app.get("/recommend", response_model=schemas.RecommendationOut, responses=error_responses, tags=["recommend"])
    async def recommend_user(
        user: Annotated[str, Query(description="Raw user id.", examples=[example_user])],
        k: KQuery = 10,
        exclude_seen: Annotated[bool, Query(description="Leave the user's known items (train, valid, test) out.")] = True,
        fallback: Annotated[
            schemas.Fallback, Query(description="'popularity': popular items for an unknown user instead of 404.")
        ] = "none",
        explain: Annotated[
            bool, Query(description="Attach the model's explanation to each item (FindRec: routing weights).")
        ] = False,
    ) -> schemas.RecommendationOut:
        """Top-k for a known user: general models from the learned user, sequential ones from the whole stored history."""
        index = engine.user_index(user)
        if index is None:
            if fallback != "popularity":
                raise unknown_user(user)
            return ranked_out(engine.popular(k, CandidateFilter()), k, user, explain=explain)
        if batcher is not None and not explain:
            return ranked_out(await batcher.recommend(index, k, exclude_seen), k, user)
        ranked = await run_in_threadpool(engine.recommend_users, np.asarray([index]), k, exclude_seen, CandidateFilter())
        explained = await run_in_threadpool(engine.explain_users, np.asarray([index]), ranked) if explain else None
        return ranked_out(ranked[0], k, user, explain=explain, explanations=explained[0] if explained else None)

    @app.post("/recommend", response_model=schemas.RecommendationOut, responses=error_responses, tags=["recommend"])
    def recommend_session(request: Annotated[SessionRequest, Body()]) -> schemas.RecommendationOut:
        """Top-k after an ad-hoc session. Sequential models score the sequence; general models use the
        item-based fallback reported in `strategy`; a session with no known item gets popularity."""
        check_size("session items", len(request.items), limits.max_session_items, "max-session-items")
        filters = candidates(request.allow, request.deny)
        items, unknown = engine.item_indices(request.items)
        ranked = engine.recommend_session(items, request.k, request.exclude_seen, filters)
        explained = engine.explain_session(items, ranked) if request.explain else None
        return ranked_out(ranked, request.k, unknown=unknown, explain=request.explain, explanations=explained)

    @app.post("/recommend/batch", response_model=schemas.BatchOut, responses=error_responses, tags=["recommend"])
    def recommend_batch(request: Annotated[BatchRequest, Body()]) -> schemas.BatchOut:
        """Top-k for many users at once: the known ones are scored in one forward pass."""
        check_size("users", len(request.users), limits.max_batch_users, "max-batch-users")
        filters = candidates(request.allow, request.deny)
        indices = [engine.user_index(raw) for raw in request.users]
        known = np.asarray([i for i in indices if i is not None], dtype=np.int64)
        ranked = engine.recommend_users(known, request.k, request.exclude_seen, filters)
        explained: Sequence[list[dict[str, Any]] | None] = [None] * len(ranked)
        if request.explain:
            explained = engine.explain_users(known, ranked) or explained
        lists = iter(zip(ranked, explained))
        popular = engine.popular(request.k, filters) if request.fallback == "popularity" and None in indices else None
        results, unknown = [], []
        for raw, index in zip(request.users, indices):
            if index is not None:
                ranked_list, explanation = next(lists)
                results.append(ranked_out(ranked_list, request.k, raw, explain=request.explain, explanations=explanation))
                continue
            unknown.append(raw)
            if popular is not None:
                results.append(ranked_out(popular, request.k, raw, explain=request.explain))
        return schemas.BatchOut(results=results, unknown_users=unknown)

    # ------------------------------------------------------------------ catalogue
    @app.get("/items/{item_id:path}", response_model=schemas.ItemInfo, responses=error_responses, tags=["catalogue"])
    def item_info(item_id: str) -> schemas.ItemInfo:
        """An item's title, image, train popularity and every metadata field the dataset has."""
        index = engine.item_index(item_id)
        if index is None:
            raise UnknownItemError(
                f"unknown item '{item_id}' ({n_items:,} items; raw ids look like: {', '.join(engine.item_ids[:3].tolist())})"
            )
        out = item_out(index)
        return schemas.ItemInfo(item=out.item, title=out.title, image=out.image, **engine.metadata(index))

    @app.get("/images/{item_id:path}", responses={200: {"content": {"image/*": {}}}, **error_responses}, tags=["catalogue"])
    def item_image(item_id: str) -> FileResponse:
        """The item's image file from the served image folder."""
        index = engine.item_index(item_id)
        path = engine.images.path(engine.item_ids[index]) if index is not None and engine.images is not None else None
        if path is None:
            raise UnknownItemError(f"no image for item '{item_id}'")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.get("/users", response_model=schemas.UserList, tags=["catalogue"])
    def users(
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> schemas.UserList:
        """A page of the known users with their interaction counts."""
        counts = np.diff(engine.histories.indptr)
        page = range(min(offset, n_users), min(offset + limit, n_users))
        return schemas.UserList(
            total=n_users, users=[schemas.UserSummary(user=engine.user_ids[u], n_interactions=int(counts[u])) for u in page]
        )

    @app.get("/users/{user_id:path}", response_model=schemas.UserHistory, responses=error_responses, tags=["catalogue"])
    def user_history(
        user_id: str,
        limit: Annotated[int, Query(ge=1, le=1000, description="How many of the most recent interactions.")] = 50,
    ) -> schemas.UserHistory:
        """A user's known interactions (all splits), the most recent ``limit`` of them, oldest first."""
        index = engine.user_index(user_id)
        if index is None:
            raise unknown_user(user_id)
        history = engine.history(index)
        return schemas.UserHistory(
            user=user_id, n_interactions=len(history), history=[item_out(int(i)) for i in history[-limit:]]
        )

    # ------------------------------------------------------------------ service
    @app.get("/health", response_model=schemas.Health, tags=["service"])
    def health() -> schemas.Health:
        """Liveness: the run is loaded and the worker answers."""
        return schemas.Health(status="ok")

    info = _info(engine, limits)

    @app.get("/info", response_model=schemas.Info, tags=["service"])
    def run_info() -> schemas.Info:
        """The served model, its dataset, and the run's validation and test metrics."""
        return info

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by its name ('nan', 'inf', '-inf')."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value


def _info(engine: ServingEngine, limits: ServeLimits) -> Any:
    import dataclasses

    from modalrec.serve import schemas

    results = engine.run.results
    metrics = {
        split: {key: float(value) for key, value in results.get(split, {}).items() if isinstance(value, (int, float))}
        for split in ("valid", "test")
    }
    config = engine.model.config
    return schemas.Info(
        run=engine.run.run_dir.path.name,
        model=engine.model.name,
        family=engine.family,
        paper=engine.model.paper,
        hyperparameters=dataclasses.asdict(config) if dataclasses.is_dataclass(config) and not isinstance(config, type) else {},
        dataset=engine.dataset.name,
        n_users=len(engine.user_ids),
        n_items=engine.n_items,
        statistics={key: value for key, value in engine.dataset.stats().items() if isinstance(value, (int, float, str))},
        selected_by=results.get("selected_by"),
        best_epoch=results.get("best_epoch"),
        metrics=metrics,
        session_strategy=engine.session_strategy,
        approximate=engine.ann is not None,
        explains=engine.explains,
        has_titles=engine.titles is not None,
        has_images=engine.images is not None or bool(engine.image_urls),
        limits=dataclasses.asdict(limits),
    )


def serve(
    run_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: ServeLimits | None = None,
    threads: int | None = None,
    max_batch: int = 1,
    log_level: str = "info",
    **engine_options: Any,
) -> None:
    """Load the run and serve it with uvicorn until interrupted (one worker process)."""
    _fastapi()
    import torch
    import uvicorn

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    app = create_app(run_dir, limits=limits, max_batch=max_batch, **engine_options)
    engine: ServingEngine = app.state.engine
    log.info(
        "serving %s on %s (%d users, %d items) at http://%s:%d/ (API docs: /docs)",
        engine.model.name,
        engine.dataset.name,
        len(engine.user_ids),
        engine.n_items,
        host,
        port,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
