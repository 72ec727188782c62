"""The warm tier's keyword index: Milvus Lite 3.2.2 and Milvus 2.3.5 have no BM25, so the warm
owner keeps a `KeywordIndex` beside Milvus, built from the collection (Milvus is what persists
it; on Lite read from the engine's memory, elsewhere by time windows: milvus_windows.py) on the
first keyword search after the store opens, then kept in step with each insert and delete the
store makes.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.identity import keys_of
from akasha_ray.records import time_us_of
from akasha_ray.vectors.keyword_index import KeywordIndex
from akasha_ray.vectors.milvus_rows import CONTENT_FIELDS
from akasha_ray.vectors.milvus_windows import Bounds, IndexBeside


class WarmKeywords(IndexBeside):
    FIELDS = ["key", "system_id", "created_at", *CONTENT_FIELDS]
    index: KeywordIndex | None  # None until the first keyword search

    async def build(self, bounds: Bounds) -> None:
        """Read every row's key, system, time and content (the caller holds the write lock and,
        on Lite, has flushed)."""
        index = KeywordIndex()
        async for table in self.tables(bounds):
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
