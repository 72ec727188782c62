"""The adaptive hot window's rule (akasha_ray.hot_window), and the search plans it leads to."""

from datetime import UTC, datetime, timedelta

import pytest

from akasha_ray.hot_window import (
    MIN_SEARCHES,
    HotWindow,
    ShardLoad,
    WindowFile,
    all_fast,
    budget,
    grown,
    reconciled,
    resized,
    shrunk,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def test_a_shard_over_its_target_gets_a_budget_for_its_scan():
    # All scan: the budget is in proportion, less 10% headroom.
    assert budget(ShardLoad(1_000_000, 100, p95_ms=200, scan_p95_ms=200), 100) == 450_000
    # 20 ms of the 200 do not depend on the rows: the scan may take 90 - 20 = 70 of 180 ms.
    assert budget(ShardLoad(1_000_000, 100, p95_ms=200, scan_p95_ms=180), 100) == 388_888
    assert budget(ShardLoad(1_000_000, 100, p95_ms=90, scan_p95_ms=80), 100) is None
    # When what does not depend on the rows uses up the target, fewer rows would not help.
    assert budget(ShardLoad(1_000, 100, p95_ms=150, scan_p95_ms=50), 100) is None
    # Too few searches to judge, or none at all: no say.
    few = ShardLoad(10**6, MIN_SEARCHES - 1, p95_ms=900, scan_p95_ms=900)
    assert budget(few, 100) is None
    assert budget(ShardLoad(10**6, 0, None, None), 100) is None


def test_all_fast_needs_every_judged_shard_under_half_the_target():
    fast, slow = ShardLoad(10, 50, 40.0, 30.0), ShardLoad(10, 50, 60.0, 50.0)
    unjudged = ShardLoad(10, 0, None, None)
    assert all_fast([fast, unjudged], 100)
    assert not all_fast([fast, slow], 100)
    assert not all_fast([unjudged], 100)  # nobody measured: no reason to grow


def test_the_window_shrinks_to_the_age_the_tightest_shard_allows():
    window = HotWindow(days=7, max_days=7)
    cutoffs = [NOW - 5 * DAY, NOW - 3 * DAY, None]
    assert shrunk(window, cutoffs, NOW, min_days=1) == pytest.approx(3)
    assert shrunk(window, [NOW - 0.2 * DAY], NOW, min_days=1) == 1  # never below the floor
    assert shrunk(window, [NOW - 9 * DAY], NOW, min_days=1) is None  # it fits already
    assert shrunk(window, [None], NOW, min_days=1) is None


def test_the_window_doubles_back_up_to_its_maximum():
    assert grown(HotWindow(days=2, max_days=7)) == 4
    assert grown(HotWindow(days=5, max_days=7)) == 7
    assert grown(HotWindow(days=7, max_days=7)) is None


def test_growing_remembers_how_far_warm_reaches_and_searches_still_ask_it():
    window = HotWindow(days=2, max_days=7)
    bigger = resized(window, 4, NOW, settle_s=60, reason="fast")
    assert bigger.warm_reaches == NOW + timedelta(seconds=60) - 2 * DAY
    plan = bigger.tier_windows(90).tiers_for
    # Warm holds memories 2 days old (moved under the old window): a search from 3 days back
    # must ask it, though the new window says hot holds everything up to 4 days.
    assert plan(NOW - 3 * DAY, NOW, include_cold=False) == ["hot", "warm"]
    assert plan(NOW - DAY, NOW, include_cold=False) == ["hot"]
    # Shrinking keeps what warm reaches; the window's own bound is the later one anyway.
    smaller = resized(bigger, 1, NOW + DAY, settle_s=60, reason="slow")
    assert smaller.warm_reaches == bigger.warm_reaches and smaller.changed_at == NOW + DAY


def test_a_changed_setting_moves_an_unadapted_window_and_caps_an_adapted_one():
    at_max = HotWindow(days=7, max_days=7)
    raised = reconciled(at_max, 14, NOW, settle_s=0)
    assert (raised.days, raised.max_days) == (14, 14)
    assert raised.warm_reaches == NOW - 7 * DAY  # warm holds what 7 days moved
    adapted = HotWindow(days=3, max_days=7, changed_at=NOW - DAY)
    assert reconciled(adapted, 14, NOW, settle_s=0).days == 3
    lowered = reconciled(adapted, 2, NOW, settle_s=0)
    assert (lowered.days, lowered.max_days, lowered.changed_at) == (2, 2, NOW)
    assert reconciled(at_max, 7, NOW, settle_s=0) is at_max


def test_the_window_file_round_trips(tmp_path):
    file = WindowFile(tmp_path)
    assert file.read(7) == HotWindow(days=7, max_days=7)
    window = HotWindow(
        days=2.5, max_days=7, changed_at=NOW, warm_reaches=NOW - 3 * DAY, reason="slow"
    )
    file.write(window)
    assert WindowFile(tmp_path).read(7) == window
