"""Hostile input over real HTTP: each case measured as a 500 (or a silent null) before is now a
422 whose `detail[].loc` names the field, and nothing bad is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.e2e

BELOW_YEAR_1 = "0001-01-01T00:00:00+01:00"  # the offset moves it below year 1 in UTC
OWNER = {"system_id": "hostile-bot"}  # a memory is (system_id, id): the admin names the system


@pytest.fixture(scope="module")
def http(akasha):
    headers = {"Authorization": f"Bearer {akasha['admin_key']}"}
    with httpx.Client(base_url=akasha["url"], headers=headers, timeout=120) as client:
        yield client


def _memory(**extra):
    return {"system_id": "hostile-bot", "conversation_id": "c1", "content": "hello", **extra}


def _raw(http, method, path, text: str):
    """Send `text` as the JSON body byte for byte (json.dumps could not write NaN or a lone
    surrogate the way a hostile client does)."""
    return http.request(
        method, path, content=text.encode(), headers={"Content-Type": "application/json"}
    )


def _locs(response) -> list[list]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


def test_times_that_overflow_are_422(http):
    response = http.post("/v1/memories", json={"memories": [_memory(created_at=BELOW_YEAR_1)]})
    assert _locs(response) == [["body", "memories", 0, "created_at"]]
    params = {"source": "a", "target": "b", "as_of": BELOW_YEAR_1}
    assert _locs(http.get("/v1/graph/path", params=params)) == [["query", "as_of"]]
    params = {"depth": 1, "as_of": "9999-12-31T23:59:59-01:00"}
    assert _locs(http.get("/v1/graph/entities/a/neighbors", params=params)) == [["query", "as_of"]]
    params = {"metric_name": "m", "start": BELOW_YEAR_1, "end": "2026-01-01T00:00:00Z"}
    assert _locs(http.get("/v1/metrics/query", params=params)) == [["query", "start"]]
    body = {"query": "x", "start": BELOW_YEAR_1}
    assert _locs(http.post("/v1/search", json=body)) == [["body", "start"]]


def test_times_ahead_of_now_are_422_for_data_not_for_queries(http):
    ahead = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    response = http.post("/v1/memories", json={"memories": [_memory(created_at=ahead)]})
    assert _locs(response) == [["body", "memories", 0, "created_at"]]
    point = {"timestamp": ahead, "system_id": "hostile-bot", "metric_name": "m", "value": 1}
    assert _locs(http.post("/v1/metrics", json={"points": [point]})) == [
        ["body", "points", 0, "timestamp"]
    ]
    # A query may reach as far ahead as it likes.
    params = {"metric_name": "m", "start": ahead, "end": "9999-12-31T00:00:00Z", "bucket": "raw"}
    response = http.get("/v1/metrics/query", params=params)
    assert response.status_code == 200, response.text


def test_vectors_float32_cannot_hold_are_422(http):
    for vector in ([1e308] + [0.1] * 383, [1e-50] * 384):
        assert _locs(http.post("/v1/search", json={"vector": vector})) == [["body", "vector"]]
    text = '{"vector": [Infinity' + ", 0.1" * 383 + "]}"
    assert _locs(_raw(http, "POST", "/v1/search", text)) == [["body", "vector", 0]]
    # A huge but representable vector is fine: the similarity is a number, never null.
    response = http.post("/v1/search", json={"vector": [3e38] * 384, "limit": 1})
    assert response.status_code == 200, response.text
    assert all(isinstance(h["similarity"], float) for h in response.json()["results"])


def test_lone_surrogates_are_422_wherever_they_are(http):
    memory = '{"system_id": "hostile-bot", "conversation_id": "c1", "content": "hi"'
    cases = {
        ("POST", "/v1/memories"): [
            (
                '{"memories": [' + memory + ', "metadata": {"k": "\\ud800"}}]}',
                ["body", "memories", 0, "metadata", "k"],
            ),
            (
                '{"memories": [' + memory + ', "metadata": {"\\udc00": 1}}]}',
                ["body", "memories", 0, "metadata", "\\udc00"],
            ),
            (
                '{"memories": [{"system_id": "hostile-bot", "conversation_id": "c1", '
                '"content": "a\\ud800b"}]}',
                ["body", "memories", 0, "content"],
            ),
        ],
        ("POST", "/v1/search"): [('{"query": "\\udfff"}', ["body", "query"])],
        ("POST", "/v1/graph/entities"): [
            (
                '{"entities": [{"id": "e1", "type": "T", "properties": {"n": "\\ud83d"}}]}',
                ["body", "entities", 0, "properties", "n"],
            )
        ],
    }
    for (method, path), bodies in cases.items():
        for text, loc in bodies:
            assert _locs(_raw(http, method, path, text)) == [loc], text


def test_nan_and_infinity_are_422(http):
    point = '{"timestamp": "2026-01-01T00:00:00Z", "system_id": "s", "metric_name": "m"'
    cases = [
        (
            "/v1/metrics",
            '{"points": [' + point + ', "value": NaN}]}',
            ["body", "points", 0, "value"],
        ),
        (
            "/v1/metrics",
            '{"points": [' + point + ', "value": 1e999}]}',
            ["body", "points", 0, "value"],
        ),
        (
            "/v1/memories",
            '{"memories": [{"system_id": "s", "conversation_id": "c", "content": "x", '
            '"metadata": {"a": [1, -Infinity]}}]}',
            ["body", "memories", 0, "metadata", "a", 1],
        ),
    ]
    for path, text, loc in cases:
        assert _locs(_raw(http, "POST", path, text)) == [loc], text


def test_deep_nesting_is_422_and_nothing_is_stored(http):
    deep: dict = {}
    for _ in range(400):
        deep = {"a": deep}
    response = http.post("/v1/memories", json={"memories": [_memory(id="deep-1", metadata=deep)]})
    (loc,) = _locs(response)
    assert loc[:5] == ["body", "memories", 0, "metadata", "a"]
    assert http.get("/v1/memories/deep-1", params=OWNER).status_code == 404
    # Deeper than Python's json can even decode: still a 422, not a 400 or a 500.
    text = '{"memories": ' + "[" * 5000 + "]" * 5000 + "}"
    assert _locs(_raw(http, "POST", "/v1/memories", text)) == [["body"]]


def test_clean_unicode_and_nesting_round_trip(http):
    metadata = {"lang": "pt", "emoji": "\U0001f600 ção", "deep": {"a": {"b": [1, 2.5, None]}}}
    response = http.post("/v1/memories", json={"memories": [_memory(id="ok-1", metadata=metadata)]})
    assert response.status_code == 201, response.text
    stored = http.get("/v1/memories/ok-1", params=OWNER)
    assert stored.status_code == 200 and stored.json()["metadata"] == metadata
