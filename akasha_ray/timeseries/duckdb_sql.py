"""The DuckDB backend's SQL. Values are always bound parameters; the only names formatted in are
the constants of `rollups.ROLLUPS`.

Times are `TIMESTAMP` holding UTC (not `TIMESTAMPTZ`), so bucketing never depends on a session
time zone: `time_bucket` over minutes and hours is aligned on UTC boundaries.
"""

from __future__ import annotations

from akasha_ray.timeseries.rollups import NOTHING_MATERIALIZED, ROLLUPS, Rollup

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS metrics (
        "timestamp" TIMESTAMP NOT NULL,
        system_id VARCHAR NOT NULL,
        metric_name VARCHAR NOT NULL,
        metric_value DOUBLE NOT NULL,
        tags VARCHAR
    )""",
    # Rollups and invalidations name a series by an integer: DuckDB's zone maps keep only a short
    # prefix of strings ("system-0..." for every system), so a string filter scans the whole
    # rollup, while an integer one skips every row group of other series.
    "CREATE SEQUENCE IF NOT EXISTS metrics_series_ids",
    """CREATE TABLE IF NOT EXISTS metrics_series (
        series_id INTEGER PRIMARY KEY,
        system_id VARCHAR NOT NULL,
        metric_name VARCHAR NOT NULL
    )""",
    *[
        f"""CREATE TABLE IF NOT EXISTS {r.table} (
            bucket TIMESTAMP NOT NULL,
            series_id INTEGER NOT NULL,
            sum_value DOUBLE NOT NULL,
            min_value DOUBLE NOT NULL,
            max_value DOUBLE NOT NULL,
            point_count BIGINT NOT NULL
        )"""
        for r in ROLLUPS.values()
    ],
    # Everything below a rollup's watermark is materialized, except the invalidated buckets.
    """CREATE TABLE IF NOT EXISTS metrics_rollup_state (
        rollup VARCHAR PRIMARY KEY,
        watermark TIMESTAMP NOT NULL
    )""",
    # Buckets below the watermark that late points changed: answered from raw until refreshed.
    """CREATE TABLE IF NOT EXISTS metrics_invalidations (
        rollup VARCHAR NOT NULL,
        series_id INTEGER NOT NULL,
        bucket TIMESTAMP NOT NULL
    )""",
    # Tokens of the writes stored, so a write retried after an unknown outcome is stored once.
    """CREATE TABLE IF NOT EXISTS metrics_writes (
        token VARCHAR PRIMARY KEY,
        written_at TIMESTAMP NOT NULL,
        points BIGINT NOT NULL
    )""",
]

WRITTEN = "SELECT points FROM metrics_writes WHERE token = $token"
RECORD_WRITE = "INSERT INTO metrics_writes VALUES ($token, $written_at, $points)"
FORGET_WRITES = "DELETE FROM metrics_writes WHERE written_at < $before"

INIT_STATE = "INSERT INTO metrics_rollup_state VALUES ($rollup, $watermark) ON CONFLICT DO NOTHING"
INIT_STATE_DEFAULT = NOTHING_MATERIALIZED.replace(tzinfo=None)
READ_WATERMARKS = "SELECT rollup, watermark FROM metrics_rollup_state"
SET_WATERMARK = "UPDATE metrics_rollup_state SET watermark = $watermark WHERE rollup = $rollup"

INSERT_RAW = """INSERT INTO metrics
    SELECT "timestamp", system_id, metric_name, metric_value, tags FROM incoming"""
INSERT_SERIES = """INSERT INTO metrics_series
    SELECT nextval('metrics_series_ids'), system_id, metric_name FROM (
        SELECT DISTINCT system_id, metric_name FROM incoming
        EXCEPT SELECT system_id, metric_name FROM metrics_series
    )
    RETURNING series_id, system_id, metric_name"""

_WITH_SERIES = (
    "JOIN metrics_series s ON s.system_id = m.system_id AND s.metric_name = m.metric_name"
)


def _bucket(rollup: Rollup, column: str) -> str:
    return f"time_bucket({rollup.interval_sql}, {column})"


def _invalidated(rollup: Rollup, series: str, bucket: str) -> str:
    return f"""EXISTS (SELECT 1 FROM metrics_invalidations i
        WHERE i.rollup = '{rollup.key}' AND i.series_id = {series} AND i.bucket = {bucket})"""


def invalidate(rollup: Rollup) -> str:
    """Record the buckets below the watermark that incoming (late) points change."""
    return f"""INSERT INTO metrics_invalidations
        SELECT DISTINCT $rollup, s.series_id, {_bucket(rollup, 'm."timestamp"')}
        FROM incoming m {_WITH_SERIES} WHERE m."timestamp" < $watermark
        EXCEPT
        SELECT rollup, series_id, bucket FROM metrics_invalidations WHERE rollup = $rollup"""


def _aggregate_raw(rollup: Rollup, where: str) -> str:
    # Sorted by series, so the rollup's zone maps skip row groups of other series.
    return f"""SELECT {_bucket(rollup, 'm."timestamp"')} AS bucket, s.series_id,
            sum(m.metric_value), min(m.metric_value), max(m.metric_value), count(*)
        FROM metrics m {_WITH_SERIES} WHERE {where}
        GROUP BY ALL ORDER BY s.series_id, bucket"""


def materialize_new(rollup: Rollup) -> list[str]:
    """Statements (params $lo, $hi) that materialize every bucket in [lo, hi)."""
    return [
        f"DELETE FROM {rollup.table} WHERE bucket >= $lo AND bucket < $hi",
        f"""INSERT INTO {rollup.table}
            {_aggregate_raw(rollup, 'm."timestamp" >= $lo AND m."timestamp" < $hi')}""",
    ]


def late_range(rollup: Rollup) -> str:
    return """SELECT min(bucket), max(bucket), count(*) FROM metrics_invalidations
        WHERE rollup = $rollup AND bucket >= $lo AND bucket < $hi"""


def rematerialize_late(rollup: Rollup) -> list[str]:
    """Statements that re-aggregate the invalidated buckets in [$lo, $hi) and forget those
    invalidations; $raw_lo and $raw_hi bound the raw points to read."""
    invalidated = _invalidated(rollup, "s.series_id", _bucket(rollup, 'm."timestamp"'))
    late_points = f'm."timestamp" >= $raw_lo AND m."timestamp" < $raw_hi AND {invalidated}'
    return [
        f"""DELETE FROM {rollup.table} r WHERE r.bucket >= $lo AND r.bucket < $hi
            AND {_invalidated(rollup, "r.series_id", "r.bucket")}""",
        f"INSERT INTO {rollup.table} {_aggregate_raw(rollup, late_points)}",
        """DELETE FROM metrics_invalidations
            WHERE rollup = $rollup AND bucket >= $lo AND bucket < $hi""",
    ]


def query_materialized(rollup: Rollup, by_system: bool, with_late: bool) -> str:
    """Per bucket in [$start, $mat_end): sum, min, max and count of the materialized rows, or, for
    the buckets late points invalidated (with_late: raw points read in [$late_lo, $late_hi)), of
    the raw points. The store adds the buckets at or after the watermark from memory.

    Params: $series (by_system) or $metric, $start, $mat_end, [$late_lo, $late_hi].
    """
    series = (
        "$series"
        if by_system
        else "SELECT series_id FROM metrics_series WHERE metric_name = $metric"
    )
    if by_system and not with_late:  # one row per bucket already: no need to group
        return f"""SELECT epoch_us(bucket), sum_value, min_value, max_value, point_count
            FROM {rollup.table}
            WHERE series_id = $series AND bucket >= $start AND bucket < $mat_end"""
    not_late = "AND NOT " + _invalidated(rollup, "r.series_id", "r.bucket") if with_late else ""
    parts = [
        f"""SELECT r.bucket, r.sum_value, r.min_value, r.max_value, r.point_count
        FROM {rollup.table} r
        WHERE r.series_id IN ({series}) AND r.bucket >= $start AND r.bucket < $mat_end
        {not_late}"""
    ]
    if with_late:
        bucket = _bucket(rollup, 'm."timestamp"')
        parts.append(
            f"""SELECT {bucket}, m.metric_value, m.metric_value, m.metric_value, 1
            FROM metrics m {_WITH_SERIES}
            WHERE s.series_id IN ({series})
              AND m."timestamp" >= $late_lo AND m."timestamp" < $late_hi
              AND {_invalidated(rollup, "s.series_id", bucket)}"""
        )
    union = "\nUNION ALL\n".join(parts)
    return f"""WITH parts(bucket, sum_value, min_value, max_value, point_count) AS ({union})
        SELECT epoch_us(bucket), sum(sum_value), min(min_value), max(max_value),
            sum(point_count)::BIGINT
        FROM parts GROUP BY bucket"""


def recent(rollup: Rollup) -> str:
    """Aggregates of the points at or after $watermark, to rebuild the in-memory recent buckets."""
    return f"""SELECT s.series_id, epoch_us({_bucket(rollup, 'm."timestamp"')}),
            sum(m.metric_value), min(m.metric_value), max(m.metric_value), count(*)
        FROM metrics m {_WITH_SERIES} WHERE m."timestamp" >= $watermark
        GROUP BY ALL"""


READ_SERIES = "SELECT series_id, system_id, metric_name FROM metrics_series"
READ_INVALIDATIONS = "SELECT rollup, series_id, bucket FROM metrics_invalidations"


def query_raw(by_system: bool) -> str:
    """Params: $metric, [$system], $start, $end, $limit."""
    system = "AND system_id = $system" if by_system else ""
    return f"""SELECT "timestamp", avg(metric_value), min(metric_value), max(metric_value),
            count(*)
        FROM metrics
        WHERE metric_name = $metric {system} AND "timestamp" >= $start AND "timestamp" < $end
        GROUP BY 1 ORDER BY 1 LIMIT $limit"""


def raw_aggregation(rollup: Rollup, by_system: bool) -> str:
    """The plain aggregation over raw points that the rollups must equal (the benchmark's peer).

    Params: $metric, [$system], $start (bucket-aligned), $end.
    """
    system = "AND system_id = $system" if by_system else ""
    return f"""SELECT {_bucket(rollup, '"timestamp"')} AS bucket, avg(metric_value),
            min(metric_value), max(metric_value), count(*)
        FROM metrics
        WHERE metric_name = $metric {system} AND "timestamp" >= $start AND "timestamp" < $end
        GROUP BY 1 ORDER BY 1"""
