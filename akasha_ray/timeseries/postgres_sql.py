"""The PostgreSQL / TimescaleDB backend's SQL.

Statements name their parameters `$name` (as the DuckDB backend's do); `bind()` turns them into
asyncpg's `$1, $2, ...`. Values are always parameters; the only names formatted in are the
constants of `rollups.ROLLUPS`. Buckets use `date_bin` from the Unix epoch (core PostgreSQL 14+),
which gives the same UTC-aligned buckets as TimescaleDB's `time_bucket` for minutes and hours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from akasha_ray.timeseries.rollups import ROLLUPS, Rollup

_NAMED = re.compile(r"\$([a-z_]+)")
_ORIGIN = "TIMESTAMPTZ '1970-01-01 00:00:00+00'"

# Two int4 keys for pg_advisory_lock: "Akasha" in ASCII, then which lock.
WRITE_REFRESH_LOCK = (0x416B6173, 1)  # writers shared, refresh exclusive
SETUP_LOCK = (0x416B6173, 2)


def bind(statement: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """`$name` placeholders to `$1...`, with the argument list in that order."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in order:
            order.append(name)
        return f"${order.index(name) + 1}"

    text = _NAMED.sub(number, statement)
    missing = set(order) - set(params)
    if missing:
        raise KeyError(f"missing SQL parameters: {sorted(missing)}")
    return text, [params[name] for name in order]


def _bucket(rollup: Rollup, column: str) -> str:
    return f"date_bin({rollup.interval_sql}, {column}, {_ORIGIN})"


COMMON_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS metrics (
        "timestamp" TIMESTAMPTZ NOT NULL,
        system_id TEXT NOT NULL,
        metric_name TEXT NOT NULL,
        metric_value DOUBLE PRECISION NOT NULL,
        tags JSONB
    )""",
    """CREATE INDEX IF NOT EXISTS metrics_series_time
        ON metrics (system_id, metric_name, "timestamp" DESC)""",
    # Everything below a rollup's watermark is materialized, except the invalidated buckets.
    """CREATE TABLE IF NOT EXISTS metrics_rollup_state (
        rollup TEXT PRIMARY KEY,
        watermark TIMESTAMPTZ NOT NULL
    )""",
    # Buckets below the watermark that late points changed: answered from raw until refreshed.
    """CREATE TABLE IF NOT EXISTS metrics_invalidations (
        rollup TEXT NOT NULL,
        system_id TEXT NOT NULL,
        metric_name TEXT NOT NULL,
        bucket TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (rollup, system_id, metric_name, bucket)
    )""",
    # Which flavour this schema was created for: it keeps that flavour even if the other appears.
    """CREATE TABLE IF NOT EXISTS metrics_schema (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    # Tokens of the writes stored, so a write retried after an unknown outcome (the connection
    # lost during COMMIT) is stored once.
    """CREATE TABLE IF NOT EXISTS metrics_writes (
        token TEXT PRIMARY KEY,
        written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
        points BIGINT NOT NULL
    )""",
]

# First in a write's transaction: "INSERT 0 0" when that write was stored already (the key's row
# lock also orders two attempts that run at once).
RECORD_WRITE = """INSERT INTO metrics_writes (token, points) VALUES ($token, $points)
    ON CONFLICT DO NOTHING"""
FORGET_WRITES = "DELETE FROM metrics_writes WHERE written_at < now() - $keep::interval"

INIT_STATE = """INSERT INTO metrics_rollup_state VALUES ($rollup, $watermark)
    ON CONFLICT DO NOTHING"""
READ_FLAVOUR = "SELECT value FROM metrics_schema WHERE key = 'flavour'"
SAVE_FLAVOUR = """INSERT INTO metrics_schema VALUES ('flavour', $flavour)
    ON CONFLICT DO NOTHING"""
SCHEMA_EXISTS = "SELECT to_regclass('metrics_schema') IS NOT NULL"
TIMESCALEDB_VERSION = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
TIMESCALEDB_AVAILABLE = "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
CREATE_TIMESCALEDB = "CREATE EXTENSION IF NOT EXISTS timescaledb"

PLAIN_SCHEMA = [
    'CREATE INDEX IF NOT EXISTS metrics_time ON metrics ("timestamp")',
    *[
        statement
        for r in ROLLUPS.values()
        for statement in (
            f"""CREATE TABLE IF NOT EXISTS {r.table} (
                bucket TIMESTAMPTZ NOT NULL,
                system_id TEXT NOT NULL,
                metric_name TEXT NOT NULL,
                sum_value DOUBLE PRECISION NOT NULL,
                min_value DOUBLE PRECISION NOT NULL,
                max_value DOUBLE PRECISION NOT NULL,
                point_count BIGINT NOT NULL,
                PRIMARY KEY (system_id, metric_name, bucket)
            )""",
            f"CREATE INDEX IF NOT EXISTS {r.table}_metric ON {r.table} (metric_name, bucket)",
        )
    ],
]

# The plan's hypertable with the interval passed as an interval (not inside a string).
CREATE_HYPERTABLE = """SELECT create_hypertable('metrics', 'timestamp',
    chunk_time_interval => INTERVAL '1 day', if_not_exists => TRUE)"""


def create_continuous_aggregate(rollup: Rollup) -> str:
    # sum rather than avg: averages of several systems or buckets combine from sums and counts.
    # materialized_only: our queries add the raw tail themselves (see query_rollup).
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {rollup.table}
        WITH (timescaledb.continuous, timescaledb.materialized_only = true) AS
        SELECT time_bucket({rollup.interval_sql}, "timestamp") AS bucket, system_id, metric_name,
            sum(metric_value) AS sum_value, min(metric_value) AS min_value,
            max(metric_value) AS max_value, count(*) AS point_count
        FROM metrics GROUP BY 1, 2, 3
        WITH NO DATA"""


def add_refresh_policy(rollup: Rollup) -> str:
    """Params: $start_offset, $end_offset, $schedule_interval (intervals)."""
    return f"""SELECT add_continuous_aggregate_policy('{rollup.table}',
        start_offset => $start_offset::interval, end_offset => $end_offset::interval,
        schedule_interval => $schedule_interval::interval, if_not_exists => TRUE)"""


ADD_RETENTION = """SELECT add_retention_policy('metrics', drop_after => $drop_after::interval,
    if_not_exists => TRUE)"""
COMPRESSION_ENABLED = """SELECT compression_enabled FROM timescaledb_information.hypertables
    WHERE hypertable_name = 'metrics'"""
ENABLE_COMPRESSION = """ALTER TABLE metrics SET (timescaledb.compress,
    timescaledb.compress_segmentby = 'system_id, metric_name',
    timescaledb.compress_orderby = '"timestamp" DESC')"""
ADD_COMPRESSION = """SELECT add_compression_policy('metrics',
    compress_after => $compress_after::interval, if_not_exists => TRUE)"""

# -- writes -------------------------------------------------------------------------------------

LOCK_SHARED = "SELECT pg_advisory_xact_lock_shared($lock_a, $lock_b)"
LOCK = "SELECT pg_advisory_lock($lock_a, $lock_b)"
UNLOCK = "SELECT pg_advisory_unlock($lock_a, $lock_b)"
READ_WATERMARKS = "SELECT rollup, watermark FROM metrics_rollup_state"
READ_WATERMARK = "SELECT watermark FROM metrics_rollup_state WHERE rollup = $rollup"
SET_WATERMARK = "UPDATE metrics_rollup_state SET watermark = $watermark WHERE rollup = $rollup"

INSERT_RAW = """INSERT INTO metrics ("timestamp", system_id, metric_name, metric_value, tags)
    SELECT t, s, m, v, g::jsonb
    FROM unnest($ts::timestamptz[], $systems::text[], $metrics::text[], $values::float8[],
                $tags::text[]) AS p(t, s, m, v, g)"""


def invalidate(rollup: Rollup) -> str:
    """Record the buckets below the watermark that these (late) points change."""
    return f"""INSERT INTO metrics_invalidations (rollup, system_id, metric_name, bucket)
        SELECT DISTINCT '{rollup.key}', s, m, {_bucket(rollup, "t")}
        FROM unnest($ts::timestamptz[], $systems::text[], $metrics::text[]) AS p(t, s, m)
        WHERE {_bucket(rollup, "t")} < (
            SELECT watermark FROM metrics_rollup_state WHERE rollup = '{rollup.key}')
        ON CONFLICT DO NOTHING"""


# -- refresh --------------------------------------------------------------------------------------


def _upsert(rollup: Rollup, source: str) -> str:
    return f"""INSERT INTO {rollup.table}
            (bucket, system_id, metric_name, sum_value, min_value, max_value, point_count)
        {source}
        ON CONFLICT (system_id, metric_name, bucket) DO UPDATE SET
            sum_value = EXCLUDED.sum_value, min_value = EXCLUDED.min_value,
            max_value = EXCLUDED.max_value, point_count = EXCLUDED.point_count"""


def materialize_new(rollup: Rollup) -> str:
    """Plain PostgreSQL: materialize every bucket in [$lo, $hi)."""
    return _upsert(
        rollup,
        f"""SELECT {_bucket(rollup, 'm."timestamp"')}, m.system_id, m.metric_name,
            sum(m.metric_value), min(m.metric_value), max(m.metric_value), count(*)
        FROM metrics m WHERE m."timestamp" >= $lo AND m."timestamp" < $hi
        GROUP BY 1, 2, 3""",
    )


def late_range(rollup: Rollup) -> str:
    return """SELECT min(bucket), max(bucket), count(*) FROM metrics_invalidations
        WHERE rollup = $rollup AND bucket >= $lo AND bucket < $hi"""


def rematerialize_late(rollup: Rollup) -> str:
    """Plain PostgreSQL: re-aggregate the invalidated buckets in [$lo, $hi); raw points are read
    in [$raw_lo, $raw_hi)."""
    bucket = _bucket(rollup, 'm."timestamp"')
    return _upsert(
        rollup,
        f"""SELECT {bucket}, m.system_id, m.metric_name,
            sum(m.metric_value), min(m.metric_value), max(m.metric_value), count(*)
        FROM metrics m
        JOIN metrics_invalidations i ON i.rollup = '{rollup.key}'
            AND i.system_id = m.system_id AND i.metric_name = m.metric_name
            AND i.bucket = {bucket}
        WHERE m."timestamp" >= $raw_lo AND m."timestamp" < $raw_hi
          AND i.bucket >= $lo AND i.bucket < $hi
        GROUP BY 1, 2, 3""",
    )


FORGET_LATE = """DELETE FROM metrics_invalidations
    WHERE rollup = $rollup AND bucket >= $lo AND bucket < $hi"""


def refresh_continuous_aggregate(rollup: Rollup) -> str:
    """TimescaleDB: materialize [$lo, $hi), new buckets and invalidated ones alike."""
    return f"""CALL refresh_continuous_aggregate('{rollup.table}',
        $lo::timestamptz, $hi::timestamptz)"""


# -- queries --------------------------------------------------------------------------------------


def query_state(by_system: bool) -> str:
    """One row: the watermark, and the range of invalidated buckets this query touches."""
    system = "AND system_id = $system" if by_system else ""
    return f"""SELECT
            (SELECT watermark FROM metrics_rollup_state WHERE rollup = $rollup),
            min(bucket), max(bucket)
        FROM metrics_invalidations
        WHERE rollup = $rollup AND metric_name = $metric {system}
          AND bucket >= $start AND bucket < $end"""


def _invalidated(rollup: Rollup, alias: str, bucket: str) -> str:
    return f"""EXISTS (SELECT 1 FROM metrics_invalidations i
        WHERE i.rollup = '{rollup.key}' AND i.system_id = {alias}.system_id
          AND i.metric_name = {alias}.metric_name AND i.bucket = {bucket})"""


def query_rollup(rollup: Rollup, by_system: bool, with_late: bool) -> str:
    """Materialized buckets below the watermark, plus the raw tail above it, plus (with_late) the
    invalidated buckets from raw points: always the same answer as aggregating raw points.

    Params: $metric, [$system], $start, $end, $mat_end (min(end, watermark)), $tail_start
    (max(start, watermark)), [$late_lo, $late_hi].
    """
    system_r = "AND r.system_id = $system" if by_system else ""
    system_m = "AND m.system_id = $system" if by_system else ""
    bucket = _bucket(rollup, 'm."timestamp"')
    not_late = "AND NOT " + _invalidated(rollup, "r", "r.bucket") if with_late else ""
    raw = "m.metric_value, m.metric_value, m.metric_value, 1"
    parts = [
        f"""SELECT r.bucket, r.sum_value, r.min_value, r.max_value, r.point_count
        FROM {rollup.table} r
        WHERE r.metric_name = $metric {system_r} AND r.bucket >= $start AND r.bucket < $mat_end
        {not_late}""",
        f"""SELECT {bucket}, {raw}
        FROM metrics m
        WHERE m.metric_name = $metric {system_m}
          AND m."timestamp" >= $tail_start AND m."timestamp" < $end""",
    ]
    if with_late:
        parts.append(
            f"""SELECT {bucket}, {raw}
            FROM metrics m
            WHERE m.metric_name = $metric {system_m}
              AND m."timestamp" >= $late_lo AND m."timestamp" < $late_hi
              AND {_invalidated(rollup, "m", bucket)}"""
        )
    union = "\nUNION ALL\n".join(parts)
    return f"""WITH parts(bucket, sum_value, min_value, max_value, point_count) AS ({union})
        SELECT bucket, sum(sum_value) / sum(point_count), min(min_value), max(max_value),
            sum(point_count)::BIGINT
        FROM parts GROUP BY bucket ORDER BY bucket"""


def query_raw(by_system: bool) -> str:
    """Params: $metric, [$system], $start, $end, $limit."""
    system = "AND system_id = $system" if by_system else ""
    return f"""SELECT "timestamp", avg(metric_value), min(metric_value), max(metric_value),
            count(*)
        FROM metrics
        WHERE metric_name = $metric {system} AND "timestamp" >= $start AND "timestamp" < $end
        GROUP BY 1 ORDER BY 1 LIMIT $limit"""
