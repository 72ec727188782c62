"""Building change tables (`changes.SCHEMA`) from entries: snapshots, bundles and tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pyarrow as pa

from akasha_ray.replication.changes import SCHEMA

# (stream, lsn, kind, system_id or None, payload)
Entry = tuple[str, int, str, str | None, bytes]


def change_rows(entries: Iterable[Entry], epoch: int = 0, at: datetime | None = None) -> pa.Table:
    entries = list(entries)
    at = at or datetime.now(UTC)
    columns = list(zip(*entries, strict=True)) if entries else [[], [], [], [], []]
    stream, lsn, kind, system_id, payload = columns
    return pa.Table.from_arrays(
        [
            pa.array(stream, pa.string()),
            pa.array(lsn, pa.int64()),
            pa.array([epoch] * len(entries), pa.int64()),
            pa.array([at] * len(entries), pa.timestamp("us", tz="UTC")),
            pa.array(kind, pa.string()),
            pa.array(system_id, pa.string()),
            pa.array(payload, pa.binary()),
        ],
        schema=SCHEMA,
    )
