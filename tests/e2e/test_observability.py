"""What an operator watches, on the deployed Akasha: /metrics over HTTP (series move after
requests, no tenant data in labels), request ids from the ingress to the keys actor's JSON log
lines, and no API key in any of Ray's log files."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

# Ray's metrics agent exports what workers recorded every few seconds (10 s in Ray 2.60).
EXPORT_WAIT_S = 90


def _scrape(url: str) -> dict[tuple[str, frozenset], float]:
    answer = httpx.get(f"{url}/metrics", timeout=60)  # no key: it holds no tenant data
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    values: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            values[key] = values.get(key, 0.0) + sample.value
    return values


def _total(values: dict, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels` (any worker, node)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= ls)


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + EXPORT_WAIT_S
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(2)


def test_metrics_move_after_requests(akasha, admin):
    url = akasha["url"]
    system = f"obs-{uuid.uuid4().hex[:8]}"
    before = _scrape(url)
    searches = "akasha_tier_search_seconds_count"
    route = {"route": "/v1/search", "method": "POST"}
    admin.ingest(
        [{"system_id": system, "conversation_id": "c", "content": f"note {i}"} for i in range(3)],
        progress=False,
    )
    for _ in range(2):
        admin.search("a note", system_ids=[system], limit=2)
    admin.migrate()

    def moved() -> bool:
        now = _scrape(url)
        checks = [
            _total(now, "akasha_http_requests_total", status="200", **route)
            >= _total(before, "akasha_http_requests_total", status="200", **route) + 2,
            _total(now, "akasha_http_request_seconds_count", **route)
            >= _total(before, "akasha_http_request_seconds_count", **route) + 2,
            _total(now, searches, tier="hot") >= _total(before, searches, tier="hot") + 2,
            _total(now, "akasha_memories_ingested_total", tier="hot")
            >= _total(before, "akasha_memories_ingested_total", tier="hot") + 3,
            _total(now, "akasha_migration_passes_total", outcome="ok")
            >= _total(before, "akasha_migration_passes_total", outcome="ok") + 1,
        ]
        return all(checks)

    _until(moved, "the request, search, ingest and migration series did not move")
    now = _scrape(url)
    assert _total(now, "akasha_component_up", component="hot-0") == 1.0
    assert _total(now, "akasha_component_up", component="keys") == 1.0
    assert _total(now, "akasha_metrics_nodes") >= 1
    # Labels name routes, tiers and components, never a system, memory or key.
    for _, labels in now:
        for _, value in labels:
            assert system not in value and akasha["admin_key"] not in value


def test_a_request_id_reaches_the_keys_actors_log(akasha, admin):
    request_id = f"e2e-{uuid.uuid4().hex}"
    answer = httpx.post(
        f"{akasha['url']}/v1/keys",
        json={"system_ids": [f"obs-{uuid.uuid4().hex[:8]}"], "scopes": ["read"]},
        headers={"Authorization": f"Bearer {akasha['admin_key']}", "X-Request-ID": request_id},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["x-request-id"] == request_id
    key_id = answer.json()["key_id"]
    made = httpx.get(f"{akasha['url']}/healthz", timeout=60)
    assert len(made.headers["x-request-id"]) >= 16  # one is made when none is sent

    def logged() -> list[dict]:
        return [
            line
            for line in _json_lines(_logs_dir(), request_id)
            if line.get("request_id") == request_id
        ]

    _until(lambda: any(key_id in line["message"] for line in logged()), "no keys actor line")
    keys_line = next(line for line in logged() if key_id in line["message"])
    assert keys_line["name"] == "akasha.keys" and keys_line["levelname"] == "INFO"


def test_no_api_key_in_any_log_file(akasha, admin):
    scoped = admin.create_key([f"obs-{uuid.uuid4().hex[:8]}"], ["read", "write"])
    # Use both keys, well and badly, so every path that could log one runs.
    for key in (akasha["admin_key"], scoped):
        headers = {"Authorization": f"Bearer {key}"}
        httpx.get(f"{akasha['url']}/healthz", headers=headers, timeout=60)
        httpx.post(f"{akasha['url']}/v1/search", json={"limit": 0}, headers=headers, timeout=60)
        httpx.get(f"{akasha['url']}/v1/keys", headers=headers, timeout=60)
    httpx.get(f"{akasha['url']}/v1/keys", headers={"Authorization": "Bearer ak_bogus"}, timeout=60)
    time.sleep(2)  # let the workers flush their log files
    files = [p for p in _logs_dir().rglob("*") if p.is_file()]
    assert files
    for path in files:
        data = path.read_bytes()
        for secret in (akasha["admin_key"], scoped):
            assert secret.encode() not in data, f"an API key is in {path}"


def _logs_dir() -> Path:
    """The session log dir of the Ray cluster the deployment runs on (started by this process)."""
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path())


def _json_lines(logs: Path, needle: str) -> list[dict]:
    lines = []
    for path in logs.glob("worker-*.err"):
        for raw in path.read_text(errors="replace").splitlines():
            if needle in raw and raw.startswith("{"):
                try:
                    lines.append(json.loads(raw))
                except json.JSONDecodeError:
                    continue
    return lines
