"""A small world of changes (memories with links, a delete, metric points, graph, keys) as
change rows, and what a deployment holds, compared store by store: the DR tests' common ground."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from actors import supervisor
from akasha_ray.graph.models import Entity, Relationship
from akasha_ray.identity import memory_key
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.replication import changes
from akasha_ray.replication.rows import change_rows
from akasha_ray.routing import shard_for
from akasha_ray.timeseries import PointBatch
from akasha_ray.timeseries.models import Point

SYSTEMS = ("alpha", "beta")
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def memories(system: str, n: int, tag: str = "m", seed: int = 0, says: str = "says") -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        MemoryIn(
            id=f"{tag}-{i}",
            system_id=system,
            conversation_id="c",
            content=f"{system} {says} {tag} {i}",
            created_at=datetime.now(UTC) - timedelta(hours=1),
        )
        for i in range(n)
    ]
    return build_batch(rows, vectors, model="m", model_revision="r", now=datetime.now(UTC))


def world(shards: int) -> pa.Table:
    """Change rows: per system 20 memories (two linked to `person:ada`) then one delete on its
    shard's stream; metric points; entities and a relationship; a key created then revoked."""
    entries = []
    lsn: dict[str, int] = {}

    def add(stream: str, kind: str, system: str | None, payload: bytes) -> None:
        lsn[stream] = lsn.get(stream, 0) + 1
        entries.append((stream, lsn[stream], kind, system, payload))

    for system in SYSTEMS:
        stream = changes.memory_stream(shard_for(system, shards))
        batch = memories(system, 20, seed=len(system))
        links = {memory_key(system, "m-0"): ["person:ada"], memory_key(system, "m-1"): ["acme"]}
        add(stream, "memories", system, changes.memories_payload(batch, links))
    for system in SYSTEMS:  # after every memory: the memories are a prefix of each stream
        stream = changes.memory_stream(shard_for(system, shards))
        deleted = {"key": memory_key(system, "m-19"), "at": NOW.isoformat()}
        add(stream, "delete", system, changes.json_payload(deleted))
    points = [
        Point(timestamp=NOW + timedelta(seconds=i), system_id=s, metric_name="latency_ms", value=i)
        for s in SYSTEMS
        for i in range(10)
    ]
    add(
        changes.METRICS,
        "metrics",
        None,
        changes.table_payload(PointBatch.from_points(points).table),
    )
    entities = [
        Entity(id="person:ada", type="Person", properties={"name": "Ada"}, system_id="alpha"),
        Entity(id="acme", type="Company", system_id=None),
    ]
    add(
        changes.GRAPH,
        "entities",
        None,
        changes.json_payload([e.model_dump(mode="json") for e in entities]),
    )
    works = Relationship(
        system_id="alpha", source="person:ada", target="acme", type="WORKS_AT", created_at=NOW
    )
    add(
        changes.GRAPH,
        "relationships",
        "alpha",
        changes.json_payload([works.model_dump(mode="json")]),
    )
    record = {
        "key_id": "kid_00112233445566ff",
        "hash": "ab" * 32,
        "system_ids": ["alpha"],
        "scopes": ["read"],
        "created_at": NOW.isoformat(),
        "expires_at": None,
        "revoked_at": None,
    }
    add(changes.KEYS, "key", None, changes.json_payload({"op": "create", "record": record}))
    revoked = {"key_id": record["key_id"], "revoked_at": (NOW + timedelta(hours=1)).isoformat()}
    add(changes.KEYS, "key", None, changes.json_payload({"op": "revoke", **revoked}))
    return change_rows(entries, epoch=1)


def prefix(rows: pa.Table) -> pa.Table:
    """Every memories change and the first change of each other kind (the first metrics, the
    entities, the key's creation): a prefix of every stream, as a primary's log held it before
    the deletes, the relationship, more metrics and the revocation came."""
    seen: set[tuple[str, str]] = set()
    keep = []
    for stream, kind in zip(rows["stream"].to_pylist(), rows["kind"].to_pylist(), strict=True):
        if kind in ("delete", "relationships"):
            keep.append(False)
        elif kind == "memories":
            keep.append(True)
        else:
            keep.append((stream, kind) not in seen)
            seen.add((stream, kind))
    return rows.filter(pa.array(keep))


def held(settings) -> dict[str, Any]:
    """Everything the deployment holds that DR carries, in comparable form."""
    memories_held: dict[str, str] = {}
    buried: set[str] = set()
    for shard in supervisor.hot_shards(settings):
        table = ray.get(shard.export.remote(None, 1_000_000), timeout=120)
        keys = [
            memory_key(s, i)
            for s, i in zip(table["system_id"].to_pylist(), table["id"].to_pylist(), strict=True)
        ]
        memories_held.update(zip(keys, table["content_hash"].to_pylist(), strict=True))
        buried |= {k for k, _ in ray.get(shard.tombstones.remote(None, 1_000_000), timeout=120)}
    for tier, owner in (("warm", supervisor.warm(settings)), ("cold", supervisor.cold(settings))):
        listed = ray.get(owner.keys_before.remote(datetime(9999, 1, 1, tzinfo=UTC), 10_000))
        for key, digest in ray.get(owner.existing.remote(listed), timeout=120).items():
            memories_held[key] = f"{tier}:{digest}"
    timeseries = supervisor.timeseries(settings)
    points = ray.get(timeseries.export.remote(0, 1_000_000), timeout=120).table
    points = points.filter(pa.compute.equal(points["metric_name"], "latency_ms"))
    graph = ray.get(supervisor.graph(settings).dump.remote(), timeout=120)
    keys = {
        r["key_id"]: (r["hash"], r["revoked_at"])
        for r in ray.get(supervisor.keys(settings).records.remote(), timeout=60)
    }
    return {
        "memories": memories_held,
        "buried": buried,
        "points": sorted(tuple(p.values()) for p in points.to_pylist()),
        "graph": graph,
        "keys": keys,
    }
