"""Akasha's own metrics: one point per system and measurement, validated as any batch is."""

from datetime import UTC, datetime

import pytest

from akasha_ray import self_metrics
from akasha_ray.errors import InvalidInput
from akasha_ray.models import TierReport

AT = datetime(2026, 12, 8, 1, 2, 3, 456789, tzinfo=UTC)
TIERS = [
    TierReport(tier="hot", latency_ms=3.5, hits=10, error=None),
    TierReport(tier="warm", latency_ms=7.25, hits=0, error=None),
]


def _rows(batch) -> set[tuple]:
    return {
        (r["timestamp"], r["system_id"], r["metric_name"], r["metric_value"])
        for r in batch.table.to_pylist()
    }


def test_a_search_counts_once_and_gives_each_tiers_latency_per_system():
    rows = _rows(self_metrics.searched(["a", "b"], TIERS, AT))
    assert rows == {
        (AT, system, name, value)
        for system in ("a", "b")
        for name, value in [
            ("akasha.search.count", 1.0),
            ("akasha.search.hot.latency_ms", 3.5),
            ("akasha.search.warm.latency_ms", 7.25),
        ]
    }


def test_a_search_naming_no_system_is_the_services():
    assert _rows(self_metrics.searched(None, [], AT)) == {
        (AT, "akasha", "akasha.search.count", 1.0)
    }


def test_ingests_and_tier_sizes_skip_nothing_but_zero_ingests():
    assert _rows(self_metrics.ingested({"a": 2, "b": 0}, AT)) == {
        (AT, "a", "akasha.memories.ingested", 2.0)
    }
    assert len(self_metrics.ingested({}, AT)) == 0
    assert _rows(self_metrics.tier_sizes("cold", {"a": 0, "b": 5}, AT)) == {
        (AT, "a", "akasha.tier.cold.memories", 0.0),
        (AT, "b", "akasha.tier.cold.memories", 5.0),
    }


def test_a_system_id_is_checked_as_a_written_points_is():
    with pytest.raises(InvalidInput):
        self_metrics.searched(["not a name!"], TIERS, AT)


def test_ten_thousand_systems_make_one_batch_of_every_point():
    systems = [f"s{i}" for i in range(10_000)]
    batch = self_metrics.searched(systems, TIERS, AT)
    assert len(batch) == 30_000
    assert sorted(batch.table.column("system_id").to_pylist()[:10_000]) == sorted(systems)
