"""The warm tier's keyword index: Milvus Lite 3.2.2 and Milvus 2.3.5 have no BM25, so the warm
owner keeps a `KeywordIndex` beside Milvus, built from the collection (Milvus is what persists
it) on the first keyword search after the store opens, then kept in step with each insert and
delete the store makes.

Milvus 2.3 has no cursor over a collection and a query returns at most 16,384 rows, so the
build reads it by time ranges, halving any range that holds more than that. The build holds
the store's write lock: no write lands between its reads and its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import pyarrow as pa

from akasha_ray.identity import keys_of
from akasha_ray.records import time_us_of
from akasha_ray.vectors.keyword_index import KeywordIndex
from akasha_ray.vectors.milvus_rows import CONTENT_FIELDS

WINDOW = 16_384  # Milvus' largest query limit


class WarmKeywords:
    def __init__(self, client: Any, collection: str) -> None:
        self._client = client
        self._collection = collection
        self.index: KeywordIndex | None = None  # None until the first keyword search

    async def build(self, bounds: Callable[[], Awaitable[tuple[int | None, int | None]]]) -> None:
        """Read every row's key, system, time and content (the caller holds the write lock)."""
        index = KeywordIndex()
        low, high = await bounds()
        if low is not None and high is not None:
            await self._read(index, low, high)
        self.index = index

    async def _read(self, index: KeywordIndex, low: int, high: int) -> None:
        where = f"created_at >= {low} and created_at <= {high}"
        [counted] = await self._client.query(
            self._collection, filter=where, output_fields=["count(*)"], consistency_level="Strong"
        )
        count = int(counted["count(*)"])
        if count == 0:
            return
        if count > WINDOW and low < high:
            middle = (low + high) // 2
            await self._read(index, low, middle)
            await self._read(index, middle + 1, high)
            return
        rows = await self._client.query(
            self._collection,
            filter=where,
            output_fields=["key", "system_id", "created_at", *CONTENT_FIELDS],
            limit=WINDOW,
            consistency_level="Strong",
        )
        index.add(
            [row["key"] for row in rows],
            [row["system_id"] for row in rows],
            [int(row["created_at"]) for row in rows],
            ["".join(row[field] or "" for field in CONTENT_FIELDS) for row in rows],
        )

    def added(self, batch: pa.Table) -> None:
        """Rows the store has just inserted (a no-op before the build, which will read them)."""
        if self.index is not None and batch.num_rows:
            self.index.add(
                keys_of(batch),
                batch.column("system_id").to_pylist(),
                time_us_of(batch),
                batch.column("content").to_pylist(),
            )

    def removed(self, keys: Sequence[str]) -> None:
        if self.index is not None:
            for key in keys:
                self.index.remove(key)
