"""`python -m akasha_ray.bench cold` at a tiny size: an Akasha of its own over HTTP, the archive in
cold, every search mode with each tier's latency, both peers in the JSON, and the cold search's
top 10 the same as numpy's."""

import pytest

from akasha_ray.bench.encode import DATASET
from tests.conftest import run_bench

pytestmark = pytest.mark.integration


@pytest.mark.skipif(not DATASET.exists(), reason=f"{DATASET} not present")
def test_bench_cold_runs_end_to_end():
    searches = 12
    result = run_bench(
        "cold", "--memories", "300", "--days", "100", "--searches", str(searches), timeout=900
    )
    assert result["memories_by_tier"] == {"hot": 0, "warm": 0, "cold": 600}
    assert result["top_k_agreement_with_numpy"] == 1.0
    rows = [result["search_http_by_vector"], *result["search_http_by_text"].values()]
    assert set(result["search_http_by_text"]) == {"vector", "keyword", "hybrid"}
    assert all(row["runs"] == searches and row["tier_p50_ms"]["cold"] > 0 for row in rows)
    assert result["plain_encode_one_query"]["runs"] == searches
    assert result["numpy_peer"]["runs"] == searches
    assert result["backfill_memories_per_s"] > 0 and result["plain_encode_texts_per_s"] > 0
    assert result["machine"]
