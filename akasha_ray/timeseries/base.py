"""The time-series seam: one async interface, an embedded (DuckDB) and a scale (PostgreSQL /
TimescaleDB) implementation, both held to the same answers by the congruence tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from akasha_ray.timeseries.batch import PointBatch
from akasha_ray.timeseries.models import Bucket, MetricsQuery, Point


@runtime_checkable
class TimeseriesStore(Protocol):
    async def write(self, points: PointBatch | Iterable[Point]) -> int:
        """Store points durably (committed when this returns); returns how many."""
        ...

    async def query(self, query: MetricsQuery) -> list[Bucket]:
        """Buckets in time order; always equal to the same aggregation over the raw points."""
        ...

    async def refresh(self, now: datetime | None = None) -> dict[str, Any]:
        """Run the rollups' refresh policy as of `now` (default: the clock); says what it did."""
        ...

    async def health(self) -> dict[str, Any]:
        """At least `backend` and `flavour` (e.g. "timescaledb 2.23.0", "postgresql 15.18")."""
        ...

    async def close(self) -> None: ...
