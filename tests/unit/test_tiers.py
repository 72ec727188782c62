from datetime import UTC, datetime, timedelta

import pytest

from akasha_ray.tiers import TierWindows

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)
W = TierWindows(hot_days=7, warm_days=90)


@pytest.mark.parametrize(
    ("age_days", "tier"),
    [
        (0, "hot"),
        (6.99, "hot"),
        (7, "warm"),
        (89.9, "warm"),
        (90, "cold"),
        (400, "cold"),
        (-1, "hot"),
    ],  # a clock slightly ahead still lands in hot
)
def test_tier_for_age(age_days, tier):
    assert W.tier_for(NOW - age_days * DAY, NOW) == tier


@pytest.mark.parametrize(
    ("start_days", "cold", "expected"),
    [
        (None, False, ["hot", "warm"]),
        (None, True, ["hot", "warm", "cold"]),
        (3, False, ["hot"]),  # inside the hot window: warm and cold cannot hold it
        (30, False, ["hot", "warm"]),  # spans hot and warm: the plan's sketch asked one
        (7, False, ["hot", "warm"]),  # exactly hot_days back reaches warm's upper bound
        (200, False, ["hot", "warm"]),  # hot may still hold unmigrated old memories
        (30, True, ["hot", "warm"]),  # cold only when the range reaches past warm_days
        (200, True, ["hot", "warm", "cold"]),
    ],
)
def test_tiers_for_range(start_days, cold, expected):
    start = None if start_days is None else NOW - start_days * DAY
    assert W.tiers_for(start, NOW, include_cold=cold) == expected
