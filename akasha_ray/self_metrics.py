"""What Akasha measures about each system it serves, written into the time-series store.

Metric names (all per `system_id`; measurements tied to no single system use `akasha`):
- `akasha.memories.ingested`: memories newly stored by one request (re-sent ones not counted);
- `akasha.search.count`: 1 per search naming (or scoped to) the system;
- `akasha.search.<tier>.latency_ms`: the tier's part of that search;
- `akasha.tier.<tier>.memories`: how many memories of the system the tier holds (sampled).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from akasha_ray.models import TierReport
from akasha_ray.timeseries import Point

SERVICE = "akasha"


def ingested(new_per_system: Mapping[str, int], at: datetime) -> list[Point]:
    return [
        Point(timestamp=at, system_id=system, metric_name="akasha.memories.ingested", value=n)
        for system, n in new_per_system.items()
        if n
    ]


def searched(
    system_ids: Iterable[str] | None, tiers: list[TierReport], at: datetime
) -> list[Point]:
    points = []
    for system in system_ids or [SERVICE]:
        points.append(
            Point(timestamp=at, system_id=system, metric_name="akasha.search.count", value=1.0)
        )
        points.extend(
            Point(
                timestamp=at,
                system_id=system,
                metric_name=f"akasha.search.{tier.tier}.latency_ms",
                value=tier.latency_ms,
            )
            for tier in tiers
        )
    return points


def tier_sizes(tier: str, per_system: Mapping[str, int], at: datetime) -> list[Point]:
    return [
        Point(timestamp=at, system_id=s, metric_name=f"akasha.tier.{tier}.memories", value=n)
        for s, n in per_system.items()
    ]
