"""The time-series seam: one async interface, an embedded (DuckDB) and a scale (PostgreSQL /
TimescaleDB) implementation, both held to the same answers by the congruence tests."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from akasha_ray.timeseries.batch import PointBatch
from akasha_ray.timeseries.models import Bucket, MetricsQuery, Point

# How long a store remembers a write's token: longer than any retry of one write takes.
WRITE_TOKENS_KEPT = timedelta(days=1)


@runtime_checkable
class TimeseriesStore(Protocol):
    async def write(self, points: PointBatch | Iterable[Point], token: str | None = None) -> int:
        """Store points durably (committed when this returns); returns how many.

        `token` names this write: a write whose token is stored already is not stored again
        (for `WRITE_TOKENS_KEPT`), so a write retried after an error of unknown outcome (a
        connection lost during COMMIT) is stored once."""
        ...

    async def query(self, query: MetricsQuery) -> list[Bucket]:
        """Buckets in time order; always equal to the same aggregation over the raw points."""
        ...

    async def refresh(self, now: datetime | None = None) -> dict[str, Any]:
        """Run the rollups' refresh policy as of `now` (default: the clock); says what it did.
        Also forgets write tokens older than `WRITE_TOKENS_KEPT` (by the clock)."""
        ...

    async def health(self) -> dict[str, Any]:
        """At least `backend` and `flavour` (e.g. "timescaledb 2.23.0", "postgresql 15.18")."""
        ...

    async def close(self) -> None: ...
