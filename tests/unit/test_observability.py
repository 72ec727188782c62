"""Request ids, JSON log lines without secrets, and the /metrics merge of Ray's exports."""

from __future__ import annotations

import asyncio
import json
import logging

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from akasha_ray import observability
from akasha_ray.auth import new_key

# What a Ray node's metrics agent exports (Ray 2.60, abridged): one worker's series.
NODE_EXPORT = """\
# HELP ray_akasha_http_requests_total HTTP requests answered.
# TYPE ray_akasha_http_requests_total counter
ray_akasha_http_requests_total{{Component="core_worker",NodeAddress="{node}",SessionName="s",\
WorkerId="{worker}",method="GET",otel_scope_name="ray",route="/v1/memories/{{memory_id}}",\
status="200"}} {count}
# HELP ray_node_cpu_utilization Ray's own.
# TYPE ray_node_cpu_utilization gauge
ray_node_cpu_utilization{{NodeAddress="{node}"}} 3.0
"""


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(observability.RequestMetrics)

    @app.get("/v1/memories/{memory_id}")
    async def get(memory_id: str) -> dict[str, str | None]:
        return {"request_id": observability.request_id()}

    return app


def test_a_request_id_is_taken_from_the_header_or_made_and_returned():
    with TestClient(_app()) as client:
        sent = client.get("/v1/memories/m1", headers={"X-Request-ID": "req-42"})
        assert sent.headers["x-request-id"] == "req-42"
        assert sent.json()["request_id"] == "req-42"  # seen by the code handling it
        made = client.get("/v1/memories/m1")
        assert made.json()["request_id"] == made.headers["x-request-id"]
        assert len(made.headers["x-request-id"]) == 32
        # An id that could forge log structure is replaced by a made one.
        odd = client.get("/v1/memories/m1", headers={"X-Request-ID": 'a" b'})
        assert odd.headers["x-request-id"] != 'a" b'
        assert observability.request_id() is None  # nothing leaks out of the request


def test_metrics_name_the_route_template_not_the_path():
    scope = {"route": _app().routes[-1]}
    assert observability.route_of(scope) == "/v1/memories/{memory_id}"
    assert observability.route_of({}) == "unmatched"


def test_carries_request_id_sets_the_id_for_the_call_only():
    class Actor:
        @observability.carries_request_id
        def create(self, name: str, *, size: int = 1) -> tuple[str, str | None]:
            return name, observability.request_id()

        @observability.carries_request_id
        async def revoke(self, key_id: str) -> str | None:
            return observability.request_id()

    actor = Actor()
    assert actor.create("a", request_id="r1") == ("a", "r1")
    assert actor.create("a") == ("a", None)
    assert asyncio.run(actor.revoke("k", request_id="r2")) == "r2"
    assert observability.request_id() is None
    # Ray checks calls against this signature: it must accept request_id by keyword.
    import inspect

    params = inspect.signature(inspect.unwrap(Actor.create)).parameters  # as Ray reads it
    assert params["request_id"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(params) == ["self", "name", "size", "request_id"]


def test_json_log_lines_carry_the_request_id_and_never_a_key():
    key = new_key()
    record = logging.LogRecord(
        "akasha.keys", logging.INFO, __file__, 1, "got %s and Bearer %s", (key, "tok"), None
    )
    record.request_id = "req-7"
    line = json.loads(observability.JsonFormatter().format(record))
    assert line["request_id"] == "req-7"
    assert line["name"] == "akasha.keys" and line["levelname"] == "INFO"
    assert key not in line["message"] and "tok" not in line["message"]
    assert line["message"].count("[redacted]") == 2


def test_ray_exports_merge_into_akasha_families():
    texts = [
        NODE_EXPORT.format(node="10.0.0.1", worker="w1", count=2),
        NODE_EXPORT.format(node="10.0.0.2", worker="w2", count=3),
    ]
    (family,) = observability.akasha_families(texts)
    assert family.name == "akasha_http_requests" and family.type == "counter"
    assert sorted(s.value for s in family.samples) == [2.0, 3.0]
    for sample in family.samples:
        assert sample.name == "akasha_http_requests_total"
        assert "otel_scope_name" not in sample.labels and "SessionName" not in sample.labels
        assert sample.labels["route"] == "/v1/memories/{memory_id}"


def test_the_scrape_text_parses_as_prometheus():
    report = {
        "status": "degraded",
        "components": {
            "hot-0": {"status": "ok", "memories": 5},
            "warm": {"status": "down", "error": "TimeoutError"},
        },
    }
    families = observability.health_families(report)
    registry = observability.CollectorRegistry(auto_describe=False)
    registry.register(observability._Families(families))
    text = observability.generate_latest(registry).decode()
    values = {
        (s.name, s.labels.get("component") or s.labels.get("shard")): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert values[("akasha_component_up", "hot-0")] == 1.0
    assert values[("akasha_component_up", "warm")] == 0.0
    assert values[("akasha_hot_shard_memories", "hot-0")] == 5.0
