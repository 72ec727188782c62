"""A Milvus outage under a running Akasha: a search over hot and warm still answers, in about the
search timeout, with the hot hits, `partial` set and the warm tier named; once Milvus is back the
answers are whole again (issue #3).

The warm actor talks to a real Milvus 2.3.5 server (tests/servers/milvus_server.py), which the
outage freezes (SIGSTOP): calls to it hang, as with a hung server or a dropped network, rather than
failing fast. The search goes the way the HTTP route's does: through the memory service, which
fans out to each tier with a per-tier timeout.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import ray

from actors import supervisor
from akasha_ray.embedding_dim import DIM
from akasha_ray.memories import MemoryService
from akasha_ray.models import MemoryIn, TierReport
from akasha_ray.records import build_batch
from akasha_ray.routing import shard_for
from akasha_ray.search import TierAnswer
from tests.servers.milvus_server import MilvusServer, milvus_server

pytestmark = pytest.mark.integration

TIMEOUT_S = 2.0  # per tier, as serve.request_timeout_s in the service
SLACK_S = 10.0  # generous: the answer must come back in about the timeout, not when Milvus does
HEALTH_WITHIN_S = 30.0
PER_TIER = 5
LIMIT = 2 * PER_TIER


@pytest.fixture(scope="module")
def milvus():
    with milvus_server() as server:
        yield server


@pytest.fixture
def warm_on_server(ray_cluster, settings, milvus: MilvusServer):
    """Settings of an Akasha whose warm tier is the Milvus server, its actors started (the
    settings fixture kills them afterwards)."""
    warm = settings.warm.model_copy(update={"uri": milvus.uri})
    serve = settings.serve.model_copy(update={"request_timeout_s": TIMEOUT_S})
    settings = settings.model_copy(update={"warm": warm, "serve": serve})
    supervisor.start_all(settings)
    return settings


def memories(now: datetime, age: timedelta, query: np.ndarray, seed: int):
    """PER_TIER memories of this age whose vectors lie close to the query."""
    rng = np.random.default_rng(seed)
    vectors = query + 0.3 * rng.standard_normal((PER_TIER, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        MemoryIn(
            system_id=f"sys-{i % 2}",
            conversation_id=f"c-{seed}-{i}",
            content=f"memory {seed}-{i}",
            created_at=now - age,
        )
        for i in range(PER_TIER)
    ]
    return build_batch(rows, vectors, model="m", model_revision="r", now=now)


def search(settings, query: np.ndarray) -> tuple[dict[str, TierAnswer], list[str], float]:
    """A search with no time range (so hot and warm are asked), as the search route makes it;
    the answers per tier, the ids it returns, and the seconds taken."""
    service = MemoryService(settings)
    started = time.perf_counter()
    found = asyncio.run(service.search(query, LIMIT, None, None, None))
    return found.answers, [h["id"] for h in found.hits], time.perf_counter() - started


def reported(answers: dict[str, TierAnswer]) -> tuple[list[TierReport], bool]:
    """The route's tier reports and `partial` flag."""
    tiers = [
        TierReport(tier=t, latency_ms=a.latency_ms, hits=len(a.hits), error=a.error)
        for t, a in answers.items()
    ]
    return tiers, any(t.error for t in tiers)


def test_a_milvus_outage_gives_a_partial_answer_with_the_hot_hits(warm_on_server, milvus):
    settings = warm_on_server
    tiers = MemoryService(settings).peers
    now = datetime.now(UTC)
    rng = np.random.default_rng(7)
    query = rng.standard_normal(DIM).astype(np.float32)
    query /= np.linalg.norm(query)
    hot = memories(now, timedelta(days=1), query, seed=1)
    warm = memories(now, timedelta(days=30), query, seed=2)
    owner = np.array([shard_for(s, len(tiers.shards)) for s in hot.column("system_id").to_pylist()])
    writes = [tiers.shards[i].insert.remote(hot.filter(owner == i)) for i in np.unique(owner)]
    ray.get([*writes, tiers.warm.insert.remote(warm)])
    hot_ids = set(hot.column("id").to_pylist())
    warm_ids = set(warm.column("id").to_pylist())

    # Healthy: both tiers answer, in full.
    answers, ids, _ = search(settings, query)
    reports, partial = reported(answers)
    assert not partial, reports
    assert {h["id"] for h in answers["hot"].hits} == hot_ids
    assert {h["id"] for h in answers["warm"].hits} == warm_ids
    assert set(ids) == hot_ids | warm_ids
    assert ray.get(tiers.warm.health.remote(), timeout=HEALTH_WITHIN_S)["reachable"] is True

    with milvus.outage():
        answers, ids, took = search(settings, query)
        reports, partial = reported(answers)
        assert took < TIMEOUT_S + SLACK_S, f"the search waited {took:.1f} s on a frozen Milvus"
        assert partial, reports
        assert [r.tier for r in reports if r.error] == ["warm"], reports
        assert answers["warm"].error == f"no answer within {TIMEOUT_S} s"
        assert answers["warm"].hits == []
        assert answers["hot"].error is None
        assert set(ids) == hot_ids  # the other tier's results are all there

        # The warm owner's health check says so, within its own bound, instead of hanging.
        started = time.perf_counter()
        health = ray.get(tiers.warm.health.remote(), timeout=HEALTH_WITHIN_S)
        assert health["reachable"] is False and health["error"], health
        print(
            f"\nduring the outage: partial answer in {took:.2f} s, "
            f"health in {time.perf_counter() - started:.2f} s: {health['error']}"
        )
        frozen_at = time.perf_counter()

    # Milvus answers again (outage() waited for it): so does the warm tier, through the same actor.
    print(f"Milvus answered again {time.perf_counter() - frozen_at:.2f} s after the thaw began")
    answers, ids, took = search(settings, query)
    print(f"after the outage: whole answer in {took:.2f} s")
    reports, partial = reported(answers)
    assert not partial, reports
    assert {h["id"] for h in answers["warm"].hits} == warm_ids
    assert set(ids) == hot_ids | warm_ids
    assert ray.get(tiers.warm.health.remote(), timeout=HEALTH_WITHIN_S)["reachable"] is True
