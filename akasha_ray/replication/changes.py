"""A change: one acknowledged write, as the change log keeps it and Delta Lake ships it.

Every change belongs to a stream, numbered by its own LSN (1, 2, ...) with no gaps: the memories
of the systems a hot shard owns (`hot-<i>`: upserts and deletes of one key stay in order),
`metrics`, `graph` and `keys`. The payload is Arrow IPC for tables (memories, metric points) and
JSON otherwise; `decode` gives back what `encode` was given.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa

from akasha_ray import records
from akasha_ray.routing import hot_actor_name

Kind = Literal[
    "memories",  # records.SCHEMA rows plus an `entities` list column (the entity links)
    "delete",  # {"key", "at"}: a tombstone
    "metrics",  # PointBatch's table
    "entities",  # [Entity as JSON]
    "relationships",  # [Relationship as JSON]
    "delete_entity",  # {"entity_id", "owner"}
    "key",  # {"op": "create" | "revoke", ...}: the key store's record, hashes only
]
KINDS: tuple[str, ...] = Kind.__args__

METRICS, GRAPH, KEYS = "metrics", "graph", "keys"

SCHEMA = pa.schema(
    [
        pa.field("stream", pa.string(), nullable=False),
        pa.field("lsn", pa.int64(), nullable=False),
        pa.field("epoch", pa.int64(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),  # when it was logged
        pa.field("kind", pa.string(), nullable=False),
        pa.field("system_id", pa.string()),  # null: not one system's (shared entities, keys)
        pa.field("payload", pa.binary(), nullable=False),
    ]
)

MEMORIES_SCHEMA = records.SCHEMA.append(pa.field("entities", pa.list_(pa.string())))


def memory_stream(shard: int) -> str:
    return hot_actor_name(shard)


def memories_payload(batch: pa.Table, links: Mapping[str, Sequence[str]] | None) -> bytes:
    """A batch (records.SCHEMA) with each row's entity links, keyed by memory key."""
    from akasha_ray.identity import keys_of

    links = links or {}
    entities = pa.array([list(links.get(k, ())) for k in keys_of(batch)], pa.list_(pa.string()))
    table = batch.select(records.SCHEMA.names).cast(records.SCHEMA)
    return table_payload(table.append_column(MEMORIES_SCHEMA.field("entities"), entities))


def table_payload(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def json_payload(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=_iso).encode()


def decode(kind: str, payload: bytes) -> Any:
    """A pa.Table for "memories" and "metrics", the JSON value otherwise."""
    if kind in ("memories", "metrics"):
        return pa.ipc.open_stream(payload).read_all()
    return json.loads(payload)


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
