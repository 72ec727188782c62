"""Metrics over HTTP: a 202 point is in the very next query (no polling), and `/healthz` (with a
key) reports the metrics writer: status, flavour, points waiting."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_an_accepted_point_is_in_the_next_query(akasha):
    start = datetime(2026, 4, 1, tzinfo=UTC)
    with httpx.Client(
        base_url=akasha["url"],
        headers={"Authorization": f"Bearer {akasha['admin_key']}"},
        timeout=60,
    ) as http:
        for i in range(5):
            point = {
                "timestamp": (start + timedelta(minutes=i)).isoformat(),
                "system_id": "ryw-bot",
                "metric_name": "latency_ms",
                "value": float(i),
            }
            response = http.post("/v1/metrics", json={"points": [point]})
            assert response.status_code == 202, response.text
            for bucket in ("raw", "5m", "1h"):
                response = http.get(
                    "/v1/metrics/query",
                    params={
                        "system_id": "ryw-bot",
                        "metric_name": "latency_ms",
                        "bucket": bucket,
                        "start": start.isoformat(),
                        "end": (start + timedelta(hours=1)).isoformat(),
                    },
                )
                assert response.status_code == 200, response.text
                buckets = response.json()["buckets"]
                assert sum(b["count"] for b in buckets) == i + 1, (bucket, buckets)
                assert max(b["max"] for b in buckets) == float(i)

        health = http.get("/healthz").json()
    timeseries = health["components"]["timeseries"]
    assert timeseries["status"] == "ok" and timeseries["flavour"].startswith("duckdb")
    assert isinstance(timeseries["pending_points"], int) and "error" not in timeseries
