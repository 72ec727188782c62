"""Scale time-series store: PostgreSQL through an asyncpg pool, with TimescaleDB when it is there.

With the timescaledb extension: `metrics` is a hypertable with 1-day chunks, the rollups are the
continuous aggregates `metrics_5min` and `metrics_1hour` with their refresh policies (for servers
whose background workers run them), and optional retention and compression policies. Without it:
plain tables, and `refresh()` maintains the rollups itself. Setup is idempotent, and a schema keeps
the flavour it was created with.

Queries are answered the same way on both flavours, and as the DuckDB store answers them: the
materialized buckets below our watermark, the raw points above it, and the raw points of buckets
that late points invalidated below it. TimescaleDB's own real-time aggregation would answer from a
stale bucket after a late point until the next refresh; this does not.

Writers hold a shared advisory lock and `refresh()` an exclusive one, so a write never reads a
watermark that a refresh is moving (it could otherwise miss recording a late bucket).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import numpy as np
import pyarrow.compute as pc

from akasha_ray.errors import ConfigError, InvalidInput, Unavailable
from akasha_ray.timeseries import postgres_sql as sql
from akasha_ray.timeseries.base import WRITE_TOKENS_KEPT
from akasha_ray.timeseries.batch import PointBatch, as_batch
from akasha_ray.timeseries.models import MAX_BUCKETS, Bucket, MetricsQuery, Point
from akasha_ray.timeseries.options import TimeseriesOptions
from akasha_ray.timeseries.rollups import NOTHING_MATERIALIZED, ROLLUPS, refresh_window

# Failures of the server or the network, as opposed to mistakes in our SQL.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
)
_LOCK = {"lock_a": sql.WRITE_REFRESH_LOCK[0], "lock_b": sql.WRITE_REFRESH_LOCK[1]}


async def _execute(conn: asyncpg.Connection, statement: str, **params: Any) -> str:
    text, args = sql.bind(statement, params)
    return await conn.execute(text, *args)


async def _fetch(conn: asyncpg.Connection, statement: str, **params: Any) -> list[asyncpg.Record]:
    text, args = sql.bind(statement, params)
    return await conn.fetch(text, *args)


async def _fetchrow(conn: asyncpg.Connection, statement: str, **params: Any) -> asyncpg.Record:
    text, args = sql.bind(statement, params)
    return await conn.fetchrow(text, *args)


class PostgresStore:
    def __init__(self, pool: asyncpg.Pool, flavour: str, options: TimeseriesOptions) -> None:
        self._pool = pool
        self._flavour = flavour  # "timescaledb" or "postgresql"
        self._options = options

    @classmethod
    async def open(cls, dsn: str, options: TimeseriesOptions) -> PostgresStore:
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=options.pool_min_size, max_size=options.pool_max_size
            )
        except _UNAVAILABLE as exc:
            raise Unavailable(f"cannot reach the time-series database: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                flavour = await _set_up(conn, options)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, flavour, options)

    @property
    def is_timescaledb(self) -> bool:
        return self._flavour == "timescaledb"

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _UNAVAILABLE as exc:
            raise Unavailable(f"time-series database: {exc}") from exc

    # -- writes ---------------------------------------------------------------------------------

    async def write(self, points: PointBatch | Iterable[Point], token: str | None = None) -> int:
        table = as_batch(points).table
        if not table.num_rows:
            return 0
        columns = {
            "ts": table.column("timestamp").to_pylist(),
            "systems": table.column("system_id").to_pylist(),
            "metrics": table.column("metric_name").to_pylist(),
        }
        oldest = pc.min(table.column("timestamp")).as_py()
        async with self._connection() as conn, conn.transaction():
            if token is not None:
                recorded = await _execute(conn, sql.RECORD_WRITE, token=token, points=len(table))
                if recorded == "INSERT 0 0":  # a retry of a write that was stored
                    return table.num_rows
            await _execute(conn, sql.LOCK_SHARED, **_LOCK)
            await _execute(
                conn,
                sql.INSERT_RAW,
                **columns,
                values=np.asarray(table.column("metric_value")).tolist(),
                tags=table.column("tags").to_pylist(),
            )
            watermarks = dict(await _fetch(conn, sql.READ_WATERMARKS))
            for key, rollup in ROLLUPS.items():
                if oldest < watermarks[key]:  # late points: their buckets are materialized
                    await _execute(conn, sql.invalidate(rollup), **columns)
        return table.num_rows

    # -- refresh policy -------------------------------------------------------------------------

    async def refresh(self, now: datetime | None = None) -> dict[str, Any]:
        now = (datetime.now(UTC) if now is None else now).astimezone(UTC)
        report: dict[str, Any] = {}
        async with self._connection() as conn:
            await _execute(conn, sql.LOCK, **_LOCK)
            try:
                for key in ROLLUPS:
                    report[key] = await self._refresh_rollup(conn, key, now)
            finally:
                await _execute(conn, sql.UNLOCK, **_LOCK)
            forgotten = await _execute(conn, sql.FORGET_WRITES, keep=WRITE_TOKENS_KEPT)
        report["write_tokens_forgotten"] = int(forgotten.split()[-1])
        return report

    async def _refresh_rollup(
        self, conn: asyncpg.Connection, key: str, now: datetime
    ) -> dict[str, Any]:
        rollup = ROLLUPS[key]
        policy = self._options.policies()[key]
        (watermark,) = await _fetchrow(conn, sql.READ_WATERMARK, rollup=key)
        window = refresh_window(rollup, policy, watermark, now)
        if self.is_timescaledb and window.new_watermark > window.late_from:
            # Not in a transaction: TimescaleDB refuses to refresh inside one.
            await _execute(
                conn,
                sql.refresh_continuous_aggregate(rollup),
                lo=window.late_from,
                hi=window.new_watermark,
            )
        async with conn.transaction():
            late = {"rollup": key, "lo": window.late_from, "hi": window.watermark}
            first, last, count = await _fetchrow(conn, sql.late_range(rollup), **late)
            if not self.is_timescaledb:
                if window.new_watermark > window.watermark:
                    await _execute(
                        conn,
                        sql.materialize_new(rollup),
                        lo=window.watermark,
                        hi=window.new_watermark,
                    )
                if first is not None:
                    await _execute(
                        conn,
                        sql.rematerialize_late(rollup),
                        lo=window.late_from,
                        hi=window.watermark,
                        raw_lo=first,
                        raw_hi=last + rollup.width,
                    )
            await _execute(conn, sql.FORGET_LATE, **late)
            await _execute(conn, sql.SET_WATERMARK, rollup=key, watermark=window.new_watermark)
        return {"watermark": window.new_watermark.isoformat(), "late_buckets_refreshed": count}

    # -- queries --------------------------------------------------------------------------------

    async def query(self, query: MetricsQuery) -> list[Bucket]:
        by_system = query.system_id is not None
        params: dict[str, Any] = {
            "metric": query.metric_name,
            "start": query.aligned_start,
            "end": query.aligned_end,
        }
        if by_system:
            params["system"] = query.system_id
        async with self._connection() as conn:
            if query.bucket == "raw":
                rows = await _fetch(conn, sql.query_raw(by_system), **params, limit=MAX_BUCKETS + 1)
                if len(rows) > MAX_BUCKETS:
                    raise InvalidInput(
                        f"more than {MAX_BUCKETS} raw points in range: narrow it or use bucket=5m",
                        field="bucket",
                    )
                return _buckets(rows)
            rollup = ROLLUPS[query.bucket]
            # One snapshot for the watermark, the invalidations and the answer.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                watermark, late_first, late_last = await _fetchrow(
                    conn, sql.query_state(by_system), **params, rollup=rollup.key
                )
                params["mat_end"] = min(params["end"], watermark)
                params["tail_start"] = max(params["start"], watermark)
                with_late = late_first is not None
                if with_late:
                    params["late_lo"] = late_first
                    params["late_hi"] = late_last + rollup.width
                statement = sql.query_rollup(rollup, by_system, with_late)
                return _buckets(await _fetch(conn, statement, **params))

    # -- lifecycle ------------------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        async with self._connection() as conn:
            server = await conn.fetchval("SHOW server_version")
            extension = await conn.fetchval(sql.TIMESCALEDB_VERSION)
            watermarks = dict(await _fetch(conn, sql.READ_WATERMARKS))
        flavour = (
            f"timescaledb {extension}" if self.is_timescaledb else f"postgresql {server.split()[0]}"
        )
        return {
            "backend": "timescaledb",
            "flavour": flavour,
            "server_version": server,
            "timescaledb_installed": extension,
            "watermarks": {k: v.isoformat() for k, v in watermarks.items()},
            "pool": {"size": self._pool.get_size(), "idle": self._pool.get_idle_size()},
        }

    async def close(self) -> None:
        # A bounded wait: a server that never answers the goodbye must not hang shutdown.
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except TimeoutError:
            self._pool.terminate()


async def _set_up(conn: asyncpg.Connection, options: TimeseriesOptions) -> str:
    """Create what is missing, idempotently, under a lock (several Akasha processes may start at
    once). Returns the flavour: "timescaledb" or "postgresql"."""
    lock = {"lock_a": sql.SETUP_LOCK[0], "lock_b": sql.SETUP_LOCK[1]}
    await _execute(conn, sql.LOCK, **lock)
    try:
        flavour = await _flavour(conn, options)
        for statement in sql.COMMON_SCHEMA:
            await conn.execute(statement)
        await _execute(conn, sql.SAVE_FLAVOUR, flavour=flavour)
        if flavour == "timescaledb":
            await _set_up_timescaledb(conn, options)
        else:
            for statement in sql.PLAIN_SCHEMA:
                await conn.execute(statement)
        for key in ROLLUPS:
            await _execute(conn, sql.INIT_STATE, rollup=key, watermark=NOTHING_MATERIALIZED)
        return flavour
    finally:
        await _execute(conn, sql.UNLOCK, **lock)


async def _flavour(conn: asyncpg.Connection, options: TimeseriesOptions) -> str:
    if await conn.fetchval(sql.SCHEMA_EXISTS):
        recorded = await conn.fetchval(sql.READ_FLAVOUR)
        if recorded is not None:
            if recorded != "timescaledb" and options.require_timescaledb:
                raise ConfigError(
                    "the metrics tables were created without timescaledb; migrate them or set "
                    "timeseries require_timescaledb to false"
                )
            return recorded
    if await conn.fetchval(sql.TIMESCALEDB_VERSION) is None:
        if await conn.fetchval(sql.TIMESCALEDB_AVAILABLE) is None:
            if options.require_timescaledb:
                raise ConfigError(
                    "the PostgreSQL server has no timescaledb extension; install it or set "
                    "timeseries require_timescaledb to false"
                )
            return "postgresql"
        try:
            await conn.execute(sql.CREATE_TIMESCALEDB)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise ConfigError(
                "timescaledb is available but this role may not create it: run "
                "CREATE EXTENSION timescaledb as a superuser once"
            ) from exc
    return "timescaledb"


async def _set_up_timescaledb(conn: asyncpg.Connection, options: TimeseriesOptions) -> None:
    await conn.execute(sql.CREATE_HYPERTABLE)
    for key, rollup in ROLLUPS.items():
        policy = options.policies()[key]
        await conn.execute(sql.create_continuous_aggregate(rollup))
        await _execute(
            conn,
            sql.add_refresh_policy(rollup),
            start_offset=policy.start_offset,
            end_offset=policy.end_offset,
            schedule_interval=policy.schedule_interval,
        )
    if options.retention is not None:
        await _execute(conn, sql.ADD_RETENTION, drop_after=options.retention)
    if options.compress_after is not None:
        if not await conn.fetchval(sql.COMPRESSION_ENABLED):
            await conn.execute(sql.ENABLE_COMPRESSION)
        await _execute(conn, sql.ADD_COMPRESSION, compress_after=options.compress_after)


def _buckets(rows: list[asyncpg.Record]) -> list[Bucket]:
    return [Bucket(b.astimezone(UTC), avg, low, high, count) for b, avg, low, high, count in rows]
