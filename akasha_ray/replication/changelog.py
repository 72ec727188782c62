"""The local change log: every acknowledged change, numbered per stream, in one DuckDB file.

A write is answered only after its change is committed here (DuckDB syncs its WAL on commit),
so whatever a client was told is stored can be shipped to the other regions, even after a
`kill -9`. Each stream's LSNs run 1, 2, 3... without gaps; `streams` keeps the last one given,
so compacting shipped changes away never reuses a number. Marks remember, per other region,
how far the log was shipped there and, per source region, how far its log was applied here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from akasha_ray.replication import changes

Entry = tuple[str, str, str | None, bytes]  # stream, kind, system_id, payload

_TABLES = """
CREATE TABLE IF NOT EXISTS changes (
    stream VARCHAR NOT NULL, lsn BIGINT NOT NULL, epoch BIGINT NOT NULL,
    "at" TIMESTAMPTZ NOT NULL, kind VARCHAR NOT NULL, system_id VARCHAR, payload BLOB NOT NULL,
    PRIMARY KEY (stream, lsn));
CREATE TABLE IF NOT EXISTS streams (stream VARCHAR PRIMARY KEY, last_lsn BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS marks (
    what VARCHAR NOT NULL, region VARCHAR NOT NULL, stream VARCHAR NOT NULL, lsn BIGINT NOT NULL,
    PRIMARY KEY (what, region, stream));
CREATE TABLE IF NOT EXISTS region_state (
    one INTEGER PRIMARY KEY, epoch BIGINT NOT NULL, primary_region VARCHAR NOT NULL);
"""

_AFTER = pa.schema([("stream", pa.string()), ("lsn", pa.int64())])
# Changes beyond a position given per stream (`after_`, a registered table; absent: from 1).
_BEYOND = """
    FROM changes c LEFT JOIN after_ a ON a.stream = c.stream
    WHERE c.lsn > coalesce(a.lsn, 0)
"""


class ChangeLog:
    def __init__(self, path: Path | str) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(str(path))
        self._db.execute("SET TimeZone = 'UTC'")
        self._db.execute(_TABLES)
        rows = self._db.execute("SELECT stream, last_lsn FROM streams").fetchall()
        self._last: dict[str, int] = dict(rows)

    def close(self) -> None:
        self._db.close()

    # -- the log -----------------------------------------------------------------------------

    def append(self, entries: Iterable[Entry], epoch: int) -> dict[str, int]:
        """Log changes in one transaction; the last LSN given per stream."""
        entries = list(entries)
        if not entries:
            return {}
        last = dict(self._last)
        lsns = []
        for stream, kind, _, _ in entries:
            if kind not in changes.KINDS:
                raise ValueError(f"unknown change kind {kind!r}")
            last[stream] = last.get(stream, 0) + 1
            lsns.append(last[stream])
        now = datetime.now(UTC)
        rows = pa.table(
            {
                "stream": [e[0] for e in entries],
                "lsn": lsns,
                "epoch": [epoch] * len(entries),
                "at": [now] * len(entries),
                "kind": [e[1] for e in entries],
                "system_id": [e[2] for e in entries],
                "payload": [e[3] for e in entries],
            },
            schema=changes.SCHEMA,
        )
        given = {s: n for s, n in last.items() if self._last.get(s) != n}
        bumped = pa.table({"stream": list(given), "lsn": list(given.values())}, schema=_AFTER)
        db = self._db
        db.execute("BEGIN")
        try:
            db.register("rows_", rows)
            db.register("bumped_", bumped)
            db.execute("INSERT INTO changes SELECT * FROM rows_")
            db.execute(
                "INSERT INTO streams SELECT stream, lsn FROM bumped_ "
                "ON CONFLICT (stream) DO UPDATE SET last_lsn = excluded.last_lsn"
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        finally:
            db.unregister("rows_")
            db.unregister("bumped_")
        self._last = last
        return given

    def read(self, after: Mapping[str, int], limit: int) -> pa.Table:
        """Changes beyond `after`, by stream then LSN, at most `limit` of them."""
        with self._after(after):
            table = self._db.execute(
                f"SELECT c.* {_BEYOND} ORDER BY c.stream, c.lsn LIMIT ?", [limit]
            ).fetch_arrow_table()
        return table.cast(changes.SCHEMA)

    def last(self) -> dict[str, int]:
        return dict(self._last)

    def pending(self, after: Mapping[str, int]) -> tuple[int, datetime | None]:
        """How many changes lie beyond `after`, and when the oldest of them was logged."""
        with self._after(after):
            count, oldest = self._db.execute(f'SELECT count(*), min(c."at") {_BEYOND}').fetchone()
        return count, oldest

    def compact(self, through: Mapping[str, int]) -> int:
        """Drop changes at or below `through` (shipped everywhere, or under a snapshot)."""
        with self._after(through):
            (dropped,) = self._db.execute(
                "SELECT count(*) FROM changes c JOIN after_ a ON a.stream = c.stream "
                "WHERE c.lsn <= a.lsn"
            ).fetchone()
            self._db.execute(
                "DELETE FROM changes c USING after_ a WHERE a.stream = c.stream AND c.lsn <= a.lsn"
            )
        return dropped

    def _after(self, after: Mapping[str, int]):
        table = pa.table({"stream": list(after), "lsn": list(after.values())}, schema=_AFTER)
        return _Registered(self._db, "after_", table)

    # -- marks and the region's state ---------------------------------------------------------

    def mark(self, what: str, region: str, versions: Mapping[str, int]) -> None:
        """Remember `versions` as how far `what` ("shipped", "applied") got for `region`; a
        mark never moves back."""
        if not versions:
            return
        table = pa.table({"stream": list(versions), "lsn": list(versions.values())}, schema=_AFTER)
        with _Registered(self._db, "mark_", table):
            self._db.execute(
                "INSERT INTO marks SELECT ?, ?, stream, lsn FROM mark_ "
                "ON CONFLICT (what, region, stream) "
                "DO UPDATE SET lsn = greatest(marks.lsn, excluded.lsn)",
                [what, region],
            )

    def marks(self, what: str) -> dict[str, dict[str, int]]:
        """{region: {stream: lsn}} for `what`."""
        out: dict[str, dict[str, int]] = {}
        rows = self._db.execute(
            "SELECT region, stream, lsn FROM marks WHERE what = ?", [what]
        ).fetchall()
        for region, stream, lsn in rows:
            out.setdefault(region, {})[stream] = lsn
        return out

    def region_state(self) -> tuple[int, str] | None:
        """(epoch, primary) as last set here; None before the first."""
        return self._db.execute(
            "SELECT epoch, primary_region FROM region_state WHERE one = 1"
        ).fetchone()

    def set_region_state(self, epoch: int, primary: str) -> None:
        self._db.execute(
            "INSERT INTO region_state VALUES (1, ?, ?) ON CONFLICT (one) "
            "DO UPDATE SET epoch = excluded.epoch, primary_region = excluded.primary_region",
            [epoch, primary],
        )


class _Registered:
    """An Arrow table visible to SQL under `name` for the length of a `with` block."""

    def __init__(self, db: duckdb.DuckDBPyConnection, name: str, table: pa.Table) -> None:
        self._db, self._name, self._table = db, name, table

    def __enter__(self) -> None:
        self._db.register(self._name, self._table)

    def __exit__(self, *exc: object) -> None:
        self._db.unregister(self._name)
