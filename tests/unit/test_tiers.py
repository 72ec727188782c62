from datetime import UTC, datetime, timedelta

import pytest

from akasha_ray.tiers import Extent, TierWindows

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
    ("start_days", "end_days", "cold", "expected"),
    [
        (None, None, False, ["hot", "warm"]),
        (None, None, True, ["hot", "warm", "cold"]),
        (3, 0, False, ["hot"]),
        (30, 10, False, ["warm"]),
        (30, 2, False, ["hot", "warm"]),  # the range the plan's sketch got wrong
        (200, 100, False, []),
        (200, 100, True, ["cold"]),
        (200, 0, True, ["hot", "warm", "cold"]),
        (None, 8, False, ["warm"]),
    ],
)
def test_tiers_for_range(start_days, end_days, cold, expected):
    start = None if start_days is None else NOW - start_days * DAY
    end = None if end_days is None else NOW - end_days * DAY
    assert W.tiers_for(start, end, NOW, include_cold=cold) == expected


def test_a_tier_holding_older_data_than_its_window_is_still_asked():
    # Hot still holds a 9-day-old memory that migration has not moved yet.
    extents = {"hot": Extent(NOW - 9 * DAY, NOW), "warm": Extent(NOW - 60 * DAY, NOW - 8 * DAY)}
    assert W.tiers_for(NOW - 10 * DAY, NOW - 8.5 * DAY, NOW, extents=extents) == ["hot", "warm"]
    assert W.tiers_for(NOW - 3 * DAY, NOW, NOW, extents={"warm": Extent()}) == ["hot"]
