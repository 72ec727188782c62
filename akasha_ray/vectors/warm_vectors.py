"""The warm tier's vector search on Milvus Lite: an exact scan in the warm owner's memory.

Milvus Lite 3.2.2 is pure Python: before a search asks its index, it walks every row of the
collection in Python (the newest version of each key, tombstones), so a search takes about a
second at a million rows whatever the index, and its HNSW finds 0.94 of the true top 10 there
(`python -m akasha_ray.bench warm`). The warm owner is the file's only writer (Lite allows one
process per file), so it keeps its own `FlatIndex` (the hot shards' exact index) of every row's
key, system, time and vector: built from the collection when the store opens (from Lite's own
memory: lite_rows.py), then kept in step with each insert and delete the store makes. Lite
stays what persists the rows; a search takes the top k from this index and reads those rows from
Lite by key, which Lite answers from a dict. A Milvus server searches its own index instead.
"""

from __future__ import annotations

import pyarrow as pa

from akasha_ray.identity import keys_of
from akasha_ray.records import time_us_of, vectors_of
from akasha_ray.vectors.flat_index import FlatIndex
from akasha_ray.vectors.milvus_windows import Bounds, IndexBeside


class WarmVectors(IndexBeside):
    FIELDS = ["key", "system_id", "created_at", "embedding"]
    index: FlatIndex | None

    async def build(self, bounds: Bounds) -> None:
        """Read every row's key, system, time and vector (the caller holds the write lock and
        has flushed)."""
        index = FlatIndex()
        async for table in self.tables(bounds):
            _add(index, table, table.column("key").to_pylist())
        self.index = index

    def added(self, batch: pa.Table) -> None:
        """Rows the store has just inserted, new keys only, vectors of unit length."""
        if self.index is not None and batch.num_rows:
            _add(self.index, batch, keys_of(batch))


def _add(index: FlatIndex, table: pa.Table, keys: list[str]) -> None:
    index.add(keys, table.column("system_id").to_pylist(), time_us_of(table), vectors_of(table))
