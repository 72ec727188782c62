"""`python -m akasha_ray.bench clients` at a tiny size: it completes (its own local Ray cluster,
in a subprocess), every level answers both kinds of request, and nothing but a 2xx or a 503
refusal comes back. No figure is asserted."""

from __future__ import annotations

import pytest

from tests.conftest import run_bench

pytestmark = pytest.mark.integration


def test_clients_bench_reports_each_level():
    tiny = "--levels 1,3 --seconds 4 --ramp 1 --preload 100 --warmup 0 --systems 10"
    report = run_bench("clients", *tiny.split())
    assert report["benchmark"] == "clients" and report["machine"]["cpus"]
    assert [level["clients"] for level in report["levels"]] == [1, 3]
    for level in report["levels"]:
        assert level["answered_per_s"] > 0
        assert set(level["statuses"]) <= {"200", "201", "503"}, level["statuses"]
        assert level["search"]["runs"] > 0
        assert level["searches_per_s"] == round(level["search"]["runs"] / 4, 2)
        ingests = level["ingest"]["runs"] if level["ingest"] else 0
        assert level["memories_ingested_per_s"] == round(ingests * 20 / 4, 1)
    best = max(level["answered_per_s"] for level in report["levels"])
    assert report["best_answered_per_s"] == best
    assert report["collapse_ratio"] == round(report["levels"][-1]["answered_per_s"] / best, 3)
