"""Bounded work without Ray: the ingress admission (requests at once, waiting, deadline; beyond
them a 503 JSON with Retry-After), the embedder's query-first encode gate, and the cold tier's
bounded search (a default range, a cap on files read)."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from actors.tier_owner import ColdActor
from akasha_ray import config
from akasha_ray.errors import InvalidInput
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from serve_apps.admission import RATE_WINDOW_S, Admission, Limits
from serve_apps.encode_gate import QueryFirst


def _app(release: asyncio.Event) -> FastAPI:
    app = FastAPI()
    app.add_middleware(Admission)

    @app.get("/slow")
    async def slow() -> dict[str, bool]:
        await release.wait()
        return {"ok": True}

    @app.get("/fast")
    async def fast() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/v1/memories")  # the ingest lane's route
    async def ingest() -> dict[str, bool]:
        await release.wait()
        return {"ok": True}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
def limits():
    before = Admission.limits
    yield
    Admission.configure(before)


async def test_admission_runs_some_queues_some_and_refuses_the_rest(limits):
    Admission.configure(Limits(ongoing=1, queued=1, deadline_s=60, retry_after_s=2.5))
    release = asyncio.Event()
    transport = httpx.ASGITransport(app=_app(release))
    async with httpx.AsyncClient(transport=transport, base_url="http://akasha") as http:
        first = asyncio.create_task(http.get("/slow"))
        second = asyncio.create_task(http.get("/slow"))
        await asyncio.sleep(0.1)  # both admitted: one runs, one waits
        refused = await http.get("/slow")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "3"
        assert refused.json()["error"] == "unavailable" and "wait" in refused.json()["message"]
        assert (await http.get("/healthz")).status_code == 200  # never queued
        release.set()
        assert [r.status_code for r in await asyncio.gather(first, second)] == [200, 200]
        assert (await http.get("/slow")).status_code == 200  # the slots were given back


async def test_retry_after_is_the_time_the_waiting_requests_take_to_drain(limits):
    """Refused clients are told when there will be room, not to come back every second: the
    waiting requests and the clients refused before, over the rate requests finished at in the
    last RATE_WINDOW_S."""
    Admission.configure(Limits(ongoing=1, queued=2, deadline_s=60, retry_after_s=1))
    release = asyncio.Event()
    transport = httpx.ASGITransport(app=_app(release))
    async with httpx.AsyncClient(transport=transport, base_url="http://akasha") as http:
        for _ in range(5):  # 5 finished within the window: 0.5 a second
            assert (await http.get("/fast")).status_code == 200
        held = [asyncio.create_task(http.get("/slow")) for _ in range(3)]
        await asyncio.sleep(0.1)  # one runs, two wait
        refused = await http.get("/slow")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == str(round(2 * RATE_WINDOW_S / 5))
        # The next refused client comes back after the first: 2 waiting + 1 refused.
        assert (await http.get("/slow")).headers["retry-after"] == str(round(3 * RATE_WINDOW_S / 5))
        release.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 3


async def test_ingests_wait_in_a_lane_of_their_own(limits):
    """A backlog of ingests never takes the places other requests need, and the reverse."""
    Admission.configure(
        Limits(ongoing=1, queued=0, ingests_ongoing=1, ingests_queued=1, retry_after_s=1)
    )
    release = asyncio.Event()
    transport = httpx.ASGITransport(app=_app(release))
    async with httpx.AsyncClient(transport=transport, base_url="http://akasha") as http:
        ingests = [asyncio.create_task(http.post("/v1/memories")) for _ in range(2)]
        await asyncio.sleep(0.1)  # one runs, one waits: the ingest lane is full
        refused = await http.post("/v1/memories")
        assert refused.status_code == 503 and "1 ingests already wait" in refused.json()["message"]
        assert (await http.get("/fast")).status_code == 200  # other requests go on
        search = asyncio.create_task(http.get("/slow"))
        await asyncio.sleep(0.1)  # the one place of the other lane is taken: its own limits
        assert (await http.get("/fast")).status_code == 503
        release.set()
        assert [a.status_code for a in await asyncio.gather(*ingests, search)] == [200] * 3
        assert (await http.post("/v1/memories")).status_code == 200  # places given back


async def test_admission_deadline_answers_503_json(limits):
    Admission.configure(Limits(ongoing=4, queued=4, deadline_s=0.2, retry_after_s=1))
    transport = httpx.ASGITransport(app=_app(asyncio.Event()))  # never released
    async with httpx.AsyncClient(transport=transport, base_url="http://akasha") as http:
        answer = await http.get("/slow")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert "no answer within 0.2 s" in answer.json()["message"]


async def test_queries_never_wait_for_bulk_work_and_bulk_yields_to_them():
    gate = QueryFirst(max_yield_s=30)
    order: list[str] = []
    chunk_running, let_chunk_finish = threading.Event(), threading.Event()
    query_running, let_query_finish = threading.Event(), threading.Event()

    def chunk(n: int):
        def work() -> None:
            order.append(f"bulk-{n}")
            if n == 0:
                chunk_running.set()
                let_chunk_finish.wait(10)

        return work

    def slow_query() -> None:
        order.append("query-slow")
        query_running.set()
        let_query_finish.wait(10)

    async def bulk() -> None:
        for n in range(3):
            await gate.run(chunk(n), query=False)

    bulk_task = asyncio.create_task(bulk())
    await asyncio.to_thread(chunk_running.wait, 10)
    # a query while a chunk runs: answered at once, not after the chunk
    await asyncio.wait_for(gate.run(lambda: order.append("query-0"), query=True), 5)
    slow = asyncio.create_task(gate.run(slow_query, query=True))
    await asyncio.to_thread(query_running.wait, 10)
    let_chunk_finish.set()  # chunk 0 ends; chunk 1 must wait for the running query
    await asyncio.sleep(0.2)
    assert order == ["bulk-0", "query-0", "query-slow"] and gate.queries_active == 1
    let_query_finish.set()
    await asyncio.gather(bulk_task, slow)
    assert order == ["bulk-0", "query-0", "query-slow", "bulk-1", "bulk-2"]
    gate.close()


def _cold_batch(days_ago: list[int]):
    now = datetime.now(UTC)
    x = np.random.default_rng(0).standard_normal((len(days_ago), 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    memories = [
        MemoryIn(
            system_id=f"s{i % 3}",
            conversation_id="c",
            content=f"old {i}",
            created_at=now - timedelta(days=d),
        )
        for i, d in enumerate(days_ago)
    ]
    return build_batch(memories, x, model="m", model_revision="r", now=now), x


async def test_cold_search_without_start_covers_cold_search_days(tmp_path):
    settings = config.load(data_dir=tmp_path, tiers={"cold_search_days": 200})
    cold = ColdActor(config.to_dict(settings))
    batch, x = _cold_batch([100, 150, 199, 250, 400])
    await cold.insert(batch)
    found = await cold.search(x[0], 10)
    assert sorted(h["content"] for h in found) == ["old 0", "old 1", "old 2"]
    old = await cold.search(x[0], 10, start=datetime(2000, 1, 1, tzinfo=UTC))
    assert len(old) == 5  # a named start goes as far back as asked
    await cold.close()


async def test_cold_search_reading_too_many_files_names_start(tmp_path):
    settings = config.load(data_dir=tmp_path, tiers={"cold_search_max_files": 3})
    cold = ColdActor(config.to_dict(settings))
    batch, x = _cold_batch([100, 110, 120, 130, 140])  # a file per day and system: five
    await cold.insert(batch)
    with pytest.raises(InvalidInput) as refused:
        await cold.search(x[0], 10)
    assert refused.value.field == "start" and "5 files" in refused.value.message
    narrow = await cold.search(x[0], 10, start=datetime.now(UTC) - timedelta(days=125))
    assert len(narrow) == 3
    await cold.close()


async def test_a_full_embedder_queue_is_a_503_json_with_retry_after(limits):
    from ray.serve.exceptions import BackPressureError

    from serve_apps import api

    Admission.configure(Limits(retry_after_s=2))
    answer = await api._backpressure(None, BackPressureError(9, 8))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "2"
    body = json.loads(answer.body)
    assert body["error"] == "unavailable" and "max_queued_requests=8" in body["message"]
