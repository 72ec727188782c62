"""`python -m akasha_ray.bench recall` at a tiny size: a real Akasha of its own, over HTTP, every
mode and both peers in the JSON; and its scoring on known rankings."""

import pytest

from akasha_ray.bench.recall import DATA, load, report, scores
from akasha_ray.ports import free_port
from tests.conftest import run_bench

pytestmark = pytest.mark.integration
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"{DATA} not present")


def test_scores():
    assert scores(["a", "x", "b"], ["a", "b"]) == {"recall@5": 1.0, "recall@10": 1.0, "mrr": 1.0}
    row = scores([f"x{i}" for i in range(7)] + ["b"], ["a", "b"])
    assert row == {"recall@5": 0.0, "recall@10": 0.5, "mrr": 1 / 8}
    assert report([(1, row), (4, scores([], ["a"]))])["by_category"]["single-hop"]["mrr"] == 0


@needs_data
def test_load_keeps_questions_whose_evidence_is_held():
    [conversation] = load(DATA, ["26"], 30)
    held = {t["id"] for t in conversation["turns"]}
    assert len(held) == 30 and conversation["questions"]
    assert all(set(q["evidence"]) <= held for q in conversation["questions"])
    assert all(
        t["content"].split(": ", 1)[0] in ("Caroline", "Melanie") for t in conversation["turns"]
    )


@needs_data
def test_bench_recall_runs_end_to_end(tmp_path):
    result = run_bench(
        "recall",
        *("--conversations", "26", "--turns", "40", "--port", str(free_port())),
        timeout=900,
    )
    tiers = ("hot", "warm", "cold")
    names = {f"akasha_{t}_{m}" for t in tiers for m in ("vector", "keyword", "hybrid")}
    assert names | {"exact_vector", "plain_bm25"} == set(result["results"])
    for row in result["results"].values():
        assert 0 <= row["recall@10"] <= 1 and row["questions"] == result["dataset"]["questions"]
    # The exact peer and Akasha's exact vector search rank the same turns by the same cosines.
    for tier in ("hot", "cold"):
        assert result["results"][f"akasha_{tier}_vector"]["recall@10"] == pytest.approx(
            result["results"]["exact_vector"]["recall@10"], abs=0.02
        )
    # BM25 is exact in every tier: the same scores, whichever tier holds the turns.
    keyword = {result["results"][f"akasha_{t}_keyword"]["recall@10"] for t in tiers}
    assert len(keyword) == 1
    assert result["machine"]
