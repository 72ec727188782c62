"""What Akasha measures about each system it serves, written into the time-series store.

Metric names (all per `system_id`; measurements tied to no single system use `akasha`):
- `akasha.memories.ingested`: memories newly stored by one request (re-sent ones not counted);
- `akasha.search.count`: 1 per search naming (or scoped to) the system;
- `akasha.search.<tier>.latency_ms`: the tier's part of that search;
- `akasha.tier.<tier>.memories`: how many memories of the system the tier holds (sampled).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import numpy as np

from akasha_ray.models import TierReport
from akasha_ray.times import to_us
from akasha_ray.timeseries import PointBatch

SERVICE = "akasha"


def ingested(new_per_system: Mapping[str, int], at: datetime) -> PointBatch:
    counted = {system: n for system, n in new_per_system.items() if n}
    return _batch(at, list(counted), ["akasha.memories.ingested"] * len(counted), counted.values())


def searched(system_ids: Iterable[str] | None, tiers: list[TierReport], at: datetime) -> PointBatch:
    """A count and each tier's latency, per system the search named. Built as columns: a
    search may name 10,000 systems, and a model per point cost 0.4 s of the request's time."""
    systems = list(system_ids or [SERVICE])
    names = ["akasha.search.count", *(f"akasha.search.{t.tier}.latency_ms" for t in tiers)]
    values = [1.0, *(t.latency_ms for t in tiers)]
    return _batch(
        at, systems * len(names), np.repeat(names, len(systems)), np.repeat(values, len(systems))
    )


def tier_sizes(tier: str, per_system: Mapping[str, int], at: datetime) -> PointBatch:
    name = f"akasha.tier.{tier}.memories"
    return _batch(at, list(per_system), [name] * len(per_system), per_system.values())


def _batch(
    at: datetime, systems: Sequence[str], names: Sequence[str], values: Iterable[float]
) -> PointBatch:
    values = np.fromiter(values, dtype=np.float64, count=len(systems))
    return PointBatch.from_columns(
        np.full(len(systems), to_us(at), dtype=np.int64), systems, list(names), values
    )
