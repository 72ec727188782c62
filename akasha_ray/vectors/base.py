"""The vector seam: one async interface over every tier (hot shard, warm Milvus, cold Parquet).

A memory is `(system_id, id)` (see `akasha_ray.identity`): stores address rows by its key,
`<system_id>/<id>`, never by the id alone. Every implementation answers as `HotShard` does (the
congruence suite in tests/integration/test_vector_congruence.py holds them to it):
- `insert(batch)` takes an Arrow table in `records.SCHEMA`, stores the rows whose keys are new and
  returns those keys in batch order; a resent batch (or a repeated key inside one) is a no-op.
  The write path checks `existing` first, so a key stored with another `content_hash` never
  reaches `insert`; if it does (a race), the stored row is kept;
- `get(key)` returns the memory as a dict (id, system_id, conversation_id, content, created_at as
  a tz-aware UTC datetime, metadata as a dict or None, model, model_revision) or None;
- `delete(key)` returns whether the key was there;
- `search(vector, k, system_ids, start, end)` returns up to k memories best first (the same dict
  with its cosine `similarity`); `system_ids` and the inclusive `[start, end]` range filter
  before ranking (an empty `system_ids` matches nothing);
- `existing(keys)` maps each stored key to its `content_hash`;
- `stats()` returns at least count, oldest, newest and bytes (None where a backend cannot tell).

`TierStore` adds what moving memories between tiers needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from akasha_ray.identity import first_per_key
from akasha_ray.records import SCHEMA
from akasha_ray.vectors.hot_shard import HotShard


@runtime_checkable
class VectorStore(Protocol):
    async def insert(self, batch: pa.Table) -> list[str]: ...

    async def get(self, key: str) -> dict[str, Any] | None: ...

    async def delete(self, key: str) -> bool: ...

    async def existing(self, keys: Sequence[str]) -> dict[str, str]: ...

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]: ...

    async def stats(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


@runtime_checkable
class TierStore(VectorStore, Protocol):
    """A store that memories move out of: list the old ones, copy them whole, delete them."""

    async def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        """Up to `limit` keys of memories created before `cutoff`, in no particular order."""
        ...

    async def fetch(self, keys: Sequence[str]) -> pa.Table:
        """The stored rows of these keys (embeddings included) in `records.SCHEMA`."""
        ...

    async def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete these keys; returns those that were there."""
        ...


class AsyncHotShard:
    """A `HotShard` behind the async seam: its calls run one at a time in a worker thread.

    The shard's DuckDB connection must not be used by two threads at once, hence the lock; the
    thread keeps the event loop free while a search or an insert runs.
    """

    def __init__(self, shard: HotShard) -> None:
        self.shard = shard
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> AsyncHotShard:
        return cls(await asyncio.to_thread(HotShard, path))

    async def _call(self, method: Any, *args: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(method, *args)

    async def insert(self, batch: pa.Table) -> list[str]:
        return await self._call(self.shard.insert, batch)

    async def get(self, key: str) -> dict[str, Any] | None:
        return await self._call(self.shard.get, key)

    async def delete(self, key: str) -> bool:
        return await self._call(self.shard.delete, key)

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        return await self._call(self.shard.search, vector, k, system_ids, start, end)

    async def stats(self) -> dict[str, Any]:
        return await self._call(self.shard.stats)

    async def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        return await self._call(self.shard.keys_before, cutoff, limit)

    async def fetch(self, keys: Sequence[str]) -> pa.Table:
        return await self._call(self.shard.fetch, keys)

    async def delete_many(self, keys: Sequence[str]) -> list[str]:
        return await self._call(self.shard.delete_many, keys)

    async def existing(self, keys: Sequence[str]) -> dict[str, str]:
        return await self._call(self.shard.existing, keys)

    async def close(self) -> None:
        await self._call(self.shard.close)


# -- helpers shared by the stores ------------------------------------------------------------------


def normalized(batch: pa.Table) -> pa.Table:
    """The batch in `SCHEMA` column order and types, keeping the first row of a repeated key."""
    return first_per_key(batch.select(SCHEMA.names).cast(SCHEMA))
