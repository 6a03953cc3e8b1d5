"""Micro-batching: concurrent single-user requests are scored in one pass with the same answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from modalrec.serve.batching import UserBatcher
from modalrec.serve.engine import CandidateFilter, ServingEngine


def test_concurrent_requests_share_a_pass_and_match_single_scoring(runs: dict[str, Path]) -> None:
    engine = ServingEngine.open(runs["sasrec"])
    batcher = UserBatcher(engine, max_batch=16)
    requests = [(user, 3 + user % 8, user % 3 != 0) for user in range(0, 200, 5)]  # mixed k and exclude_seen

    async def all_at_once() -> list:
        return await asyncio.gather(*(batcher.recommend(u, k, exclude) for u, k, exclude in requests))

    answers = asyncio.run(all_at_once())
    assert sum(batcher.batch_sizes) == len(requests) and max(batcher.batch_sizes) == 16  # 40 requests: 16 + 16 + 8
    for (user, k, exclude), ranked in zip(requests, answers):
        alone = engine.recommend_users(np.asarray([user]), k, exclude, CandidateFilter())[0]
        assert np.array_equal(ranked.items, alone.items) and np.allclose(ranked.scores, alone.scores, atol=1e-5)
    assert (
        asyncio.run(batcher.recommend(7, 5, True)).items.tolist()
        == engine.recommend_users(np.asarray([7]), 5, True, CandidateFilter())[0].items.tolist()
    )
