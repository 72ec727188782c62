"""Per-system metrics as time series: one seam, an embedded and a scale backend.

`open_timeseries_store` imports a backend only when the configuration chooses it, so DuckDB-only
installs never need asyncpg (and the reverse).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from akasha_ray.errors import ConfigError
from akasha_ray.timeseries.base import TimeseriesStore
from akasha_ray.timeseries.batch import PointBatch
from akasha_ray.timeseries.models import Bucket, MetricsQuery, Point, QueryResponse
from akasha_ray.timeseries.options import TimeseriesOptions

if TYPE_CHECKING:
    from akasha_ray.config import TimeseriesConfig

__all__ = [
    "Bucket",
    "MetricsQuery",
    "Point",
    "PointBatch",
    "QueryResponse",
    "TimeseriesOptions",
    "TimeseriesStore",
    "duckdb_path",
    "open_timeseries_store",
]


def duckdb_path(data_dir: Path) -> Path:
    return data_dir / "timeseries" / "metrics.duckdb"


async def open_timeseries_store(
    config: TimeseriesConfig, data_dir: Path, options: TimeseriesOptions | None = None
) -> TimeseriesStore:
    """Open (creating if needed) the store the configuration names."""
    options = options or TimeseriesOptions()
    if config.backend == "duckdb":
        from akasha_ray.timeseries.duckdb_store import DuckDBStore

        return await DuckDBStore.open(duckdb_path(data_dir), options)
    if config.backend == "timescaledb":
        if config.dsn is None:
            raise ConfigError(
                "timeseries.backend is timescaledb but timeseries.dsn is not set "
                "(e.g. AKASHA_TIMESERIES__DSN=postgresql://user:pass@host:5432/akasha)"
            )
        from akasha_ray.timeseries.postgres_store import PostgresStore

        return await PostgresStore.open(config.dsn.get_secret_value(), options)
    raise ConfigError(f"unknown timeseries.backend {config.backend!r}")
