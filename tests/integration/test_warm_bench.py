"""`python -m akasha_ray.bench warm` at a tiny size on the embedded default: exact in-process
searches (the warm owner scans in memory), the migration, the hybrid series, the reopen that reads
the vectors back, and the same searches over HTTP from an Akasha of its own, warm alone asked."""

import pytest

from tests.conftest import run_bench

pytestmark = pytest.mark.integration


def test_bench_warm_runs_end_to_end_with_http():
    result = run_bench(
        "warm",
        *("--n", "3000", "--queries", "12", "--migrate", "500", "--hybrid-hot", "500"),
        *("--budget-s", "5", "--index-timeout-s", "60"),
        timeout=900,
    )
    assert result["backend"] == "milvus lite" and result["index"]["in_use"] == "FLAT"
    assert result["recall_at_10"] == 1.0 and result["http_recall_at_10"] == 1.0
    assert result["migration"]["moved"] == 500
    assert result["search_single"]["runs"] >= 10 and result["numpy_scan"]["runs"] == 12
    assert result["http"]["runs"] == 12 and result["http_warm_tier_latency"]["p50_ms"] > 0
    assert result["reopen_with_vectors_read"]["open_s"] >= 0
    assert result["ratios"]["http_p95_over_numpy_p95"] > 0
