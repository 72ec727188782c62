"""The time-series congruence suite: one scenario every backend must answer identically, checked
against pandas' resampling of the same raw points (an independent peer: no SQL, no rollups).

Used by tests/unit/test_timeseries_duckdb.py and tests/integration/test_timeseries_postgres.py.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

import pandas as pd

from akasha_ray.timeseries import Bucket, MetricsQuery, Point, TimeseriesStore

T0 = datetime(2025, 3, 1, tzinfo=UTC)
SYSTEMS = ["alpha", "beta.bot", "gamma-7"]
METRICS = ["latency_ms", "tokens.out"]
PANDAS_WIDTHS = {"5m": "5min", "1h": "1h"}


def random_points(rng: random.Random, n: int, start: datetime, span: timedelta) -> list[Point]:
    """n points at random instants in [start, start + span), in random order (out of order),
    with some sharing an instant."""
    seconds = int(span.total_seconds())
    points = []
    for _ in range(n):
        offset = timedelta(seconds=rng.randrange(seconds), microseconds=rng.choice([0, 250_000]))
        points.append(
            Point(
                timestamp=start + offset,
                system_id=rng.choice(SYSTEMS),
                metric_name=rng.choice(METRICS),
                value=round(rng.uniform(-50, 500), 3),
                tags={"region": rng.choice(["eu", "us"])} if rng.random() < 0.5 else {},
            )
        )
    return points


def pandas_buckets(points: list[Point], query: MetricsQuery) -> list[Bucket]:
    """The answer computed by pandas from the raw points."""
    frame = pd.DataFrame(
        {
            "timestamp": [p.timestamp for p in points],
            "system_id": [p.system_id for p in points],
            "metric_name": [p.metric_name for p in points],
            "value": [p.value for p in points],
        }
    )
    frame = frame[frame.metric_name == query.metric_name]
    if query.system_id is not None:
        frame = frame[frame.system_id == query.system_id]
    series = frame.set_index("timestamp")["value"].sort_index()
    if query.bucket == "raw":
        series = series[(series.index >= query.start) & (series.index < query.end)]
        grouped = series.groupby(level=0).agg(["mean", "min", "max", "count"])
    else:
        grouped = series.resample(
            PANDAS_WIDTHS[query.bucket], origin="epoch", label="left", closed="left"
        ).agg(["mean", "min", "max", "count"])
        grouped = grouped[grouped["count"] > 0]
        lo, hi = query.aligned_start, query.aligned_end
        grouped = grouped[(grouped.index >= lo) & (grouped.index < hi)]
    return [
        Bucket(index.to_pydatetime(), row["mean"], row["min"], row["max"], int(row["count"]))
        for index, row in grouped.iterrows()
    ]


def assert_same(actual: list[Bucket], expected: list[Bucket], label: str = "") -> None:
    assert [b.bucket for b in actual] == [b.bucket for b in expected], label
    for got, want in zip(actual, expected, strict=True):
        assert got.count == want.count, (label, got, want)
        assert got.min == want.min and got.max == want.max, (label, got, want)
        assert math.isclose(got.avg, want.avg, rel_tol=1e-9, abs_tol=1e-9), (label, got, want)


def queries(start: datetime, end: datetime) -> list[MetricsQuery]:
    """Every shape the API can ask, over a range whose ends are not bucket-aligned."""
    asked = []
    for bucket in ("5m", "1h", "raw"):
        for system_id in [*SYSTEMS[:2], None]:
            for metric in METRICS:
                asked.append(
                    MetricsQuery(
                        system_id=system_id,
                        metric_name=metric,
                        start=start,
                        end=end,
                        bucket=bucket,
                    )
                )
    return asked


async def assert_matches_pandas(
    store: TimeseriesStore, points: list[Point], start: datetime, end: datetime, label: str
) -> int:
    compared = 0
    for query in queries(start, end):
        expected = pandas_buckets(points, query)
        assert_same(await store.query(query), expected, f"{label}: {query!r}")
        compared += len(expected)
    return compared


async def run_congruence(store: TimeseriesStore) -> None:
    """Write, refresh, write late and out-of-order points, refresh: after every step every query
    equals pandas over all points written so far."""
    rng = random.Random(20250301)
    span = timedelta(hours=6)
    start, end = T0 + timedelta(minutes=7, seconds=13), T0 + span - timedelta(minutes=3)
    written: list[Point] = []

    async def write(points: list[Point]) -> None:
        assert await store.write(points) == len(points)
        written.extend(points)

    await write(random_points(rng, 1500, T0, span))
    assert await assert_matches_pandas(store, written, start, end, "before any refresh") > 0

    # Materializes 5m buckets up to T0+4h50 and 1h buckets up to T0+4h (the plan's end offsets).
    now = T0 + timedelta(hours=5)
    await store.refresh(now)
    await assert_matches_pandas(store, written, start, end, "after the first refresh")

    # Late points: into materialized buckets inside the refresh window (the last hour), older
    # than it (only answered right by reading raw points), and on-time points after them.
    await write(random_points(rng, 40, now - timedelta(minutes=50), timedelta(minutes=40)))
    await write(random_points(rng, 40, T0, timedelta(hours=2)))
    await write(random_points(rng, 40, now, timedelta(hours=1)))
    await assert_matches_pandas(store, written, start, end, "late points, not refreshed")

    report = await store.refresh(now + timedelta(minutes=20))
    assert report["5m"]["late_buckets_refreshed"] > 0, report
    await assert_matches_pandas(store, written, start, end, "late points, refreshed")

    # A refresh with nothing new changes nothing; a clock that went back moves nothing back.
    await store.refresh(now + timedelta(minutes=20))
    await store.refresh(now - timedelta(hours=3))
    await assert_matches_pandas(store, written, start, end, "repeated refreshes")

    # Far in the future: everything materialized, late points included.
    await store.refresh(T0 + timedelta(days=30))
    await assert_matches_pandas(store, written, start, end, "all materialized")


async def assert_unknown_series_empty(store: TimeseriesStore) -> None:
    for bucket in ("5m", "1h", "raw"):
        query = MetricsQuery(
            system_id="nobody",
            metric_name="latency_ms",
            start=T0,
            end=T0 + timedelta(days=1),
            bucket=bucket,
        )
        assert await store.query(query) == []
