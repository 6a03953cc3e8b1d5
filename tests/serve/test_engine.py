"""The serving engine in process: exact ranking against the evaluator, full histories, session
fallbacks, candidate filters, popularity and the approximate index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modalrec.data.context import pad_sequences
from modalrec.data.dataset import TEST, TRAIN, VALID
from modalrec.errors import ConfigError
from modalrec.eval.ranking import Evaluator
from modalrec.serve.engine import CO_OCCURRENCE, ITEM_COSINE, MODEL, POPULARITY, CandidateFilter, ServingEngine

NONE = CandidateFilter()
CLUSTER_SIZE = 20  # make_synthetic(n_items=100, n_clusters=5): items 20c..20c+19 are cluster c


@pytest.fixture(scope="module")
def engines(runs: dict[str, Path]) -> dict[str, ServingEngine]:
    return {name: ServingEngine.open(path) for name, path in runs.items()}


def _row(matrix, user: int) -> np.ndarray:
    return matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]]


def test_history_is_every_split_in_time_order(engines: dict[str, ServingEngine]) -> None:
    engine = engines["sasrec"]  # leave-one-out: the test item is the user's latest interaction
    for user in range(0, 200, 17):
        parts = [_row(engine.ctx.histories[p], user) for p in (TRAIN, VALID, TEST)]
        assert np.array_equal(engine.history(user), np.concatenate(parts))
        assert len(parts[TEST]) == 1 and engine.history(user)[-1] == parts[TEST][0]


@pytest.mark.parametrize("model", ["ease", "bpr", "sasrec"])
def test_exact_ranking_matches_the_evaluator(engines: dict[str, ServingEngine], model: str) -> None:
    """Without exclusion the served lists equal Evaluator.topk's (same scores, same tie order); with
    exclusion they are those lists minus every known item."""
    engine = engines[model]
    users = np.arange(0, 200, 7)
    if engine.family == "sequential":
        # the evaluator's TEST input stops before the test item; serve the same sequences as sessions
        sequences = engine.ctx.history(users, TEST)
        served = [engine.recommend_session(np.asarray(s), 100, False, NONE) for s in sequences]
    else:
        served = engine.recommend_users(users, 100, False, NONE)
    items, scores = Evaluator(engine.ctx).topk(engine.model, users, 100, TEST, exclude_seen=False)
    for row, ranked in enumerate(served):
        assert np.array_equal(ranked.items, items[row].numpy())
        assert np.allclose(ranked.scores, scores[row].numpy(), atol=1e-5)
    if engine.family == "general":
        for user, full in zip(users, served):
            kept = full.items[~np.isin(full.items, engine.history(user))][:10]
            assert np.array_equal(engine.recommend_users(np.asarray([user]), 10, True, NONE)[0].items, kept)


def test_sequential_users_are_scored_from_their_whole_history(engines: dict[str, ServingEngine]) -> None:
    engine = engines["sasrec"]
    users = np.arange(0, 200, 11)
    batch = engine.recommend_users(users, 10, True, NONE)  # one forward for all
    for user, ranked in zip(users, batch):
        alone = engine.recommend_session(engine.history(user), 10, False, NONE)
        seq, lengths = pad_sequences([engine.history(user)], engine.model.max_len, engine.n_items)
        with torch.no_grad():
            scores = engine.model.score({"seq": seq, "lengths": lengths})[0].numpy()
        assert np.allclose(ranked.scores, scores[ranked.items], atol=1e-5)
        assert not np.isin(ranked.items, engine.history(user)).any()
        assert ranked.strategy == alone.strategy == MODEL


def test_session_fallbacks_follow_the_clusters(engines: dict[str, ServingEngine]) -> None:
    """Sessions inside one cluster get that cluster's items, by each model's own strategy."""
    expected = {"ease": CO_OCCURRENCE, "bpr": ITEM_COSINE, "sasrec": MODEL}
    for name, engine in engines.items():
        assert engine.session_strategy == expected[name]
        for cluster in range(5):
            session = np.arange(cluster * CLUSTER_SIZE + 3, cluster * CLUSTER_SIZE + 7)
            ranked = engine.recommend_session(session, 5, True, NONE)
            assert ranked.strategy == expected[name]
            assert not np.isin(ranked.items, session).any()
            in_cluster = (ranked.items // CLUSTER_SIZE == cluster).mean()
            assert in_cluster >= 0.8, (name, cluster, ranked.items)


def test_item_cosine_is_the_mean_cosine_to_the_session(engines: dict[str, ServingEngine]) -> None:
    engine = engines["bpr"]
    vectors = engine.model.item_vectors(slice(0, engine.n_items)).detach().numpy()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    session = np.array([3, 50, 77])
    expected = (unit @ unit[session].T).mean(1)
    ranked = engine.recommend_session(session, 100, False, NONE)
    assert np.allclose(ranked.scores, expected[ranked.items], atol=1e-5)
    assert np.all(np.diff(ranked.scores) <= 0)


def test_candidate_filters(engines: dict[str, ServingEngine]) -> None:
    engine = engines["ease"]
    allow = np.array([5, 25, 45, 65, 85, 86])
    ranked = engine.recommend_users(np.array([3]), 10, True, CandidateFilter(allow=allow, deny=np.array([86])))[0]
    assert set(ranked.items) <= set(allow) - {86} - set(engine.history(3))
    free = engine.recommend_users(np.array([3]), 5, True, NONE)[0]
    denied = engine.recommend_users(np.array([3]), 5, True, CandidateFilter(deny=free.items[:2]))[0]
    assert np.array_equal(denied.items[:3], free.items[2:5])
    nothing_left = engine.recommend_session(np.array([1, 2]), 5, True, CandidateFilter(allow=np.array([1, 2])))
    assert len(nothing_left.items) == 0 and len(nothing_left.scores) == 0


def test_popularity_and_empty_sessions(engines: dict[str, ServingEngine]) -> None:
    engine = engines["ease"]
    counts = np.asarray(engine.ctx.train.sum(axis=0)).ravel()
    expected = np.lexsort((np.arange(engine.n_items), -counts))[:10]  # count desc, lower index on ties
    ranked = engine.popular(10, NONE)
    assert ranked.strategy == POPULARITY and np.array_equal(ranked.items, expected)
    empty = engine.recommend_session(np.zeros(0, dtype=np.int64), 10, True, NONE)
    assert empty.strategy == POPULARITY and np.array_equal(empty.items, expected)


def test_short_lists_when_few_items_are_eligible(engines: dict[str, ServingEngine]) -> None:
    engine = engines["sasrec"]
    ranked = engine.recommend_session(np.array([1, 2]), 10, True, CandidateFilter(allow=np.array([1, 2, 3])))
    assert ranked.items.tolist() == [3] and np.isfinite(ranked.scores).all()


def test_ann_index_agrees_with_exact_ranking(runs: dict[str, Path], engines: dict[str, ServingEngine]) -> None:
    pytest.importorskip("faiss")
    exact = engines["bpr"]
    approximate = ServingEngine(exact.run, ann=True)
    users = np.arange(200)
    overlap = []
    for a, b, user in zip(
        exact.recommend_users(users, 10, True, NONE), approximate.recommend_users(users, 10, True, NONE), users
    ):
        assert not np.isin(b.items, exact.history(user)).any()
        assert np.all(np.diff(b.scores) <= 1e-6)
        overlap.append(len(set(a.items) & set(b.items)) / 10)
    assert np.mean(overlap) >= 0.95
    with pytest.raises(ConfigError, match="dot-product model"):
        ServingEngine(engines["ease"].run, ann=True)


def test_image_folder_resolves_only_inside_it(tmp_path) -> None:
    """Raw ids are data, not paths: an id naming a file outside the folder (relative, absolute, via a
    symlink) finds no image; a dataset's image feature provenance names the folder and its pattern."""
    from modalrec.data.dataset import ItemFeature
    from modalrec.serve.engine import ImageFolder, dataset_image_folder

    folder = tmp_path / "posters"
    (folder / "sub").mkdir(parents=True)
    (folder / "1.jpg").write_bytes(b"jpg")
    (folder / "sub" / "2.jpg").write_bytes(b"jpg")
    (tmp_path / "outside.jpg").write_bytes(b"secret")
    (folder / "3.jpg").symlink_to(tmp_path / "outside.jpg")
    (folder / "notes.txt").write_text("not an image")
    images = ImageFolder(folder)
    assert images.path("1") == (folder / "1.jpg").resolve()
    for raw in ("../outside", str(tmp_path / "outside"), "sub/../../outside", "3", "notes", "", "..", "1\x00"):
        assert images.path(raw) is None, raw
    assert images.path("sub/2") == (folder / "sub" / "2.jpg").resolve()  # inside the folder is fine
    patterned = ImageFolder(folder, "{item}.jpg")
    assert patterned.path("1") is not None and patterned.path("../outside") is None
    with pytest.raises(ConfigError, match="pattern"):
        ImageFolder(folder, "{movie}.jpg")
    with pytest.raises(ConfigError, match="does not exist"):
        ImageFolder(tmp_path / "missing")

    class Data:
        name = "own-catalogue"
        features = {
            "image": ItemFeature(
                np.zeros((2, 1), dtype=np.float32), np.ones(2, dtype=bool), {"image_folder": str(folder), "pattern": "{item}.jpg"}
            )
        }

    found = dataset_image_folder(Data())
    assert found is not None and found.root == folder.resolve() and found.pattern == "{item}.jpg"
    Data.features["image"].provenance["image_folder"] = str(tmp_path / "gone")
    assert dataset_image_folder(Data()) is None


def test_a_registered_dataset_names_its_images_under_the_shared_data(tmp_path, monkeypatch) -> None:
    """ml-1m's posters (<MovieID>.jpg under ml-1m-posters/posters) are served for any ml-1m run when
    the shared data holds them; a dataset whose ids are not MovieIDs gets none."""
    from modalrec.serve.engine import dataset_image_folder

    posters = tmp_path / "ml-1m-posters" / "posters"
    posters.mkdir(parents=True)
    (posters / "1.jpg").write_bytes(b"jpg")
    monkeypatch.setenv("MODALREC_SHARED_DATA", str(tmp_path))

    class Data:
        features: dict = {}
        name = "ml-1m"

    found = dataset_image_folder(Data())
    assert found is not None and found.path("1") == (posters / "1.jpg").resolve() and found.path("2") is None
    Data.name = "ml-1m-diffrec-clean"  # remapped ids: its items are not MovieIDs
    assert dataset_image_folder(Data()) is None
