"""Explanations of recommendations: FindRec's routing weights per recommended item in the engine, the HTTP API
(explain=true), `modalrec recommend --explain` and the page; models without one say so instead of failing."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from _serve_helpers import Server, start_server
from typer.testing import CliRunner

from modalrec.cli import app
from modalrec.config import resolve
from modalrec.data.storage import save_dataset
from modalrec.data.synthetic import make_synthetic
from modalrec.serve.engine import CandidateFilter, ServingEngine
from modalrec.train.experiment import train

FINDREC = [
    "model.mode=mmd",
    "model.dim=16",
    "model.modal_dim=16",
    "model.heads=4",
    "model.experts=3",
    "model.router_hidden=16",
    "model.max_len=12",
]


@pytest.fixture(scope="module")
def findrec_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("explain")
    save_dataset(
        make_synthetic(n_users=80, n_items=40, n_clusters=4, feature_dims={"text": 12, "image": 8}, seed=0), root / "data"
    )
    cfg = resolve(
        [
            "model=findrec",
            f"dataset={root / 'data'}",
            f"run.dir={root}",
            "run.name=findrec",
            "train.epochs=1",
            "train.progress=false",
            *FINDREC,
        ]
    )
    return train(cfg)[0].path


@pytest.fixture(scope="module")
def findrec_server(findrec_run: Path) -> Iterator[Server]:
    yield from start_server(findrec_run)


def _check(explanation: dict) -> None:
    assert set(explanation) == {"experts", "head_experts", "streams"}
    assert len(explanation["experts"]) == 3 and sum(explanation["experts"]) == pytest.approx(1.0, abs=1e-3)
    assert len(explanation["head_experts"]) == 4
    assert set(explanation["streams"]) == {"id", "image", "text"} and sum(explanation["streams"].values()) == pytest.approx(
        1.0, abs=1e-4
    )


def test_engine_explains_each_item_with_the_models_routing(findrec_run: Path) -> None:
    engine = ServingEngine.open(findrec_run)
    assert engine.explains
    users = np.array([0, 3])
    ranked = engine.recommend_users(users, 5, True, CandidateFilter())
    explained = engine.explain_users(users, ranked)
    assert [len(row) for row in explained] == [len(r.items) for r in ranked] == [5, 5]
    for row in explained:
        for explanation in row:
            _check(explanation)
    import torch

    direct = engine.model.explain(engine._user_batch(users), torch.from_numpy(np.stack([r.items for r in ranked])))
    assert direct == explained
    session = engine.recommend_session(engine.history(1)[:4], 4, True, CandidateFilter())
    assert len(engine.explain_session(engine.history(1)[:4], session)) == 4
    assert engine.explain_session(np.array([], dtype=np.int64), engine.popular(3, CandidateFilter())) is None


def test_http_explain_true_attaches_routing_weights(findrec_server: Server) -> None:
    client = findrec_server.client
    plain = client.get("/recommend", params={"user": "0", "k": 5}).json()
    explained = client.get("/recommend", params={"user": "0", "k": 5, "explain": "true"}).json()
    assert [e["item"] for e in plain["items"]] == [e["item"] for e in explained["items"]]
    assert all(e["explanation"] is None for e in plain["items"]) and explained["explain_note"] is None
    for entry in explained["items"]:
        _check(entry["explanation"])
    session = client.post("/recommend", json={"items": ["1", "2", "3"], "k": 4, "explain": True}).json()
    assert len(session["items"]) == 4 and all(e["explanation"] for e in session["items"])
    batch = client.post(
        "/recommend/batch", json={"users": ["0", "nobody"], "k": 3, "explain": True, "fallback": "popularity"}
    ).json()
    model_list, popular_list = batch["results"]
    assert all(e["explanation"] for e in model_list["items"])
    assert all(e["explanation"] is None for e in popular_list["items"]) and "popularity fallback" in popular_list["explain_note"]
    assert client.get("/info").json()["explains"] is True


def test_models_without_an_explanation_say_so(sasrec_server: Server) -> None:
    client = sasrec_server.client
    response = client.get("/recommend", params={"user": "0", "k": 5, "explain": "true"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["items"]) == 5 and all(e["explanation"] is None for e in body["items"])
    assert body["explain_note"] == "model 'sasrec' has no explanation of its recommendations"
    assert client.get("/info").json()["explains"] is False


def test_cli_recommend_explain(findrec_run: Path, runs: dict[str, Path]) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["recommend", str(findrec_run), "--user", "0", "-k", "3", "--explain", "--json"])
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(result.output)
    assert len(entry["items"]) == 3
    for item in entry["items"]:
        _check(item["explanation"])
    table = runner.invoke(app, ["recommend", str(findrec_run), "--user", "0", "-k", "3", "--explain"])
    assert table.exit_code == 0 and "experts" in table.output and "e0 " in table.output and "streams" in table.output
    other = runner.invoke(app, ["recommend", str(runs["sasrec"]), "--user", "0", "-k", "3", "--explain", "--json"])
    assert other.exit_code == 0, other.output
    assert "model 'sasrec' has no explanation" in other.output


def test_the_page_shows_the_routing_weights(findrec_server: Server) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    browser_path = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver_path = shutil.which("chromedriver")
    if browser_path is None or driver_path is None:
        pytest.skip("needs chromium and chromedriver")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(findrec_server.url + "/")
        wait.until(lambda d: "findrec" in d.find_element(By.ID, "info").text)
        driver.find_element(By.ID, "explain").click()
        box = driver.find_element(By.ID, "user")
        box.send_keys("0")
        driver.find_element(By.ID, "go").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#recs li.card .explain")) == 10)
        card = driver.find_elements(By.CSS_SELECTOR, "#recs li.card")[0]
        labels = [e.text for e in card.find_elements(By.CSS_SELECTOR, ".bar em")]
        assert [label.split()[0] for label in labels] == ["id", "image", "text", "e0", "e1", "e2"]
        expected = findrec_server.client.get("/recommend", params={"user": "0", "k": 10, "explain": "true"}).json()["items"][0]
        assert labels[0] == f"id {expected['explanation']['streams']['id']:.2f}"
    finally:
        driver.quit()
