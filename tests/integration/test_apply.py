"""The applier on a real local Akasha (Ray, DuckDB shards, Milvus Lite, the graph and metrics
actors): change rows land in every store, applying twice is applying once, a gap is refused."""

from __future__ import annotations

import asyncio

import pytest
import ray

from actors import supervisor
from akasha_ray.errors import Conflict
from akasha_ray.identity import memory_key
from akasha_ray.replication import changes
from akasha_ray.replication.apply import Applier, ReplicationGap
from akasha_ray.replication.rows import change_rows
from akasha_ray.routing import shard_for
from tests.integration.dr_world import SYSTEMS, held, memories, world

pytestmark = pytest.mark.integration


def test_apply_lands_everywhere_and_twice_is_once(ray_cluster, settings):
    supervisor.start_all(settings)
    rows = world(settings.hot.shards)
    applier = Applier(settings, source="east")
    versions = asyncio.run(applier.apply(rows))
    assert versions == asyncio.run(applier.applied())
    assert versions[changes.KEYS] == 2 and versions[changes.METRICS] == 1

    first = held(settings)
    for system in SYSTEMS:
        assert memory_key(system, "m-0") in first["memories"]
        assert memory_key(system, "m-19") not in first["memories"]
        assert memory_key(system, "m-19") in first["buried"]
    assert len(first["memories"]) == 2 * 19
    assert len(first["points"]) == 20
    graph = first["graph"]
    assert {e["id"] for e in graph["entities"]} == {"person:ada", "acme"}
    assert [(r["source"], r["type"], r["target"]) for r in graph["relationships"]] == [
        ("person:ada", "WORKS_AT", "acme")
    ]
    assert graph["links"][memory_key("alpha", "m-0")] == ["person:ada"]
    assert first["keys"]["kid_00112233445566ff"][1] is not None  # created, then revoked

    # The same rows again, through the same applier and through a new one that was told what
    # was applied: nothing changes (metric points included).
    assert asyncio.run(applier.apply(rows)) == versions
    again = Applier(settings, source="east")
    asyncio.run(again.mark(versions))
    asyncio.run(again.apply(rows))
    assert held(settings) == first

    # Without LSN bookkeeping (a snapshot's rows), every store is idempotent itself: metric
    # points by the write tokens named after where the rows came from.
    asyncio.run(Applier(settings).apply_rows(rows, tokens="dr:east"))
    assert held(settings) == first
    asyncio.run(Applier(settings).apply_rows(rows, tokens="snapshot:x"))
    asyncio.run(Applier(settings).apply_rows(rows, tokens="snapshot:x"))
    replayed = held(settings)
    assert len(replayed["points"]) == 2 * len(first["points"])  # once more, not twice
    assert {k: v for k, v in replayed.items() if k != "points"} == {
        k: v for k, v in first.items() if k != "points"
    }


def test_a_gap_is_refused_and_a_later_batch_follows_on(ray_cluster, settings):
    supervisor.start_all(settings)
    stream = changes.memory_stream(shard_for("alpha", settings.hot.shards))
    batch = memories("alpha", 4, tag="g")
    one = changes.memories_payload(batch.slice(0, 2), None)
    two = changes.memories_payload(batch.slice(2, 2), None)
    applier = Applier(settings, source="east")
    with pytest.raises(ReplicationGap):
        asyncio.run(applier.apply(change_rows([(stream, 2, "memories", "alpha", two)])))
    assert asyncio.run(applier.apply(change_rows([(stream, 1, "memories", "alpha", one)]))) == {
        stream: 1
    }
    asyncio.run(applier.apply(change_rows([(stream, 2, "memories", "alpha", two)])))
    shard = supervisor.hot_shards(settings)[shard_for("alpha", settings.hot.shards)]
    assert len(ray.get(shard.export.remote(None, 100))) == 4


def test_other_content_under_a_held_key_fails_or_is_skipped(ray_cluster, settings):
    supervisor.start_all(settings)
    stream = changes.memory_stream(shard_for("beta", settings.hot.shards))
    ours = memories("beta", 3, tag="c")
    theirs = memories("beta", 4, tag="c", says="insists")  # c-0..c-2 clash, c-3 is new

    def rows(batch):
        return change_rows([(stream, 1, "memories", "beta", changes.memories_payload(batch, None))])

    asyncio.run(Applier(settings).apply_rows(rows(ours)))
    with pytest.raises(Conflict):
        asyncio.run(Applier(settings, on_conflict="fail").apply_rows(rows(theirs)))
    done = asyncio.run(Applier(settings, on_conflict="skip").apply_rows(rows(theirs)))
    assert done.skipped_conflicts == 3 and done.counts["memories"] == 1
    now = held(settings)["memories"]
    assert len(now) == 4
    assert now[memory_key("beta", "c-0")] == ours["content_hash"][0].as_py()
