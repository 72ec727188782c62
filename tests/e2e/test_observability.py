"""What an operator watches, on the deployed Akasha: /metrics over HTTP (series move after
requests, an ingest lane's refusals counted, no tenant data in labels), request ids from the
ingress to the keys actor's JSON log lines, and no API key in any of Ray's log files (a generated
admin key on the shared deployment, a configured one on an Akasha of its own)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from akasha_ray.ports import free_port
from tests.conftest import VENV_BIN

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


def test_admission_refusals_are_counted_per_lane(akasha):
    """More ingests at once than the ingress's ingest lane holds (4 running + 16 waiting): the
    overflow gets 503s at once, and `akasha_admission_refused_total` counts exactly those."""
    url, system = akasha["url"], f"obs-{uuid.uuid4().hex[:8]}"
    refused = {"lane": "ingests", "reason": "full"}
    before = _scrape(url)
    text = "a long note about the weather and a train ticket to the coast " * 5

    async def flood() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {akasha['admin_key']}"}
        limits = httpx.Limits(max_connections=None)
        async with httpx.AsyncClient(headers=headers, timeout=180, limits=limits) as http:
            bodies = [
                [
                    {"system_id": system, "conversation_id": f"c{n}", "content": f"{text}{n}.{i}"}
                    for i in range(64)
                ]
                for n in range(60)
            ]
            sends = (http.post(f"{url}/v1/memories", json={"memories": b}) for b in bodies)
            return await asyncio.gather(*sends)

    answers = asyncio.run(flood())
    busy = [a for a in answers if a.status_code == 503]
    assert {a.status_code for a in answers} == {201, 503}, [a.text for a in answers[:3]]
    assert all("ingests already wait" in a.json()["message"] for a in busy)
    assert all(int(a.headers["retry-after"]) >= 1 for a in busy)

    def counted() -> bool:
        return _total(_scrape(url), "akasha_admission_refused_total", **refused) >= _total(
            before, "akasha_admission_refused_total", **refused
        ) + len(busy)

    _until(counted, f"akasha_admission_refused_total did not count the {len(busy)} refusals")
    now = _scrape(url)
    delta = _total(now, "akasha_admission_refused_total", **refused) - _total(
        before, "akasha_admission_refused_total", **refused
    )
    assert delta == len(busy)
    waiting = {(n, ls) for n, ls in now if n == "akasha_admission_requests"}
    assert any(("lane", "ingests") in ls and ("state", "waiting") in ls for _, ls in waiting)


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


def test_a_configured_admin_key_is_in_no_log_file():
    """AKASHA_ADMIN_KEY (as the KubeRay manifests set it) travels to the replicas inside Ray:
    on an Akasha of its own, used well and badly, it is in none of the head's log files."""
    from akasha_ray import local_cluster
    from akasha_ray.auth import new_key
    from tests.e2e import own_head

    configured = new_key()
    ray_tmp = Path(tempfile.mkdtemp(prefix="akh-", dir="/tmp"))
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}
        and not k.startswith("AKASHA_")
    }
    env |= {
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_TOKEN_PATH": str(ray_tmp / "auth_token"),
        "AKASHA_DATA_DIR": str(ray_tmp / "data"),
        "AKASHA_NAMESPACE": "obs-secret",
        "AKASHA_SERVE__PORT": str(port),
        "AKASHA_ADMIN_KEY": configured,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    state = {"env": env, "data_dir": ray_tmp / "data", "head_ids": []}
    try:
        own_head.up(state)
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {configured}"}
        assert httpx.get(f"{url}/v1/keys", headers=headers, timeout=60).status_code == 200
        created = httpx.post(
            f"{url}/v1/keys",
            json={"system_ids": ["obs-s"], "scopes": ["read"]},
            headers=headers,
            timeout=60,
        )
        assert created.status_code == 201, created.text
        bad = {"Authorization": f"Bearer {configured}x"}
        assert httpx.get(f"{url}/v1/keys", headers=bad, timeout=60).status_code == 401
        assert httpx.get(f"{url}/metrics", timeout=60).status_code == 200
        time.sleep(2)  # let the workers flush their log files
        logs = [p for p in (ray_tmp / "ray").rglob("*") if p.is_file() and "logs" in p.parts]
        # The files searched are the ones that log these requests: the key's id is there.
        key_id = created.json()["key_id"]
        assert any(key_id.encode() in p.read_bytes() for p in logs)
        for path in logs:
            data = path.read_bytes()
            for secret in (configured, created.json()["key"]):
                assert secret.encode() not in data, f"an API key is in {path}"
    finally:
        own_head.run([own_head.AKASHA_BIN, "down"], env, timeout=300)
        for head_id in state["head_ids"]:
            local_cluster.stop_head(head_id)
        shutil.rmtree(ray_tmp, ignore_errors=True)
