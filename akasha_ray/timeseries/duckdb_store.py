"""Embedded time-series store: one DuckDB file, raw points plus 5-minute and 1-hour rollups.

The rollups are kept by `refresh()` (the refresh policy: start and end offsets, as TimescaleDB's
continuous aggregates). A query joins three parts, so an answer always equals the same aggregation
over the raw points:
- buckets below the rollup's watermark, from the rollup table;
- buckets at or after it (not materialized yet), from aggregates kept in memory as points are
  written (`recent.RecentBuckets`, rebuilt from the raw points when the store opens);
- buckets below the watermark that late points changed since, from the raw points (they are
  listed in `metrics_invalidations` until a refresh re-aggregates them).

Checkpoints are ours, run after a write once the WAL passes 16 MiB (DuckDB's own threshold):
DuckDB's automatic one runs inside COMMIT, and when it fails (a full disk) COMMIT raises although
the write is durable, so the caller would store the points again. After a fatal DuckDB error (the
database is then invalidated: every later statement fails) the next call reopens the file; what
was committed is in the WAL and comes back.

One process owns the file (the `timeseries` actor). DuckDB calls block, so they run in worker
threads. Writes and refreshes run one at a time under a lock. Queries run concurrently on their own
cursors and read the in-memory state without a lock: the state carries a generation, odd while a
commit is being published, and a query whose generation moved while it ran is run again, so the
memory it used and the database snapshot it read always belong together.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.errors import InvalidInput, Unavailable
from akasha_ray.timeseries import duckdb_sql as sql
from akasha_ray.timeseries.base import WRITE_TOKENS_KEPT
from akasha_ray.timeseries.batch import PointBatch, as_batch
from akasha_ray.timeseries.models import MAX_BUCKETS, Bucket, MetricsQuery, Point
from akasha_ray.timeseries.options import TimeseriesOptions
from akasha_ray.timeseries.recent import Grouped, RecentBuckets
from akasha_ray.timeseries.rollups import ROLLUPS, Rollup, refresh_window
from akasha_ray.timeseries.series import SeriesCatalog

_NAIVE_TIMESTAMP = pa.timestamp("us")
_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)
_OPTIMISTIC_TRIES = 8
_CHECKPOINT_WAL_BYTES = 16 << 20

# rollup key -> series id -> buckets (UTC microseconds) invalidated by late points
LateBuckets = dict[int, frozenset[int]]


def _naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)


def _us(naive: datetime) -> int:
    return (naive - _EPOCH) // _US


@lru_cache(maxsize=1 << 16)  # answers reuse the same bucket starts: build each datetime once
def _from_us(us: int) -> datetime:
    return (_EPOCH + us * _US).replace(tzinfo=UTC)


def _naive_from_us(us: int) -> datetime:
    return _EPOCH + us * _US


def _width_us(rollup: Rollup) -> int:
    return rollup.width // _US


class DuckDBStore:
    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path, options: TimeseriesOptions):
        self._con = con
        self._path = path
        self._options = options
        self._write_lock = threading.Lock()
        self._cursor_lock = threading.Lock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._opened = 0  # how many times the file was reopened: cursors of older ones are stale
        self._invalidated: str | None = None  # why DuckDB invalidated the connection, if it did
        self._generation = 0  # odd while a commit and its memory update are being published
        self._load(con)

    def _load(self, con: duckdb.DuckDBPyConnection) -> None:
        """The in-memory state, from the database (built whole, then swapped in)."""
        series = SeriesCatalog()
        series.add(con.execute(sql.READ_SERIES).fetchall())
        watermarks: dict[str, datetime] = dict(con.execute(sql.READ_WATERMARKS).fetchall())
        late_buckets: dict[str, LateBuckets] = {key: {} for key in ROLLUPS}
        for key, series_id, bucket in con.execute(sql.READ_INVALIDATIONS).fetchall():
            late = late_buckets[key]
            late[series_id] = late.get(series_id, frozenset()) | {_us(bucket)}
        recent: dict[str, RecentBuckets] = {}
        for key, rollup in ROLLUPS.items():
            recent[key] = RecentBuckets()
            rows = con.execute(sql.recent(rollup), {"watermark": watermarks[key]})
            columns = rows.fetchnumpy()
            if len(columns["series_id"]):
                recent[key].add(Grouped(*(np.asarray(c) for c in columns.values())))
        self._series, self._watermarks = series, watermarks
        self._late, self._recent = late_buckets, recent

    @classmethod
    def open_sync(cls, path: Path, options: TimeseriesOptions) -> DuckDBStore:
        return cls(_connect(path), path, options)

    @classmethod
    async def open(cls, path: Path, options: TimeseriesOptions) -> DuckDBStore:
        return await asyncio.to_thread(cls.open_sync, path, options)

    @contextmanager
    def _publishing(self) -> Iterator[None]:
        self._generation += 1
        try:
            yield
        finally:
            self._generation += 1

    @contextmanager
    def _noting_fatal(self) -> Iterator[None]:
        """Remember a fatal error: DuckDB has invalidated the connection, the next call reopens."""
        try:
            yield
        except duckdb.FatalException as exc:
            self._invalidated = str(exc).splitlines()[0]
            raise Unavailable(f"the metrics database failed: {exc}") from exc

    def _reopen_if_invalidated(self) -> None:
        """Call with the write lock held."""
        if self._invalidated is None:
            return
        with self._publishing():
            self._close_connection()
            self._con = _connect(self._path)  # Unavailable while it cannot: tried again next call
            self._opened += 1
            self._load(self._con)
            self._invalidated = None

    def _close_connection(self) -> None:
        # Closing an invalidated or half-closed connection may raise: it is being dropped anyway.
        with self._cursor_lock:
            for cursor in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cursor.close()
            self._cursors.clear()
        with contextlib.suppress(duckdb.Error):
            self._con.close()

    # -- writes ---------------------------------------------------------------------------------

    async def write(self, points: PointBatch | Iterable[Point], token: str | None = None) -> int:
        batch = as_batch(points)
        if not len(batch):
            return 0
        return await asyncio.to_thread(self._write, batch, token)

    def _write(self, batch: PointBatch, token: str | None) -> int:
        table = batch.table.combine_chunks()
        timestamps_us = pc.cast(table.column("timestamp"), pa.int64()).to_numpy()
        values = table.column("metric_value").to_numpy()
        incoming = table.set_column(0, "timestamp", table.column(0).cast(_NAIVE_TIMESTAMP))
        with self._write_lock, self._noting_fatal():
            self._reopen_if_invalidated()
            written = self._write_locked(batch, token, incoming, timestamps_us, values)
            self._checkpoint_if_due()
            return written

    def _write_locked(
        self,
        batch: PointBatch,
        token: str | None,
        incoming: pa.Table,
        timestamps_us: np.ndarray,
        values: np.ndarray,
    ) -> int:
        con = self._con
        con.register("incoming", incoming)
        try:
            con.begin()
            try:
                if token is not None:
                    stored = con.execute(sql.WRITTEN, {"token": token}).fetchone()
                    if stored is not None:  # a retry of a write that was stored
                        con.rollback()
                        return stored[0]
                    con.execute(
                        sql.RECORD_WRITE,
                        {"token": token, "written_at": _naive(_now()), "points": len(batch)},
                    )
                con.execute(sql.INSERT_RAW)
                new_series = con.execute(sql.INSERT_SERIES).fetchall()
                series_ids = self._series.ids_of(incoming, pending=new_series)
                recent, late = self._split_late(con, series_ids, timestamps_us, values)
            except BaseException:
                with contextlib.suppress(duckdb.Error):  # the error that got here is the news
                    con.rollback()
                raise
            with self._publishing():
                con.commit()
                self._series.add(new_series)
                for key in ROLLUPS:
                    self._recent[key].add(recent[key])
                    self._late[key] = _merge_late(self._late[key], late[key])
        finally:
            with contextlib.suppress(duckdb.Error):  # fails only on a connection that failed
                con.unregister("incoming")
        return len(batch)

    def _checkpoint_if_due(self) -> None:
        """After a commit, with the write lock held. The write stands whatever happens here."""
        try:
            wal_bytes = Path(f"{self._path}.wal").stat().st_size
        except FileNotFoundError:
            return
        if wal_bytes < _CHECKPOINT_WAL_BYTES:
            return
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.FatalException as exc:  # invalidated: reopened by the next call
            self._invalidated = str(exc).splitlines()[0]
        except duckdb.Error:
            pass  # e.g. no room for it: the WAL keeps every commit, tried after the next write

    def _split_late(
        self,
        con: duckdb.DuckDBPyConnection,
        series_ids: np.ndarray,
        timestamps_us: np.ndarray,
        values: np.ndarray,
    ) -> tuple[dict[str, Grouped], dict[str, dict[int, set[int]]]]:
        """Per rollup: aggregates of the points at or after the watermark (for memory), and the
        buckets below it that late points change (recorded in the database too)."""
        recent: dict[str, Grouped] = {}
        late: dict[str, dict[int, set[int]]] = {}
        for key, rollup in ROLLUPS.items():
            grouped = Grouped.from_points(series_ids, timestamps_us, values, _width_us(rollup))
            watermark = self._watermarks[key]
            is_late = grouped.buckets_us < _us(watermark)
            late[key] = {}
            if is_late.any():
                con.execute(sql.invalidate(rollup), {"rollup": key, "watermark": watermark})
                for series_id, bucket in zip(
                    grouped.series_ids[is_late].tolist(),
                    grouped.buckets_us[is_late].tolist(),
                    strict=True,
                ):
                    late[key].setdefault(series_id, set()).add(bucket)
                grouped = Grouped(*(column[~is_late] for column in vars(grouped).values()))
            recent[key] = grouped
        return recent, late

    # -- refresh policy -------------------------------------------------------------------------

    async def refresh(self, now: datetime | None = None) -> dict[str, Any]:
        now = _now() if now is None else now
        return await asyncio.to_thread(self._refresh, now.astimezone(UTC))

    def _refresh(self, now: datetime) -> dict[str, Any]:
        with self._write_lock, self._noting_fatal():
            self._reopen_if_invalidated()
            report = self._refresh_locked(now)
            forgotten = self._con.execute(
                sql.FORGET_WRITES, {"before": _naive(_now() - WRITE_TOKENS_KEPT)}
            ).fetchone()
            report["write_tokens_forgotten"] = forgotten[0] if forgotten else 0
            self._checkpoint_if_due()
            return report

    def _refresh_locked(self, now: datetime) -> dict[str, Any]:
        report: dict[str, Any] = {}
        windows = {}
        con = self._con
        con.begin()
        try:
            for key, rollup in ROLLUPS.items():
                policy = self._options.policies()[key]
                watermark = self._watermarks[key].replace(tzinfo=UTC)
                window = refresh_window(rollup, policy, watermark, now)
                windows[key] = window
                lo, hi = _naive(window.watermark), _naive(window.new_watermark)
                if hi > lo:
                    for statement in sql.materialize_new(rollup):
                        con.execute(statement, {"lo": lo, "hi": hi})
                late = self._rematerialize_late(con, rollup, _naive(window.late_from), lo)
                con.execute(sql.SET_WATERMARK, {"rollup": key, "watermark": hi})
                report[key] = {
                    "watermark": window.new_watermark.isoformat(),
                    "late_buckets_refreshed": late,
                }
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # the error that got here is the news
                con.rollback()
            raise
        with self._publishing():
            con.commit()
            for key, window in windows.items():
                self._watermarks[key] = _naive(window.new_watermark)
                self._recent[key].drop_before(_us(_naive(window.new_watermark)))
                self._late[key] = _drop_late(
                    self._late[key],
                    _us(_naive(window.late_from)),
                    _us(_naive(window.watermark)),
                )
        return report

    def _rematerialize_late(
        self, con: duckdb.DuckDBPyConnection, rollup: Rollup, lo: datetime, hi: datetime
    ) -> int:
        params = {"rollup": rollup.key, "lo": lo, "hi": hi}
        first, last, count = con.execute(sql.late_range(rollup), params).fetchone()
        if first is None:
            return 0
        delete_rollup, insert_rollup, forget = sql.rematerialize_late(rollup)
        con.execute(delete_rollup, {"lo": lo, "hi": hi})
        con.execute(insert_rollup, {"raw_lo": first, "raw_hi": last + rollup.width})
        con.execute(forget, params)
        return count

    # -- queries --------------------------------------------------------------------------------

    async def query(self, query: MetricsQuery) -> list[Bucket]:
        if query.bucket == "raw":
            return await asyncio.to_thread(self._query, self._query_raw, query)
        return await asyncio.to_thread(self._query, self._query_rollup, query)

    def _query(
        self, answer: Callable[[MetricsQuery], list[Bucket]], query: MetricsQuery
    ) -> list[Bucket]:
        if self._invalidated is not None:
            with self._write_lock, self._noting_fatal():
                self._reopen_if_invalidated()
        try:
            with self._noting_fatal():
                return answer(query)
        except duckdb.Error as exc:  # a cursor of a connection reopened meanwhile, typically
            raise Unavailable(f"the metrics database failed: {exc}") from exc

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None or self._local.opened != self._opened:
            with self._cursor_lock:
                cursor = self._con.cursor()
                cursor.execute("SET TimeZone = 'UTC'")
                self._cursors.append(cursor)
            self._local.cursor, self._local.opened = cursor, self._opened
        return cursor

    def _query_raw(self, query: MetricsQuery) -> list[Bucket]:
        params = _params(query)
        params["limit"] = MAX_BUCKETS + 1
        rows = self._cursor().execute(sql.query_raw(query.system_id is not None), params)
        rows = rows.fetchall()
        if len(rows) > MAX_BUCKETS:
            raise InvalidInput(
                f"more than {MAX_BUCKETS} raw points in range: narrow it or use bucket=5m",
                field="bucket",
            )
        return [Bucket(t.replace(tzinfo=UTC), a, lo, hi, n) for t, a, lo, hi, n in rows]

    def _query_rollup(self, query: MetricsQuery) -> list[Bucket]:
        for _ in range(_OPTIMISTIC_TRIES):
            generation = self._generation
            if generation % 2 == 0:
                answer = self._answer(query)
                if self._generation == generation:
                    return answer
        with self._write_lock:  # writers keep coming: hold them off for one consistent answer
            return self._answer(query)

    def _answer(self, query: MetricsQuery) -> list[Bucket]:
        rollup = ROLLUPS[query.bucket]
        key, width = rollup.key, _width_us(rollup)
        if query.system_id is None:
            series_ids = self._series.of_metric(query.metric_name)
        else:
            series_id = self._series.get(query.system_id, query.metric_name)
            series_ids = [] if series_id is None else [series_id]
        if not series_ids:
            return []
        start, end = _naive(query.aligned_start), _naive(query.aligned_end)
        watermark = self._watermarks[key]
        recent = self._recent[key].collect(series_ids, _us(start), _us(end))
        rows: list[tuple[int, float, float, float, int]] = []
        mat_end = min(end, watermark)
        if start < mat_end:
            late_lo, late_hi = _late_range(self._late[key], series_ids, _us(start), _us(mat_end))
            params: dict[str, Any] = {"start": start, "mat_end": mat_end}
            if query.system_id is None:
                params["metric"] = query.metric_name
            else:
                params["series"] = series_ids[0]
            with_late = late_lo is not None
            if with_late:
                params["late_lo"] = _naive_from_us(late_lo)
                params["late_hi"] = _naive_from_us(late_hi + width)
            statement = sql.query_materialized(rollup, query.system_id is not None, with_late)
            rows = self._cursor().execute(statement, params).fetchall()
            rows.sort()
        # Materialized rows are all below the watermark, recent ones at or after it: no overlap.
        rows.extend((b, *agg) for b, agg in sorted(recent.items()))
        return [
            Bucket(_from_us(b), total / count, low, high, count)
            for b, total, low, high, count in rows
        ]

    async def raw_aggregation(self, query: MetricsQuery) -> list[Bucket]:
        """The same buckets computed from raw points only (the benchmark's and tests' peer)."""
        return await asyncio.to_thread(self._raw_aggregation, query)

    def _raw_aggregation(self, query: MetricsQuery) -> list[Bucket]:
        statement = sql.raw_aggregation(ROLLUPS[query.bucket], query.system_id is not None)
        rows = self._cursor().execute(statement, _params(query)).fetchall()
        return [Bucket(t.replace(tzinfo=UTC), a, lo, hi, n) for t, a, lo, hi, n in rows]

    async def export(self, offset: int, limit: int, system_id: str | None = None) -> PointBatch:
        """Raw points (of one system, when given) in a fixed order, `limit` from `offset`: a DR
        snapshot or export pages through them."""
        return await asyncio.to_thread(self._query, self._export, (offset, limit, system_id))

    def _export(self, page: tuple[int, int, str | None]) -> PointBatch:
        offset, limit, system_id = page
        where = "" if system_id is None else "WHERE system_id = $system"
        params: dict[str, Any] = {"offset": offset, "limit": limit}
        if system_id is not None:
            params["system"] = system_id
        table = (
            self._cursor()
            .execute(
                'SELECT "timestamp", system_id, metric_name, metric_value, tags FROM metrics '
                f"{where} ORDER BY ALL LIMIT $limit OFFSET $offset",
                params,
            )
            .to_arrow_table()
        )
        return PointBatch(table.cast(PointBatch.empty().table.schema))

    # -- lifecycle ------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        return {
            "backend": "duckdb",
            "flavour": f"duckdb {duckdb.__version__}",
            "path": str(self._path),
            "series": len(self._series),
            "watermarks": {
                k: v.replace(tzinfo=UTC).isoformat() for k, v in self._watermarks.items()
            },
            "recent_buckets": {k: len(v) for k, v in self._recent.items()},
            "late_buckets": {k: sum(map(len, v.values())) for k, v in self._late.items()},
            "invalidated": self._invalidated,  # reopened by the next call
        }

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._write_lock:
            if self._invalidated is None:
                # Failing (e.g. a full disk) loses nothing: the WAL, replayed at the next open.
                with contextlib.suppress(duckdb.Error):
                    self._con.execute("CHECKPOINT")
            self._close_connection()


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path))
    except duckdb.Error as exc:  # another process holds the file; no room to replay the WAL
        raise Unavailable(f"cannot open {path}: {exc}") from exc
    try:
        con.execute("SET TimeZone = 'UTC'")
        # No automatic checkpoint: see the module's docstring (1 TB stands for never).
        con.execute("SET checkpoint_threshold = '1TB'")
        for statement in sql.SCHEMA:
            con.execute(statement)
        for key in ROLLUPS:
            con.execute(sql.INIT_STATE, {"rollup": key, "watermark": sql.INIT_STATE_DEFAULT})
    except BaseException:
        con.close()
        raise
    return con


def _now() -> datetime:
    return datetime.now(UTC)


def _params(query: MetricsQuery) -> dict[str, Any]:
    params: dict[str, Any] = {
        "metric": query.metric_name,
        "start": _naive(query.aligned_start),
        "end": _naive(query.aligned_end),
    }
    if query.system_id is not None:
        params["system"] = query.system_id
    return params


def _late_range(
    late: LateBuckets, series_ids: list[int], lo_us: int, hi_us: int
) -> tuple[int | None, int | None]:
    first = last = None
    for series_id in series_ids:
        for bucket in late.get(series_id, ()):
            if lo_us <= bucket < hi_us:
                first = bucket if first is None else min(first, bucket)
                last = bucket if last is None else max(last, bucket)
    return first, last


# Late-bucket maps are replaced, never changed in place: queries read them without a lock.
def _merge_late(late: LateBuckets, added: dict[int, set[int]]) -> LateBuckets:
    if not added:
        return late
    merged = dict(late)
    for series_id, buckets in added.items():
        merged[series_id] = merged.get(series_id, frozenset()) | buckets
    return merged


def _drop_late(late: LateBuckets, lo_us: int, hi_us: int) -> LateBuckets:
    kept = {}
    for series_id, buckets in late.items():
        remaining = frozenset(b for b in buckets if not lo_us <= b < hi_us)
        if remaining:
            kept[series_id] = remaining
    return kept
