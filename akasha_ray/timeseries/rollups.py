"""What every backend shares about rollups: their names, widths, and refresh windows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from akasha_ray.timeseries.models import EARLIEST, ROLLUP_WIDTHS, floor_time
from akasha_ray.timeseries.options import RollupPolicy


@dataclass(frozen=True)
class Rollup:
    key: str  # "5m" / "1h", as in queries
    table: str  # a constant: the only kind of name that is ever formatted into SQL
    width: timedelta
    interval_sql: str  # the width as an SQL interval literal


ROLLUPS: dict[str, Rollup] = {
    "5m": Rollup("5m", "metrics_5min", ROLLUP_WIDTHS["5m"], "INTERVAL '5 minutes'"),
    "1h": Rollup("1h", "metrics_1hour", ROLLUP_WIDTHS["1h"], "INTERVAL '1 hour'"),
}

# Watermark of a rollup that holds nothing yet: no point can be older (see models.EARLIEST).
NOTHING_MATERIALIZED = EARLIEST


@dataclass(frozen=True)
class RefreshWindow:
    """One refresh of one rollup: materialize [watermark, new_watermark) and re-aggregate the
    buckets late points invalidated in [late_from, watermark)."""

    watermark: datetime
    new_watermark: datetime
    late_from: datetime


def refresh_window(
    rollup: Rollup, policy: RollupPolicy, watermark: datetime, now: datetime
) -> RefreshWindow:
    # The watermark never moves back (a clock step back must not un-materialize anything), and it
    # moves to a bucket boundary, so a materialized bucket is always complete.
    new_watermark = max(watermark, floor_time(now - policy.end_offset, rollup.width))
    late_from = min(watermark, floor_time(now - policy.start_offset, rollup.width))
    return RefreshWindow(watermark, new_watermark, late_from)
