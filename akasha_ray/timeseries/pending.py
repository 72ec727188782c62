"""Read-your-writes: a store's answer merged with the points accepted but not yet flushed.

Sum, min, max and count merge exactly (the average is the merged sum over the merged count), so
the merged answer is the same aggregation over all accepted points that the store would give once
they are flushed. Buckets no buffered point falls in are returned as the store gave them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.errors import InvalidInput
from akasha_ray.timeseries.batch import PointBatch
from akasha_ray.timeseries.models import MAX_BUCKETS, ROLLUP_WIDTHS, Bucket, MetricsQuery

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def pending_aggregates(
    batches: Sequence[PointBatch], query: MetricsQuery
) -> dict[datetime, tuple[float, float, float, int]]:
    """Per bucket start (raw: per instant), sum, min, max and count of the buffered points that
    the query asks for."""
    if not batches:
        return {}
    lo, hi = _us(query.aligned_start), _us(query.aligned_end)
    # One table of many chunks (no copy): one pass of each kernel, not one per batch.
    table = pa.concat_tables([batch.table for batch in batches])
    mask = pc.equal(table.column("metric_name"), query.metric_name)
    if query.system_id is not None:
        mask = pc.and_(mask, pc.equal(table.column("system_id"), query.system_id))
    at = pc.cast(table.column("timestamp"), pa.int64())  # UTC microseconds (batch.SCHEMA)
    mask = pc.and_(mask, pc.and_(pc.greater_equal(at, lo), pc.less(at, hi)))
    points = pa.table(
        {"at": pc.filter(at, mask), "value": pc.filter(table.column("metric_value"), mask)}
    )
    if not points.num_rows:
        return {}
    width = ROLLUP_WIDTHS.get(query.bucket)
    at = points.column("at")
    if width is not None:  # floor to UTC-aligned bucket starts (timestamps are never negative)
        width_us = width // _US
        at = pc.multiply(pc.divide(at, width_us), width_us)
    grouped = (
        pa.table({"bucket": at, "value": points.column("value")})
        .group_by("bucket", use_threads=False)
        .aggregate([("value", "sum"), ("value", "min"), ("value", "max"), ("value", "count")])
    )
    return {
        _EPOCH + bucket * _US: (total, low, high, count)
        for bucket, total, low, high, count in zip(
            grouped.column("bucket").to_pylist(),
            grouped.column("value_sum").to_pylist(),
            grouped.column("value_min").to_pylist(),
            grouped.column("value_max").to_pylist(),
            grouped.column("value_count").to_pylist(),
            strict=True,
        )
    }


def merge_pending(
    buckets: list[Bucket], batches: Sequence[PointBatch], query: MetricsQuery
) -> list[Bucket]:
    """The store's buckets with the buffered points folded in, in time order."""
    extra = pending_aggregates(batches, query)
    if not extra:
        return buckets
    merged: dict[datetime, Bucket] = {b.bucket: b for b in buckets}
    for start, (total, low, high, count) in extra.items():
        seen = merged.get(start)
        if seen is not None:
            total += seen.avg * seen.count
            low, high = min(low, seen.min), max(high, seen.max)
            count += seen.count
        merged[start] = Bucket(start, total / count, low, high, count)
    if query.bucket == "raw" and len(merged) > MAX_BUCKETS:
        raise InvalidInput(
            f"more than {MAX_BUCKETS} raw points in range: narrow it or use bucket=5m",
            field="bucket",
        )
    return [merged[start] for start in sorted(merged)]


def _us(value: datetime) -> int:
    return (value - _EPOCH) // _US
