"""The real service: ``modalrec serve`` in a subprocess, called over HTTP on a loopback port."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from _serve_helpers import Server

N_ITEMS = 100


def test_recommend_known_user(ease_server: Server) -> None:
    history = ease_server.client.get("/users/3", params={"limit": 1000}).json()
    seen = {entry["item"] for entry in history["history"]}
    assert history["n_interactions"] == len(history["history"]) > 0
    response = ease_server.client.get("/recommend", params={"user": "3", "k": 7})
    assert response.status_code == 200
    body = response.json()
    assert body["user"] == "3" and body["strategy"] == "model" and body["k"] == 7 and len(body["items"]) == 7
    items = [entry["item"] for entry in body["items"]]
    assert not seen & set(items)
    # user 3 walks in cluster 3 (items 60..79): its unseen items come first
    unseen_in_cluster = {str(i) for i in range(60, 80)} - seen
    assert set(items[: len(unseen_in_cluster)]) == unseen_in_cluster
    assert all(entry["title"] and entry["title"].startswith(f"item {entry['item']} ") for entry in body["items"])
    scores = [entry["score"] for entry in body["items"]]
    assert scores == sorted(scores, reverse=True)
    with_seen = ease_server.client.get("/recommend", params={"user": "3", "k": 7, "exclude_seen": "false"}).json()
    assert seen & {entry["item"] for entry in with_seen["items"]}


def test_unknown_user_404_or_popularity(ease_server: Server) -> None:
    missing = ease_server.client.get("/recommend", params={"user": "no-such-user"})
    assert missing.status_code == 404
    assert "unknown user 'no-such-user'" in missing.json()["detail"] and "fallback=popularity" in missing.json()["detail"]
    popular = ease_server.client.get("/recommend", params={"user": "no-such-user", "fallback": "popularity", "k": 5}).json()
    assert popular["strategy"] == "popularity" and len(popular["items"]) == 5
    counts = [ease_server.client.get(f"/items/{entry['item']}").json()["popularity"] for entry in popular["items"]]
    assert counts == sorted(counts, reverse=True)
    assert ease_server.client.get("/users/no-such-user").status_code == 404


def test_session_with_unknown_items_and_filters(ease_server: Server, sasrec_server: Server) -> None:
    for server, strategy in ((ease_server, "co-occurrence"), (sasrec_server, "model")):
        body = {"items": ["43", 44, "nope", "45", "46"], "k": 5, "deny": ["47"]}
        response = server.client.post("/recommend", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        assert result["strategy"] == strategy and result["unknown_items"] == ["nope"] and result["user"] is None
        items = [entry["item"] for entry in result["items"]]
        assert len(items) == 5 and not {"43", "44", "45", "46", "47"} & set(items)
        assert sum(int(item) // 20 == 2 for item in items) >= 4  # the session is in cluster 2
        allowed = server.client.post("/recommend", json={"items": ["43"], "k": 10, "allow": ["1", "2", "43", "zzz"]}).json()
        assert [entry["item"] for entry in allowed["items"]] in (["1", "2"], ["2", "1"])
    nothing_known = ease_server.client.post("/recommend", json={"items": ["x", "y"], "k": 3}).json()
    assert nothing_known["strategy"] == "popularity" and nothing_known["unknown_items"] == ["x", "y"]


def test_batch_equals_single_requests(ease_server: Server, sasrec_server: Server) -> None:
    for server in (ease_server, sasrec_server):
        users = ["0", "17", "nobody", "42", "199"]
        batch = server.client.post("/recommend/batch", json={"users": users, "k": 6}).json()
        assert batch["unknown_users"] == ["nobody"]
        assert [r["user"] for r in batch["results"]] == ["0", "17", "42", "199"]
        for result in batch["results"]:
            single = server.client.get("/recommend", params={"user": result["user"], "k": 6}).json()
            assert [e["item"] for e in single["items"]] == [e["item"] for e in result["items"]]
        with_fallback = server.client.post("/recommend/batch", json={"users": users, "k": 6, "fallback": "popularity"}).json()
        assert [r["strategy"] for r in with_fallback["results"]] == ["model", "model", "popularity", "model", "model"]


def test_items_images_info_health(ease_server: Server) -> None:
    item = ease_server.client.get("/items/5").json()
    assert item["item"] == "5" and item["title"] == "item 5 (cluster 0)" and item["popularity"] > 0
    assert item["metadata"]["categories"] == ["cluster-0"] and item["image"] == "/images/5"
    image = ease_server.client.get(item["image"])
    assert image.status_code == 200 and image.headers["content-type"] == "image/png" and image.content.startswith(b"\x89PNG")
    assert ease_server.client.get("/items/50").json()["image"] is None  # no file for item 50
    assert ease_server.client.get("/images/50").status_code == 404
    assert ease_server.client.get("/items/9999").status_code == 404
    info = ease_server.client.get("/info").json()
    assert info["model"] == "ease" and info["family"] == "general" and info["n_items"] == N_ITEMS and info["n_users"] == 200
    assert info["session_strategy"] == "co-occurrence" and info["has_images"] and not info["approximate"]
    assert 0 < info["metrics"]["test"]["ndcg@10"] <= 1 and info["selected_by"]
    assert info["limits"]["max_batch_users"] == 50
    assert ease_server.client.get("/health").json() == {"status": "ok"}
    page = ease_server.client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "/static/app.js" in page.text


def test_bad_input_gets_4xx_never_500(ease_server: Server) -> None:
    client = ease_server.client
    for k in (0, -1, N_ITEMS + 1, "ten"):
        assert client.get("/recommend", params={"user": "3", "k": k}).status_code == 422, k
        assert client.post("/recommend", json={"items": ["1"], "k": k}).status_code == 422, k
    assert client.get("/recommend", params={"user": "3", "k": N_ITEMS}).status_code == 200
    assert client.get("/recommend").status_code == 422  # user missing
    json_headers = {"content-type": "application/json"}
    for body in (
        b"{not json",
        b"",
        b"[]",
        b'{"items": "1"}',
        b'{"items": [null]}',
        b'{"items": [1.5]}',
        b'{"items": [], "extra": 1}',
        b"\xff\xfe",
        b'{"items": ["\xff"]}',
    ):
        response = client.post("/recommend", content=body, headers=json_headers)
        assert response.status_code == 422, (body, response.status_code, response.text)
    assert client.post("/recommend/batch", json={"users": "3"}).status_code == 422
    assert client.post("/recommend/batch", json={"users": ["3"], "fallback": "random"}).status_code == 422
    assert ease_server.alive()


def test_oversized_requests_get_413(ease_server: Server) -> None:
    client = ease_server.client
    many = [str(i % 100) for i in range(41)]  # limits: 50 batch users, 40 session items, 60 filter items, 4000 bytes
    for path, body, limit in (
        ("/recommend", {"items": many}, "max-session-items"),
        ("/recommend", {"items": ["1"], "deny": many + many}, "max-filter-items"),
        ("/recommend/batch", {"users": many + many[:10]}, "max-batch-users"),
        ("/recommend", {"items": ["1"] * 2000}, "max-body-bytes"),
    ):
        response = client.post(path, json=body)
        assert response.status_code == 413, (path, response.text)
        assert limit in response.json()["detail"]

    def chunked():  # no Content-Length: the limit is counted while reading
        yield b'{"items": ['
        for _ in range(1000):
            yield b'"1", '
        yield b'"1"]}'

    response = client.post("/recommend", content=chunked(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert ease_server.alive()


def test_concurrent_clients_get_consistent_answers(sasrec_server: Server) -> None:
    users = [str(u) for u in range(0, 200, 5)]
    expected = {u: sasrec_server.client.get("/recommend", params={"user": u, "k": 10}).json()["items"] for u in users}

    def call(user: str) -> tuple[str, int, list]:
        with httpx.Client(base_url=sasrec_server.url, timeout=30.0) as client:
            response = client.get("/recommend", params={"user": user, "k": 10})
            return user, response.status_code, response.json()["items"]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(call, users * 4))
    for user, status, items in answers:  # batched with other users: same list, scores equal up to float rounding
        assert status == 200 and [e["item"] for e in items] == [e["item"] for e in expected[user]]
        assert np.allclose([e["score"] for e in items], [e["score"] for e in expected[user]], atol=1e-5)


def test_cli_recommend_equals_the_server_for_every_user(runs, ease_server: Server, sasrec_server: Server) -> None:
    """One rule, one kernel: `modalrec recommend RUN --json` gives every user the list GET /recommend
    gives (same items in the same order, same scores), for a general and a sequential model."""
    import json
    import subprocess
    import sys

    for server, run_dir in ((ease_server, runs["ease"]), (sasrec_server, runs["sasrec"])):
        users = [u["user"] for u in server.client.get("/users", params={"limit": 1000}).json()["users"]]
        assert len(users) == 200
        command = [
            sys.executable,
            "-m",
            "modalrec",
            "recommend",
            str(run_dir),
            "-k",
            "10",
            "--json",
            *(f"--user={u}" for u in users),
        ]
        cli = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert cli.returncode == 0, cli.stderr
        listed = {entry["user"]: entry["items"] for entry in json.loads(cli.stdout)}
        for user in users:
            served = server.client.get("/recommend", params={"user": user, "k": 10}).json()["items"]
            assert [e["item"] for e in listed[user]] == [e["item"] for e in served], user
            np.testing.assert_allclose(
                [e["score"] for e in listed[user]], [e["score"] for e in served], rtol=1e-5, atol=1e-6
            )  # float32: batched vs single products


def test_k_above_the_catalogue_lists_each_item_once(runs) -> None:
    """`recommend -k 100000` lists only the distinct unseen items left (no -inf padding), like the server."""
    import json
    import subprocess
    import sys

    cli = subprocess.run(
        [sys.executable, "-m", "modalrec", "recommend", str(runs["ease"]), "-u", "3", "-k", "100000", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    items = [entry["item"] for entry in json.loads(cli.stdout)[0]["items"]]
    assert len(items) == len(set(items)) < N_ITEMS
    assert all(np.isfinite(entry["score"]) for entry in json.loads(cli.stdout)[0]["items"])


def _raw_get(server: Server, target: str) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte (HTTP clients normalise '../' away)."""
    import socket
    from urllib.parse import urlsplit

    address = urlsplit(server.url)
    with socket.create_connection((address.hostname, address.port), timeout=30) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {address.netloc}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_images_never_leave_the_image_folder(ease_server: Server, image_dir) -> None:
    """Traversal in every spelling (raw, encoded, double-encoded, absolute, backslash, NUL, a symlink
    out of the folder) gets 400/404 and never the bytes of a file outside the image folder."""
    secret = image_dir.parent / "secret.png"
    secret.write_bytes(b"\x89PNG secret outside the image folder")
    (image_dir / "11.png").symlink_to(secret)  # item 11's 'image' points outside the folder
    try:
        targets = [
            "/images/../secret.png",
            "/images/..%2Fsecret.png",
            "/images/%2e%2e%2fsecret.png",
            "/images/%2E%2E/secret.png",
            "/images/%252e%252e%252fsecret.png",
            "/images/..%5Csecret.png",
            "/images/....//secret.png",
            f"/images/{secret}",
            f"/images/{str(secret).replace('/', '%2F')}",
            f"/images//{secret}",
            "/images/5%00.png",
            "/images/5/../../secret.png",
            "/images/11",
            "/images/%2e%2e",
            "/images/..",
            "/static/../../secret.png",
            "/static/..%2F..%2Fsecret.png",
            f"/static/{secret}",
        ]
        for target in targets:
            status, body = _raw_get(ease_server, target)
            assert status in (400, 404), (target, status, body[:200])
            assert b"secret outside" not in body, target
        assert ease_server.client.get("/items/11").json()["image"] is None
        status, body = _raw_get(ease_server, "/images/5")  # a real poster still comes through
        assert status == 200 and body.startswith(b"\x89PNG")
    finally:
        (image_dir / "11.png").unlink()
        secret.unlink()
    assert ease_server.alive()
