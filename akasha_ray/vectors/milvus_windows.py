"""Reading every row of a Milvus collection, for the indexes the warm owner keeps beside it.

On Milvus Lite, from the engine's memory (lite_rows.py): a query there walks every row in Python,
seconds a query at a million rows. Elsewhere through queries: Milvus 2.3 has no cursor over a
collection and a query returns at most 16,384 rows, so rows are read by ranges of created_at: a
range whose query comes back full is halved and read again as two. A full answer within one
microsecond (a bulk import may give thousands of memories one time) is split at the middle key
of what came back, so that each half holds fewer rows. The caller holds the store's write lock:
no write lands between the reads and their end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from akasha_ray.embedding_dim import DIM
from akasha_ray.vectors.lite_rows import live_rows
from akasha_ray.vectors.milvus_rows import quote

WINDOW = 16_384  # Milvus' largest query limit

# created_at in [low, high], and key in (after, upto] where they are not None
_Range = tuple[int, int, str | None, str | None]


Bounds = Callable[[], Awaitable[tuple[int | None, int | None]]]  # least, greatest created_at


class IndexBeside:
    """An in-memory index the warm owner keeps beside Milvus (its `FIELDS` read from every row
    when first needed), kept in step with the store's writes; `index` is None until then, and
    again after a write failed part way."""

    FIELDS: list[str]

    def __init__(self, client: Any, collection: str, lite_path: Path | None) -> None:
        self._client = client
        self._collection = collection
        self._lite_path = lite_path
        self.index: Any = None

    def tables(self, bounds: Bounds) -> AsyncIterator[pa.Table]:
        """Every row, as `every_row` reads it."""
        return every_row(self._client, self._collection, self.FIELDS, self._lite_path, bounds)

    def removed(self, keys: Sequence[str]) -> None:
        if self.index is not None:
            for key in keys:
                self.index.remove(key)

    def forget(self) -> None:
        """A write failed part way: what Milvus holds is unknown here, so read it again."""
        self.index = None


async def every_row(
    client: Any,
    collection: str,
    fields: list[str],
    lite_path: Path | None,
    bounds: Bounds,
) -> AsyncIterator[pa.Table]:
    """These fields ("key" among them) of every row, as tables; `bounds`: the least and greatest
    created_at. On Lite the caller has flushed first."""
    if lite_path is not None:
        table = await asyncio.to_thread(live_rows, lite_path, collection, fields)
        if table is not None:
            yield table
            return
    low, high = await bounds()
    if low is not None and high is not None:
        async for rows in rows_by_time(client, collection, fields, low, high):
            yield _table(rows, fields)


def _table(rows: list[dict[str, Any]], fields: list[str]) -> pa.Table:
    columns = {}
    for field in fields:
        values = [row[field] for row in rows]
        if field == "embedding":
            flat = pa.array(np.asarray(values, dtype=np.float32).ravel())
            columns[field] = pa.FixedSizeListArray.from_arrays(flat, DIM)
        else:
            columns[field] = pa.array(values)
    return pa.table(columns)


async def rows_by_time(
    client: Any, collection: str, fields: list[str], low: int, high: int
) -> AsyncIterator[list[dict[str, Any]]]:
    """Every row created in [low, high], with these fields ("key" among them), a window at a
    time. No count first: on Milvus Lite a count reads the matching rows whole, as a query does."""
    ranges: list[_Range] = [(low, high, None, None)]
    while ranges:
        low, high, after, upto = ranges.pop()
        rows = await client.query(
            collection,
            filter=_expression(low, high, after, upto),
            output_fields=fields,
            limit=WINDOW,
            consistency_level="Strong",
        )
        if len(rows) < WINDOW:
            if rows:
                yield rows
        elif low < high:
            middle = (low + high) // 2
            ranges += [(middle + 1, high, after, upto), (low, middle, after, upto)]
        else:  # at least half the rows read lie on each side of their middle key
            keys = sorted(row["key"] for row in rows)
            middle_key = keys[len(keys) // 2 - 1]
            ranges += [(low, high, middle_key, upto), (low, high, after, middle_key)]


def _expression(low: int, high: int, after: str | None, upto: str | None) -> str:
    terms = [f"created_at >= {int(low)}", f"created_at <= {int(high)}"]
    if after is not None:
        terms.append(f"key > {quote(after)}")
    if upto is not None:
        terms.append(f"key <= {quote(upto)}")
    return " and ".join(terms)
