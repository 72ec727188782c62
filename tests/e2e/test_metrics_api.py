"""Per-system metrics over HTTP: writes, bucketed queries equal to pandas, scopes, Akasha's own."""

import time
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
import pytest

pytestmark = pytest.mark.e2e


def _client(akasha, key):
    return httpx.Client(
        base_url=akasha["url"], headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


def _query_until(http, params, predicate, timeout=15):
    """Writes are batched (flushed within a second): poll until the answer shows them."""
    deadline = time.monotonic() + timeout
    while True:
        response = http.get("/v1/metrics/query", params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        if predicate(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def test_write_and_query_equal_pandas(akasha):
    start = datetime(2026, 3, 1, tzinfo=UTC)
    points = [
        {
            "timestamp": (start + timedelta(seconds=37 * i)).isoformat(),
            "system_id": "metric-bot",
            "metric_name": "latency_ms",
            "value": float(i % 17),
            "tags": {"region": "eu"},
        }
        for i in range(400)
    ]
    with _client(akasha, akasha["admin_key"]) as http:
        response = http.post("/v1/metrics", json={"points": points})
        assert response.status_code == 202 and response.json() == {"accepted": 400}
        params = {
            "system_id": "metric-bot",
            "metric_name": "latency_ms",
            "bucket": "5m",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=5)).isoformat(),
        }
        body = _query_until(http, params, lambda b: sum(x["count"] for x in b["buckets"]) == 400)

    frame = pd.DataFrame(
        {"value": [p["value"] for p in points]},
        index=pd.to_datetime([p["timestamp"] for p in points]),
    )
    expected = frame["value"].resample("5min").agg(["mean", "min", "max", "count"])
    expected = expected[expected["count"] > 0]
    got = pd.DataFrame(body["buckets"])
    assert list(pd.to_datetime(got["bucket"])) == list(expected.index)
    assert got["avg"].round(9).tolist() == expected["mean"].round(9).tolist()
    assert got["count"].tolist() == expected["count"].tolist()
    assert got["max"].tolist() == expected["max"].tolist()


def test_scoped_keys_and_bad_input(akasha, admin):
    key = admin.create_key(["metric-bot"], ["read", "write"])
    now = datetime.now(UTC)
    point = {"timestamp": now.isoformat(), "system_id": "other-bot", "metric_name": "x", "value": 1}
    window = {
        "metric_name": "x",
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": now.isoformat(),
    }
    with _client(akasha, key) as http:
        assert http.post("/v1/metrics", json={"points": [point]}).status_code == 403
        assert (
            http.get("/v1/metrics/query", params={**window, "system_id": "other-bot"}).status_code
            == 403
        )
        assert http.get("/v1/metrics/query", params=window).status_code == 403  # all systems
        assert (
            http.get("/v1/metrics/query", params={**window, "system_id": "metric-bot"}).status_code
            == 200
        )
    with _client(akasha, akasha["admin_key"]) as http:
        for bad, field in [
            ({**point, "metric_name": "Bad Name; DROP TABLE"}, "metric_name"),
            ({**point, "value": "12"}, "value"),
            ({**point, "timestamp": "2026-01-01T00:00:00"}, "timestamp"),
            ({**point, "tags": {"Bad-Key": "v"}}, "Bad-Key"),
        ]:
            response = http.post("/v1/metrics", json={"points": [bad]})
            assert response.status_code == 422, response.text
            assert field in [str(p) for e in response.json()["detail"] for p in e["loc"]]
        for bad, field in [
            ({**window, "bucket": "2m"}, "bucket"),
            ({**window, "end": window["start"]}, "end"),
            ({**window, "metric_name": "x'; --"}, "metric_name"),
            ({**window, "colour": "red"}, "colour"),
        ]:
            response = http.get("/v1/metrics/query", params=bad)
            assert response.status_code == 422, response.text
            assert field in [str(p) for e in response.json()["detail"] for p in e["loc"]]


def test_akasha_records_its_own_metrics(akasha, admin):
    admin.ingest(
        [
            {"system_id": "self-bot", "conversation_id": "c", "content": "hello there"},
            {"system_id": "self-bot", "conversation_id": "c", "content": "second one"},
        ],
        progress=False,
    )
    admin.search("hello", system_ids=["self-bot"])
    now = datetime.now(UTC)
    window = {
        "system_id": "self-bot",
        "bucket": "raw",
        "start": (now - timedelta(minutes=5)).isoformat(),
        "end": (now + timedelta(minutes=1)).isoformat(),
    }
    with _client(akasha, akasha["admin_key"]) as http:
        ingested = _query_until(
            http,
            {**window, "metric_name": "akasha.memories.ingested"},
            lambda b: sum(x["avg"] * x["count"] for x in b["buckets"]) >= 2,
        )
        assert sum(x["avg"] * x["count"] for x in ingested["buckets"]) == 2
        latency = _query_until(
            http,
            {**window, "metric_name": "akasha.search.hot.latency_ms"},
            lambda b: b["buckets"],
        )
        assert latency["buckets"] and latency["buckets"][0]["min"] >= 0
    headers = {"Authorization": f"Bearer {akasha['admin_key']}"}
    health = httpx.get(f"{akasha['url']}/healthz", headers=headers).json()
    assert health["components"]["timeseries"]["flavour"].startswith("duckdb")
