"""Aggregates of the points a rollup has not materialized yet, kept in memory by the DuckDB store.

A query answers the materialized buckets from the rollup table and the recent ones from here,
instead of re-reading the raw tail at every query: sum, min, max and count merge exactly, so the
answer is the same. The table is rebuilt from the raw points when the store opens, so it holds
nothing that is not on disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

# bucket start (UTC microseconds) -> [sum, min, max, count]
Aggregates = dict[int, list[float]]


@dataclass(frozen=True)
class Grouped:
    """Points grouped by series and bucket, as arrays of equal length."""

    series_ids: np.ndarray
    buckets_us: np.ndarray
    sums: np.ndarray
    mins: np.ndarray
    maxs: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_points(
        cls, series_ids: np.ndarray, timestamps_us: np.ndarray, values: np.ndarray, width_us: int
    ) -> Grouped:
        table = pa.table(
            {
                "series_id": series_ids,
                "bucket": (timestamps_us // width_us) * width_us,  # floor: UTC-aligned buckets
                "value": values,
            }
        )
        grouped = table.group_by(["series_id", "bucket"], use_threads=False).aggregate(
            [("value", "sum"), ("value", "min"), ("value", "max"), ("value", "count")]
        )
        return cls(
            grouped.column("series_id").to_numpy(),
            grouped.column("bucket").to_numpy(),
            grouped.column("value_sum").to_numpy(),
            grouped.column("value_min").to_numpy(),
            grouped.column("value_max").to_numpy(),
            grouped.column("value_count").to_numpy(),
        )

    def rows(self) -> Iterable[tuple[int, int, float, float, float, int]]:
        return zip(
            self.series_ids.tolist(),
            self.buckets_us.tolist(),
            self.sums.tolist(),
            self.mins.tolist(),
            self.maxs.tolist(),
            self.counts.tolist(),
            strict=True,
        )


class RecentBuckets:
    """Per series, the aggregates of its buckets at or after the rollup's watermark."""

    def __init__(self) -> None:
        self._series: dict[int, Aggregates] = {}

    # Queries read without a lock: a series' bucket map is replaced, never resized in place (an
    # aggregate may be read half-updated, but the store's generation check then retries the query).
    def add(self, grouped: Grouped) -> None:
        updated: dict[int, Aggregates] = {}
        for series_id, bucket, total, low, high, count in grouped.rows():
            buckets = updated.get(series_id)
            if buckets is None:
                buckets = updated[series_id] = dict(self._series.get(series_id, {}))
            agg = buckets.get(bucket)
            if agg is None:
                buckets[bucket] = [total, low, high, count]
            else:
                buckets[bucket] = [
                    agg[0] + total,
                    min(agg[1], low),
                    max(agg[2], high),
                    agg[3] + count,
                ]
        self._series.update(updated)

    def drop_before(self, bucket_us: int) -> None:
        """Forget buckets the rollup has now materialized."""
        for series_id, buckets in list(self._series.items()):
            if any(b < bucket_us for b in buckets):
                kept = {b: agg for b, agg in buckets.items() if b >= bucket_us}
                if kept:
                    self._series[series_id] = kept
                else:
                    del self._series[series_id]

    def collect(self, series_ids: Iterable[int], lo_us: int, hi_us: int) -> Aggregates:
        """Buckets in [lo, hi) of these series, merged across series (copies)."""
        merged: Aggregates = {}
        for series_id in series_ids:
            for bucket, (total, low, high, count) in self._series.get(series_id, {}).items():
                if not lo_us <= bucket < hi_us:
                    continue
                agg = merged.get(bucket)
                if agg is None:
                    merged[bucket] = [total, low, high, count]
                else:
                    agg[0] += total
                    agg[1] = min(agg[1], low)
                    agg[2] = max(agg[2], high)
                    agg[3] += count
        return merged

    def __len__(self) -> int:
        return sum(len(b) for b in self._series.values())
