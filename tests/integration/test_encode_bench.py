"""`python -m akasha_ray.bench encode` at a tiny size: every backend is timed in process against
plain sentence-transformers and in the embedder's own arrangement (query and bulk threads),
and agrees with the float32 torch model. No figure other than agreement is asserted."""

from __future__ import annotations

import pytest

from tests.conftest import run_bench

pytestmark = pytest.mark.integration

BACKENDS = ("torch", "onnx", "onnx-int8")


def test_encode_bench_times_every_backend_beside_its_peer():
    report = run_bench("encode", "--texts", "24", "--runs", "1", "--queries", "4")
    in_process = report["in_process"]
    assert in_process["plain_sentence_transformers"]["texts"] == 24
    for backend in BACKENDS:
        assert in_process[backend]["median_texts_per_s"] > 0
        assert in_process[backend]["speedup_vs_plain"] is not None
    assert in_process["torch"]["agreement_vs_torch_float32"]["cosine_min"] >= 0.9999
    assert in_process["onnx"]["agreement_vs_torch_float32"]["cosine_min"] >= 0.999
    embedder = report["embedder"]
    assert embedder["plain_encode_one_query"]["runs"] == 4
    for backend in BACKENDS:
        entry = embedder[backend]
        assert entry["backend"] == backend and entry["bulk_texts"] == 24
        assert entry["idle"]["runs"] == 4 and entry["loaded"]["runs"] >= 3
        assert entry["bulk_texts_per_s_beside_queries"] > 0
