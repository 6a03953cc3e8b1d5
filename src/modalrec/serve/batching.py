"""Adaptive micro-batching of single-user requests: concurrent ``GET /recommend`` calls share one
forward pass.

Scoring one user costs nearly as much as scoring dozens (EASE reads its whole n x n matrix either
way; a transformer runs the same kernels), so under concurrent load the service queues user
requests and a single worker scores everything queued since its last pass, up to ``max_batch``
users, in one :meth:`ServingEngine.recommend_users` call. No timer: when the worker is idle a
request is scored at once, so a lone client sees no added latency; under load batches grow by
themselves. Requests are grouped by ``exclude_seen`` and ranked at the largest ``k`` of the group,
then cut to each request's ``k`` (a top-k list is the prefix of a longer one).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np

from modalrec.errors import ConfigError
from modalrec.serve.engine import CandidateFilter, Ranked, ServingEngine

log = logging.getLogger(__name__)


@dataclass
class _Request:
    user: int
    k: int
    exclude_seen: bool
    future: asyncio.Future


class UserBatcher:
    """Queues single-user requests and scores them in batches of at most ``max_batch`` users."""

    def __init__(self, engine: ServingEngine, max_batch: int = 64):
        if int(max_batch) < 1:
            raise ConfigError(f"--max-batch must be >= 1 (1 turns batching off), got {max_batch}")
        self.engine = engine
        self.max_batch = int(max_batch)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self.batch_sizes: list[int] = []  # sizes of the recent passes (for tests and /info-style inspection)

    async def recommend(self, user: int, k: int, exclude_seen: bool) -> Ranked:
        loop = asyncio.get_running_loop()
        queue = self._queue
        if self._loop is not loop or queue is None:  # first call, or the app now runs in another event loop
            queue = asyncio.Queue()
            self._loop, self._queue = loop, queue
            self._worker = loop.create_task(self._work(queue))
        request = _Request(user, k, exclude_seen, loop.create_future())
        queue.put_nowait(request)
        return await request.future

    async def _work(self, queue: asyncio.Queue[_Request]) -> None:
        while True:
            pending = [await queue.get()]
            while len(pending) < self.max_batch and not queue.empty():
                pending.append(queue.get_nowait())
            pending = [r for r in pending if not r.future.done()]  # callers that went away
            if not pending:
                continue
            self.batch_sizes = [*self.batch_sizes[-999:], len(pending)]
            try:
                results = await asyncio.to_thread(self._score, pending)
            except Exception as err:
                log.exception("batched scoring failed")
                for request in pending:
                    if not request.future.done():
                        request.future.set_exception(err)
                continue
            for request, result in zip(pending, results):
                if not request.future.done():
                    request.future.set_result(result)

    def _score(self, pending: list[_Request]) -> list[Ranked]:
        """One forward per exclude_seen group (runs in a worker thread)."""
        out: dict[int, Ranked] = {}
        for exclude in (True, False):
            rows = [i for i, request in enumerate(pending) if request.exclude_seen == exclude]
            if not rows:
                continue
            k = max(pending[i].k for i in rows)
            users = np.asarray([pending[i].user for i in rows], dtype=np.int64)
            for i, ranked in zip(rows, self.engine.recommend_users(users, k, exclude, CandidateFilter())):
                cut = pending[i].k
                out[i] = Ranked(ranked.items[:cut], ranked.scores[:cut], ranked.strategy)
        return [out[i] for i in range(len(pending))]  # every request is in one of the two groups
