"""Schemathesis fuzzes every operation of the live server's OpenAPI document: generated valid and
invalid requests must never get a 5xx, and every response must match the documented schema,
status codes and content types.

(The schemathesis pytest plugin's lazy fixtures do not work with pytest 9, so each operation's
hypothesis strategy is driven directly.)
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from _serve_helpers import Server
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

EXAMPLES = 15  # per operation and generation mode


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_every_operation_conforms_to_its_schema(ease_server: Server, mode: str) -> None:
    schema = schemathesis.openapi.from_url(f"{ease_server.url}/openapi.json")
    fuzzed = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if mode == "negative" and not list(operation.iter_parameters()) and not operation.get_request_payload_content_types():
            continue  # nothing to get wrong in a request without parameters or body

        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def fuzz(case) -> None:
            case.call_and_validate(base_url=ease_server.url)

        try:
            fuzz()
        except Unsatisfiable:  # e.g. a free-text path id: no request can violate the schema
            assert mode == "negative", operation.label
            continue
        fuzzed.append(f"{operation.method.upper()} {operation.path}")
    assert {"GET /recommend", "POST /recommend", "POST /recommend/batch", "GET /users"} <= set(fuzzed)
    assert ease_server.alive()


def _strict_json(text: str) -> object:
    """Parse as standard JSON: NaN and Infinity are not JSON and must never be answered."""
    import json

    def refuse(constant: str) -> None:
        raise AssertionError(f"response holds {constant}, which is not JSON: {text}")

    return json.loads(text, parse_constant=refuse)


NON_FINITE = [
    ("POST", "/recommend", '{"items": [NaN], "k": 3}'),
    ("POST", "/recommend", '{"items": ["1"], "k": NaN}'),
    ("POST", "/recommend", '{"items": [Infinity], "k": 3}'),
    ("POST", "/recommend", '{"items": ["1"], "k": -Infinity}'),
    ("POST", "/recommend", '{"items": ["1"], "k": 3, "deny": [NaN]}'),
    ("POST", "/recommend", '{"items": ["1"], "k": 3, "allow": [Infinity, NaN]}'),
    ("POST", "/recommend", '{"items": ["1"], "exclude_seen": NaN}'),
    ("POST", "/recommend", "NaN"),
    ("POST", "/recommend", '{"items": ["1"], "k": 1e400}'),  # overflows to infinity when parsed
    ("POST", "/recommend", '{"items": [-1e999], "k": 3}'),
    ("POST", "/recommend/batch", '{"users": [NaN]}'),
    ("POST", "/recommend/batch", '{"users": ["1"], "k": Infinity}'),
    ("POST", "/recommend/batch", '{"users": ["1"], "fallback": NaN}'),
    ("GET", "/recommend?user=1&k=NaN", None),
    ("GET", "/recommend?user=1&k=Infinity", None),
    ("GET", "/users?offset=NaN&limit=inf", None),
]


@pytest.mark.parametrize(("method", "path", "body"), NON_FINITE, ids=[f"{m} {p} {b}" for m, p, b in NON_FINITE])
def test_nan_and_infinity_get_422_never_500(ease_server: Server, method: str, path: str, body: str | None) -> None:
    """json.loads reads NaN/Infinity; the 422 answer echoing them must still be valid JSON."""
    headers = {"content-type": "application/json"}
    response = ease_server.client.request(method, path, content=body, headers=headers if body else None)
    assert response.status_code == 422, (response.status_code, response.text)
    detail = _strict_json(response.text)["detail"]
    assert detail and all("loc" in entry and "msg" in entry for entry in detail), detail
    assert ease_server.alive()
