"""Every live row of a Milvus Lite collection (the fields asked for), read from the engine's
memory.

Lite answers a query in Python row by row: about 100 us a row once a million rows are stored, so
reading them all through queries takes minutes. But Lite runs in this process (pymilvus starts
its gRPC server in a thread) and holds every segment as an Arrow table with NumPy arrays of keys
and sequence numbers. So the warm owner reads its vectors (on opening) and its texts (at the
first keyword search) from there: the segments and tombstones of one snapshot
(`_read_snapshot`, which its compaction respects), after a flush has emptied the memtable, with
the rules of Lite's own search: a key's row with the largest sequence number, unless a delete
with a larger one came after it.

These are milvus-lite 3.2.2's private structures (the version is pinned). Whatever differs from
them gives None, and the caller reads through queries instead: slow, but the same rows.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa

logger = logging.getLogger("akasha.warm")


def live_rows(lite_path: Path, collection: str, fields: list[str]) -> pa.Table | None:
    """These fields of the live rows, or None when the engine is not the one this reads (see
    the docstring). The caller holds the store's write lock and has flushed: nothing is in the
    memtable."""
    try:
        return _read(lite_path, collection, fields)
    except (AttributeError, KeyError, LookupError, TypeError, ValueError) as exc:
        logger.warning("warm tier: Milvus Lite's segments not readable here (%r)", exc)
        return None


def _read(lite_path: Path, collection: str, fields: list[str]) -> pa.Table | None:
    from milvus_lite.server_manager import server_manager_instance

    served = server_manager_instance._servers.get(os.path.abspath(lite_path))
    if served is None:
        return None
    engine = served[1].get_collection(collection)
    if engine._memtable.size():
        return None
    segments, tombstones = engine._read_snapshot()
    segments = [s for s in segments if s.num_rows]
    if not segments:
        return None  # the caller's queries find no row at once, with the right column types
    keys = [key for s in segments for key in s.pks]
    sequences = np.concatenate([s.seqs for s in segments]).astype(np.int64).tolist()
    live = np.ones(len(keys), dtype=bool)
    if len(set(keys)) < len(keys):  # a key deleted and inserted again: its newest row
        newest: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key not in newest or sequences[row] > sequences[newest[key]]:
                newest[key] = row
        live[:] = False
        live[list(newest.values())] = True
    if deleted := tombstones._map:
        for row, key in enumerate(keys):
            if live[row] and deleted.get(key, -1) > sequences[row]:
                live[row] = False
    table = pa.concat_tables([s.table.select(fields) for s in segments])
    return table.take(pa.array(np.flatnonzero(live)))
