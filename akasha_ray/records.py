"""Memories as columnar batches (Arrow), the form in which they travel to and live in stores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pyarrow as pa

from akasha_ray.embedding_dim import DIM
from akasha_ray.identity import content_hash
from akasha_ray.ids import stable_id
from akasha_ray.models import MemoryIn

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("system_id", pa.string()),
        ("conversation_id", pa.string()),
        ("content", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("metadata", pa.string()),  # JSON text
        ("embedding", pa.list_(pa.float32(), DIM)),
        ("model", pa.string()),
        ("model_revision", pa.string()),
        ("content_hash", pa.string()),  # identity.content_hash of the row
    ]
)


def memory_id(memory: MemoryIn, created_at: datetime) -> str:
    """The client's id, or one derived from the content so that a retried write is a no-op."""
    if memory.id is not None:
        return memory.id
    return stable_id(created_at, memory.system_id, memory.conversation_id, memory.content)


def build_batch(
    memories: Sequence[MemoryIn],
    vectors: np.ndarray,
    *,
    model: str,
    model_revision: str,
    now: datetime,
) -> pa.Table:
    if len(memories) != len(vectors):
        raise ValueError("one vector per memory")
    created = [m.created_at or now for m in memories]
    flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
    ids = [memory_id(m, c) for m, c in zip(memories, created, strict=True)]
    metadata = [None if m.metadata is None else json.dumps(m.metadata) for m in memories]
    created_at = pa.array(created, type=pa.timestamp("us", tz="UTC"))
    created_us = created_at.cast(pa.int64()).to_pylist()
    hashes = [
        content_hash(m.system_id, i, m.conversation_id, m.content, us, meta)
        for m, i, us, meta in zip(memories, ids, created_us, metadata, strict=True)
    ]
    columns = [
        pa.array(ids),
        pa.array([m.system_id for m in memories]),
        pa.array([m.conversation_id for m in memories]),
        pa.array([m.content for m in memories]),
        created_at,
        pa.array(metadata),
        pa.FixedSizeListArray.from_arrays(flat, DIM),
        pa.array([model] * len(memories)),
        pa.array([model_revision] * len(memories)),
        pa.array(hashes),
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def with_content_hashes(table: pa.Table) -> pa.Table:
    """A table of every `SCHEMA` column but `content_hash` (as benchmarks and loaders build
    them), completed with that column."""
    rows = table.select(["system_id", "id", "conversation_id", "content", "metadata"])
    created_us = table.column("created_at").cast(pa.int64()).to_pylist()
    hashes = [
        content_hash(r["system_id"], r["id"], r["conversation_id"], r["content"], us, r["metadata"])
        for r, us in zip(rows.to_pylist(), created_us, strict=True)
    ]
    return table.append_column("content_hash", pa.array(hashes, pa.string())).select(SCHEMA.names)


def vectors_of(table: pa.Table) -> np.ndarray:
    """The embedding column as an (n, DIM) float32 matrix, without a Python-level copy."""
    column = table.column("embedding").combine_chunks()
    return column.values.to_numpy(zero_copy_only=False).reshape(-1, DIM)


def time_us_of(table: pa.Table) -> np.ndarray:
    column = table.column("created_at").combine_chunks()
    return column.cast(pa.int64()).to_numpy(zero_copy_only=False)
