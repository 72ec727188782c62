"""The fleet bench's fault schedule and error windows (akasha_ray/bench/fleet_faults)."""

from __future__ import annotations

import pytest

from akasha_ray.bench import fleet_faults


def row(start: float, status: int, ms: float = 100, partial: bool = False, route: str = "r"):
    return {"start": start, "route": route, "status": status, "ms": ms, "partial": partial}


def test_schedule_spreads_faults_between_warmup_and_tail():
    faults = fleet_faults.schedule(["hot-shard", "warm", "s3"], 100, warmup_s=10, tail_s=30)
    assert [f.at_s for f in faults] == [10, 30, 50]
    assert [f.kind for f in faults] == ["kill -9", "kill -9", "SIGSTOP"]
    assert fleet_faults.schedule([], 100, 10, 30) == []


def test_error_window_runs_from_first_failure_to_end_of_last_of_the_fault():
    results = [{"fault": "warm", "injected_at": 100.0}, {"fault": "s3", "injected_at": 200.0}]
    rows = [
        row(99, 500),  # before the fault: not its error
        row(101, 200),
        row(102, 503, ms=2000),  # first failure: 2 s after the fault
        row(105, 200, partial=True, route="search"),  # partial counts, ends at 105.1
        row(150, 200),
        row(199.9, 200, ms=10_000, partial=True),  # sent just before the next fault, ran into it
        row(201, 0, ms=500),  # the next fault's
    ]
    fleet_faults.error_windows(rows, results, ended=300.0)
    first = results[0]["window"]
    assert first["requests"] == 5
    assert first["failed"] == 2
    assert first["partial_searches"] == 1
    assert first["errors_by_status"] == {"503": 1}
    assert first["5xx_not_503"] == 0
    assert first["first_error_after_s"] == 2.0
    assert first["error_window_s"] == 3.1  # 102 -> 105.1
    second = results[1]["window"]
    assert second["failed"] == 2 and second["partial_searches"] == 1
    assert second["errors_by_status"] == {"0": 1}
    assert second["first_error_after_s"] == 0.0  # the window opens at the fault at the earliest
    assert second["error_window_s"] == 9.9  # 200 -> 209.9


def test_a_500_in_a_window_is_counted_apart_from_503():
    results = [{"fault": "graph", "injected_at": 0.0}]
    fleet_faults.error_windows([row(1, 500), row(2, 503), row(3, 502)], results, ended=10)
    assert results[0]["window"]["5xx_not_503"] == 2


def test_a_skipped_fault_has_no_window():
    results = [{"fault": "milvus", "kind": "SIGSTOP", "skipped": "embedded"}]
    fleet_faults.error_windows([row(1, 500)], results, ended=10)
    assert "window" not in results[0]


def test_faults_all_none_or_a_list():
    from akasha_ray.bench.fleet import _parse

    every = list(fleet_faults.KILLS + fleet_faults.STOPS)
    assert _parse(["--faults", "all"]).fault_names == every
    assert _parse(["--faults", "none"]).fault_names == []  # was refused as unknown 'none'
    assert _parse(["--faults", "warm,s3"]).fault_names == ["warm", "s3"]
    with pytest.raises(SystemExit):
        _parse(["--faults", "kill-everything"])
