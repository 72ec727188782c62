"""`python -m akasha_ray.bench graph` at a tiny size: paths that agree with networkx in process,
then the same paths over HTTP from an Akasha of its own, each beside a request to a route that
does not exist (the proxy and the ingress alone)."""

import pytest

from tests.conftest import run_bench

pytestmark = pytest.mark.integration


def test_bench_graph_runs_end_to_end_with_http():
    result = run_bench(
        "graph",
        *("--entities", "500", "--relationships", "2000", "--queries", "20"),
        *("--neighbor-queries", "5", "--writes", "5", "--http-queries", "20"),
        timeout=600,
    )
    assert result["targets"]["path_lengths_agree_with_networkx"]
    assert result["shortest_path_http"]["runs"] == 20
    assert result["unmatched_route_http"]["runs"] == 20
    assert result["unmatched_route_http"]["p50_ms"] > 0
    assert "http_path_p95_at_most_20ms" in result["targets"]
