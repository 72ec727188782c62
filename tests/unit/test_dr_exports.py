"""The read-everything helpers DR snapshots and exports page with, and key records adopted as
they are: on the real embedded stores (DuckDB files), without Ray."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from akasha_ray.auth import KeyStore
from akasha_ray.errors import InvalidInput
from akasha_ray.graph.embedded import EmbeddedGraph
from akasha_ray.graph.models import Entity, Relationship
from akasha_ray.identity import keys_of
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.timeseries import PointBatch
from akasha_ray.timeseries.duckdb_store import DuckDBStore
from akasha_ray.timeseries.models import Point
from akasha_ray.timeseries.options import TimeseriesOptions
from akasha_ray.vectors.hot_shard import HotShard

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def batch(system: str, n: int):
    rows = [
        MemoryIn(id=f"m-{i:03d}", system_id=system, conversation_id="c", content=f"x {i}")
        for i in range(n)
    ]
    vectors = np.eye(n, 384, dtype=np.float32) + 0.01
    return build_batch(rows, vectors, model="m", model_revision="r", now=NOW)


def test_hot_export_pages_every_memory_once_in_key_order(tmp_path):
    shard = HotShard(tmp_path / "s.duckdb")
    shard.insert(batch("b", 7))
    shard.insert(batch("a", 5))
    shard.bury(["a/m-001", "b/m-003"], NOW)
    shard.delete_many(["a/m-001", "b/m-003"])
    seen, after = [], None
    while page := shard.export(after, 3):
        keys = keys_of(page)
        seen += keys
        after = keys[-1] if len(keys) == 3 else None
        if after is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 10
    assert shard.export(None, 100, system_id="a").num_rows == 4
    assert page.column("embedding").type.list_size == 384
    assert [k for k, _ in shard.tombstones(None, 10)] == ["a/m-001", "b/m-003"]
    assert [k for k, _ in shard.tombstones("a/m-001", 10)] == ["b/m-003"]


def test_graph_dump_round_trips_through_upserts(tmp_path):
    graph = EmbeddedGraph(tmp_path / "g.duckdb")
    graph.upsert_entities(
        [
            Entity(id="ada", type="Person", properties={"n": 1}, system_id="a"),
            Entity(id="acme", type="Company"),
            Entity(id="bob", type="Person", system_id="b"),
        ]
    )
    graph.upsert_relationships(
        [Relationship(system_id="a", source="ada", target="acme", type="AT", valid_from=NOW)]
    )
    graph.link_memories({"a/m-1": ["ada"], "b/m-2": ["bob"]})
    whole = graph.dump()
    assert len(whole["entities"]) == 3 and whole["links"] == {"a/m-1": ["ada"], "b/m-2": ["bob"]}
    of_a = graph.dump("a")
    assert {e["id"] for e in of_a["entities"]} == {"ada", "acme"}  # its own and the shared
    assert of_a["links"] == {"a/m-1": ["ada"]}

    copy = EmbeddedGraph(tmp_path / "copy.duckdb")
    copy.upsert_entities([Entity.model_validate(e) for e in whole["entities"]])
    copy.upsert_relationships([Relationship.model_validate(r) for r in whole["relationships"]])
    copy.link_memories(whole["links"])
    assert copy.dump() == whole


def test_timeseries_export_pages_raw_points(tmp_path):
    async def run():
        store = await DuckDBStore.open(tmp_path / "ts.duckdb", TimeseriesOptions())
        points = [
            Point(timestamp=NOW + timedelta(seconds=i), system_id=s, metric_name="x", value=i)
            for s in ("a", "b")
            for i in range(5)
        ]
        await store.write(PointBatch.from_points(points))
        pages = [await store.export(o, 4) for o in (0, 4, 8)]
        of_b = await store.export(0, 100, system_id="b")
        await store.close()
        return pages, of_b

    pages, of_b = asyncio.run(run())
    assert [len(p) for p in pages] == [4, 4, 2]
    rows = [r for p in pages for r in p.table.to_pylist()]
    assert len({(r["system_id"], r["timestamp"]) for r in rows}) == 10
    assert rows[0]["timestamp"] == NOW
    assert len(of_b) == 5


def record(**changes):
    base = {
        "key_id": "kid_0011223344556677",
        "hash": "cd" * 32,
        "system_ids": ["a"],
        "scopes": ["read"],
        "created_at": NOW.isoformat(),
        "expires_at": None,
        "revoked_at": None,
    }
    return {**base, **changes}


def test_a_key_record_is_adopted_as_is_and_revocations_win(tmp_path):
    store = KeyStore(tmp_path)
    assert store.adopt(record())
    assert not store.adopt(record())  # twice is once
    assert store.principal("cd" * 32)["key_id"] == "kid_0011223344556677"
    later, earlier = (NOW + timedelta(hours=2)).isoformat(), (NOW + timedelta(hours=1)).isoformat()
    assert store.adopt(record(revoked_at=later))
    assert store.principal("cd" * 32) is None
    assert store.adopt(record(revoked_at=earlier))
    assert not store.adopt(record())  # a revoked key never comes back
    assert KeyStore(tmp_path).records()[0]["revoked_at"] == earlier  # durable
    with pytest.raises(InvalidInput):
        store.adopt({"key_id": "kid_0011223344556678"})
