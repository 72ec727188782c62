"""A hot shard: one DuckDB file holding memories, plus the exact in-memory index built from it.

DuckDB is the source of truth (durable across restarts, WAL-protected); the index is a cache that
is rebuilt from the file on open and updated only after a write has committed. Rows are keyed by
`(system_id, id)` (`identity.memory_key` in the index): two systems may use the same id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.embedding_dim import DIM
from akasha_ray.identity import (
    SEPARATOR,
    by_key,
    first_per_key,
    key_array,
    keys_of,
    memory_key,
    split_key,
)
from akasha_ray.records import SCHEMA, time_us_of, vectors_of
from akasha_ray.times import to_us
from akasha_ray.vectors.flat_index import FlatIndex
from akasha_ray.vectors.keyword_index import KeywordIndex
from akasha_ray.vectors.summaries import ALL, Entry, Summaries

_DDL = f"""
CREATE TABLE IF NOT EXISTS memories (
    id VARCHAR NOT NULL,
    system_id VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL,
    content VARCHAR NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    metadata JSON,
    embedding FLOAT[{DIM}] NOT NULL,
    model VARCHAR NOT NULL,
    model_revision VARCHAR NOT NULL,
    content_hash VARCHAR NOT NULL,
    -- The write that stored the row: a failed batch removes its own rows and no one else's.
    write_id VARCHAR,
    PRIMARY KEY (system_id, id)
);
-- memory_key (system_id/id, identity.memory_key) is added on open (`_add_memory_key`).
-- A delete is final: the shard that owns a system keeps its deleted keys, whatever tier the
-- memory was in, and every later write and migration step asks here (see akasha_ray.memories).
CREATE TABLE IF NOT EXISTS tombstones (
    system_id VARCHAR NOT NULL,
    id VARCHAR NOT NULL,
    deleted_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (system_id, id)
);
"""
_COLUMNS = ", ".join(SCHEMA.names)
_KEYS_VIEW = "akasha_wanted_keys"
_KEY_OF_ROW = f"system_id || '{SEPARATOR}' || id"
# Up to this many keys, rows are found through the memory_key column's index: 10 of 500,000
# rows in 1.7 ms, where a hash join of the registered keys scans the table (19-35 ms; DuckDB
# uses no index for the two-column primary key). Past it, the join is quicker (see _key_table).
LOOKUP_KEYS_MAX = 256
_ROW_COLUMNS = (
    "id, system_id, conversation_id, content, created_at, metadata, model, model_revision"
)


def _join(alias: str) -> str:
    """Join the registered keys onto the table aliased `alias`."""
    return f"JOIN {_KEYS_VIEW} w ON {alias}.system_id = w.system_id AND {alias}.id = w.id"


class HotShard:
    """Owns one DuckDB file. Not thread-safe: one owner (the shard actor) calls it at a time."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.last_scan_ms = 0.0
        self._db = duckdb.connect(str(self.path))
        self._db.execute("SET TimeZone = 'UTC'")
        self._db.execute(_DDL)
        self._add_memory_key()
        self.index = FlatIndex(DIM)
        self.keywords = KeywordIndex()  # BM25 beside the vectors, kept in step with them
        self._load_index()
        # Per-system counts and bounds, kept on write (see summaries.py): stats read these.
        self.summaries = Summaries(complete=True)
        for system_id, (count, oldest, newest) in self.index.per_system().items():
            self.summaries.set(system_id, Entry(count, oldest, newest))
        self.summaries.set(ALL, Entry(*self.index.bounds()))

    def _add_memory_key(self) -> None:
        """The memory_key column and its index, filled in for the rows of a shard written before
        they existed (once: 0.6 s per 500,000 rows here)."""
        present = self._db.execute(
            "SELECT count(*) FROM duckdb_columns() "
            "WHERE table_name = 'memories' AND column_name = 'memory_key'"
        ).fetchone()[0]
        if not present:
            self._db.execute("BEGIN")
            self._db.execute("ALTER TABLE memories ADD COLUMN memory_key VARCHAR")
            self._db.execute(f"UPDATE memories SET memory_key = {_KEY_OF_ROW}")
            self._db.execute("COMMIT")
        self._db.execute("CREATE INDEX IF NOT EXISTS memories_by_key ON memories (memory_key)")

    def _load_index(self) -> None:
        reader = self._db.execute(
            "SELECT id, system_id, created_at, embedding, content FROM memories"
        ).fetch_record_batch(rows_per_batch=100_000)
        for batch in reader:
            table = pa.Table.from_batches([batch])
            self.index.add(
                keys_of(table),
                table.column("system_id").to_pylist(),
                time_us_of(table),
                vectors_of(table),
            )
            self._index_keywords(table)

    def insert(self, batch: pa.Table, write_id: str | None = None) -> list[str]:
        """Store the memories whose keys are new and not deleted; returns their keys. A resent
        batch is a no-op; so is a deleted key (the write path answers it before this). With a
        `write_id`, rows this write stored in an earlier try count as stored by it, so a call
        retried after a crash returns what the first try stored."""
        batch = first_per_key(batch.select(SCHEMA.names).cast(SCHEMA))
        keys = key_array(batch)
        known = [k for k in keys.to_pylist() if k in self.index]
        earlier = self._written_by(known, write_id) if write_id and known else []
        known += self.buried(keys.to_pylist())
        fresh = batch.filter(pc.invert(pc.is_in(keys, pa.array(known, type=pa.string()))))
        if fresh.num_rows == 0:
            return earlier
        self._db.register("fresh", fresh)
        try:
            self._db.execute(
                f"INSERT INTO memories ({_COLUMNS}, write_id, memory_key) "
                f"SELECT {_COLUMNS}, ?, {_KEY_OF_ROW} FROM fresh",
                [write_id],
            )
        finally:
            self._db.unregister("fresh")
        fresh_keys = keys_of(fresh)
        systems, times = fresh.column("system_id").to_pylist(), time_us_of(fresh)
        self.index.add(fresh_keys, systems, times, vectors_of(fresh))
        self._index_keywords(fresh)
        self.summaries.added(systems, times.tolist())
        return earlier + fresh_keys

    def undo(self, keys: Sequence[str], write_id: str) -> list[str]:
        """Delete the rows among `keys` that the write `write_id` stored (a batch that failed
        elsewhere); rows another write stored stay. Returns the keys deleted."""
        return self.delete_many(self._written_by(list(keys), write_id))

    def _written_by(self, keys: list[str], write_id: str) -> list[str]:
        with self._rows_of(keys) as (rows_of, params):
            rows = self._db.execute(
                f"SELECT m.system_id, m.id {rows_of} AND m.write_id = ?", [*params, write_id]
            ).fetchall()
        return [memory_key(system_id, i) for system_id, i in rows]

    def get(self, key: str) -> dict[str, Any] | None:
        rows = self.get_many([key])
        return rows[0] if rows else None

    def existing(self, keys: Sequence[str]) -> dict[str, str]:
        """The content hash of each key held."""
        keys = [k for k in dict.fromkeys(keys) if k in self.index]
        if not keys:
            return {}
        with self._rows_of(keys) as (rows_of, params):
            rows = self._db.execute(
                f"SELECT m.system_id, m.id, m.content_hash {rows_of}", params
            ).fetchall()
        return {memory_key(system_id, i): digest for system_id, i, digest in rows}

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The stored memories among `keys` (any order); unknown keys are skipped."""
        keys = [k for k in dict.fromkeys(keys) if k in self.index]
        if not keys:
            return []
        columns = ", ".join(f"m.{c.strip()}" for c in _ROW_COLUMNS.split(","))
        with self._rows_of(keys) as (rows_of, params):
            return self._rows(f"SELECT {columns} {rows_of}", params)

    def delete(self, key: str) -> bool:
        return bool(self.delete_many([key]))

    def delete_many(self, keys: Sequence[str]) -> list[str]:
        """Delete the memories among `keys`; returns those that were there."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        with self._key_table(keys):
            deleted = self._db.execute(
                f"DELETE FROM memories m USING {_KEYS_VIEW} w "
                "WHERE m.system_id = w.system_id AND m.id = w.id "
                "RETURNING m.system_id, m.id, epoch_us(m.created_at)"
            ).fetchall()
        for key in keys:
            self.index.remove(key)
            self.keywords.remove(key)
        self.summaries.removed([row[0] for row in deleted], [row[2] for row in deleted])
        gone = {memory_key(system_id, i) for system_id, i, _ in deleted}
        return [k for k in keys if k in gone]

    def bury(self, keys: Sequence[str], when: datetime) -> None:
        """Record these keys as deleted, for good (durable when this returns)."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return
        with self._key_table(keys):
            self._db.execute(
                "INSERT INTO tombstones SELECT w.system_id, w.id, ? FROM "
                f"{_KEYS_VIEW} w ON CONFLICT DO NOTHING",
                [when],
            )

    def buried(self, keys: Sequence[str]) -> list[str]:
        """The keys among these that were deleted."""
        keys = list(dict.fromkeys(keys))
        if not keys:
            return []
        with self._key_table(keys):
            rows = self._db.execute(
                f"SELECT t.system_id, t.id FROM tombstones t {_join('t')}"
            ).fetchall()
        found = {memory_key(system_id, i) for system_id, i in rows}
        return [k for k in keys if k in found]

    def check(self, keys: Sequence[str]) -> dict[str, Any]:
        """What a write of these keys must know before it starts: the content hash of each key
        held here, and the keys deleted for good."""
        return {"existing": self.existing(keys), "buried": self.buried(keys)}

    def fetch(self, keys: Sequence[str]) -> pa.Table:
        """Whole memories (vectors included) as a batch, to copy them into another tier."""
        keys = [k for k in dict.fromkeys(keys) if k in self.index]
        if not keys:
            return SCHEMA.empty_table()
        columns = ", ".join(f"m.{c}" for c in SCHEMA.names)
        with self._key_table(keys):
            table = self._db.execute(
                f"SELECT {columns} FROM memories m {_join('m')}"
            ).to_arrow_table()
        return table.rename_columns(SCHEMA.names).cast(SCHEMA)

    @contextmanager
    def _rows_of(self, keys: list[str]) -> Iterator[tuple[str, list[Any]]]:
        """`FROM memories m WHERE ...`, the rows of these keys (add conditions with `AND`), and
        its parameters: few keys through the memory_key index, many by a join."""
        if len(keys) <= LOOKUP_KEYS_MAX:
            yield "FROM memories m WHERE m.memory_key = ANY(?)", [keys]
            return
        with self._key_table(keys):
            yield f"FROM memories m {_join('m')} WHERE true", []

    @contextmanager
    def _key_table(self, keys: list[str]) -> Iterator[str]:
        """The keys as a two-column Arrow table DuckDB can join (registered for the block): for
        5,000 keys, a join took 0.02 s to fetch and 0.13 s to delete, where `IN (?, ?, ...)` with
        one parameter per key took 0.24 s and 2.2 s."""
        pairs = [pair for k in keys if (pair := _pair(k)) is not None]
        table = pa.table(
            {
                "system_id": pa.array([p[0] for p in pairs], type=pa.string()),
                "id": pa.array([p[1] for p in pairs], type=pa.string()),
            }
        )
        self._db.register(_KEYS_VIEW, table)
        try:
            yield _KEYS_VIEW
        finally:
            self._db.unregister(_KEYS_VIEW)

    def export(self, after: str | None, limit: int, system_id: str | None = None) -> pa.Table:
        """Up to `limit` whole memories (vectors included) with keys after `after`, in key
        order (of one system, when given): a DR snapshot or export pages through the shard."""
        where, params = _after_key(after, system_id)
        columns = ", ".join(SCHEMA.names)
        table = self._db.execute(
            f"SELECT {columns} FROM memories {where} ORDER BY system_id, id LIMIT ?",
            [*params, limit],
        ).to_arrow_table()
        return table.rename_columns(SCHEMA.names).cast(SCHEMA)

    def tombstones(
        self, after: str | None, limit: int, system_id: str | None = None
    ) -> list[tuple[str, datetime]]:
        """Up to `limit` (key, deleted_at) of deleted keys after `after`, in key order."""
        where, params = _after_key(after, system_id)
        rows = self._db.execute(
            f"SELECT system_id, id, deleted_at FROM tombstones {where} "
            "ORDER BY system_id, id LIMIT ?",
            [*params, limit],
        ).fetchall()
        return [(memory_key(s, i), at) for s, i, at in rows]

    def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        """Up to `limit` keys created before `cutoff`, oldest first: what has aged out."""
        return self.index.keys_before(_us(cutoff), limit)

    def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        only_keys: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Exact top-k by cosine similarity, filters applied before ranking, best first."""
        started = time.perf_counter()
        keys, scores = self.index.search(vector, k, system_ids, _us(start), _us(end), only_keys)
        # The part of a search that grows with the rows held (see akasha_ray.hot_window).
        self.last_scan_ms = (time.perf_counter() - started) * 1000
        if not keys:
            return []
        rows = by_key(self.get_many(keys))
        hits = []
        for key, score in zip(keys, scores.tolist(), strict=True):
            row = rows.get(key)
            if row is not None:
                row["similarity"] = score
                hits.append(row)
        return hits

    def search_keywords(
        self,
        text: str,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        only_keys: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Exact BM25 top-k (`keyword_index`), filters applied before ranking, best first; each
        hit's `bm25` is its score."""
        keys, scores = self.keywords.search(text, k, system_ids, _us(start), _us(end), only_keys)
        rows = by_key(self.get_many(keys)) if keys else {}
        return [
            {**rows[key], "bm25": score}
            for key, score in zip(keys, scores.tolist(), strict=True)
            if key in rows
        ]

    def _index_keywords(self, table: pa.Table) -> None:
        self.keywords.add(
            keys_of(table),
            table.column("system_id").to_pylist(),
            time_us_of(table),
            table.column("content").to_pylist(),
        )

    def summary(self, system_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """count, oldest, newest over these systems (None: the shard, and its bytes on disk),
        from the counters."""
        for key in self.summaries.missing(system_ids):  # bounds a delete made stale
            self.summaries.set(key, Entry(*self.index.bounds(None if key == ALL else key)))
        report = self.summaries.report(system_ids)
        if system_ids is None:
            report["bytes"] = self.path.stat().st_size if self.path.exists() else 0
        return report

    def stats(self) -> dict[str, Any]:
        """The shard's summary (counters, no scan), rows indexed and bytes on disk."""
        return {
            **self.summary(None),
            "systems": len(self.summaries.counts()),
            "indexed": len(self.index),
        }

    def newest_beyond(self, keep: int) -> datetime | None:
        """created_at of the newest row beyond the `keep` newest (None: it holds no more): a hot
        window shorter than its age leaves at most `keep` rows here."""
        row = self._db.execute(
            "SELECT created_at FROM memories ORDER BY created_at DESC LIMIT 1 OFFSET ?", [keep]
        ).fetchone()
        return row[0] if row else None

    def system_counts(self) -> dict[str, int]:
        return self.summaries.counts()

    def close(self) -> None:
        self._db.close()

    def _rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        cursor = self._db.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        for row in rows:
            if row["metadata"] is not None:
                row["metadata"] = json.loads(row["metadata"])
        return rows


def _after_key(after: str | None, system_id: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its parameters) of rows in key order after `after`."""
    clauses, params = [], []
    if after is not None:
        after_system, after_id = split_key(after)
        clauses.append("(system_id > ? OR (system_id = ? AND id > ?))")
        params += [after_system, after_system, after_id]
    if system_id is not None:
        clauses.append("system_id = ?")
        params.append(system_id)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def _pair(key: str) -> tuple[str, str] | None:
    """`(system_id, id)` of a key; None for a string that is not one (it matches nothing)."""
    try:
        return split_key(key)
    except ValueError:
        return None


def _us(moment: datetime | None) -> int | None:
    return None if moment is None else to_us(moment)
