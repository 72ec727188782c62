"""The warm tier's keyword index: Milvus Lite 3.2.2 and Milvus 2.3.5 have no BM25, so the warm
owner keeps a `KeywordIndex` beside Milvus, built from the collection (Milvus is what persists
it; on Lite read from the engine's memory, elsewhere by time windows: milvus_windows.py) on the
first keyword search after the store opens, then kept in step with each insert and delete the
store makes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.identity import keys_of
from akasha_ray.records import time_us_of
from akasha_ray.vectors.keyword_index import KeywordIndex
from akasha_ray.vectors.milvus_rows import CONTENT_FIELDS
from akasha_ray.vectors.milvus_windows import every_row

FIELDS = ["key", "system_id", "created_at", *CONTENT_FIELDS]


class WarmKeywords:
    def __init__(self, client: Any, collection: str, lite_path: Path | None) -> None:
        self._client = client
        self._collection = collection
        self._lite_path = lite_path
        self.index: KeywordIndex | None = None  # None until the first keyword search

    async def build(self, bounds: Callable[[], Awaitable[tuple[int | None, int | None]]]) -> None:
        """Read every row's key, system, time and content (the caller holds the write lock and,
        on Lite, has flushed)."""
        index = KeywordIndex()
        tables = every_row(self._client, self._collection, FIELDS, self._lite_path, bounds)
        async for table in tables:
            pieces = [pc.fill_null(table.column(field), "") for field in CONTENT_FIELDS]
            index.add(
                table.column("key").to_pylist(),
                table.column("system_id").to_pylist(),
                time_us_of(table).tolist(),
                pc.binary_join_element_wise(*pieces, "").to_pylist(),
            )
        self.index = index

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

    def forget(self) -> None:
        """A write failed part way: read the collection again at the next keyword search."""
        self.index = None
