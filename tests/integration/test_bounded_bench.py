"""`python -m akasha_ray.bench bounded` at a tiny size: it completes (its own local Ray cluster,
in a subprocess) and reports idle and loaded p50/p95 and their ratio, for the embedder and for
searches over HTTP during a bulk ingest and depth-5 neighbourhoods. No figure is asserted."""

from __future__ import annotations

import pytest

from akasha_ray.ports import free_port
from tests.conftest import run_bench

pytestmark = pytest.mark.integration


def test_bounded_bench_reports_idle_and_loaded_latencies():
    tiny = "--entities 300 --relationships 2000 --ingest 24 --text-bytes 256 --ingest-batch 8"
    tiny += f" --seed-memories 40 --searches 8 --queries 4 --neighbors 5 --port {free_port()}"
    report = run_bench("bounded", *tiny.split())
    assert report["benchmark"] == "bounded" and report["machine"]["cpus"]
    for part in ("embedder", "served"):
        for phase in ("idle", "loaded"):
            assert {"p50_ms", "p95_ms", "runs"} <= set(report[part][phase])
        assert report[part]["p95_ratio"] is not None
    served = report["served"]
    assert served["ingest"]["memories"] == 24 and served["ingest"]["s"] > 0
    assert len(served["neighbors_depth_5"]) == 5
    assert all(n["neighbors"] > 0 for n in served["neighbors_depth_5"])
    assert report["graph_load"]["relationships_stored"] > 0
    assert set(report["targets"]) == {"query_embedding_p95_within_2x", "search_p95_within_2x"}
