"""Fusion and merging of the two rankings (akasha_ray.search, the memory service's ranking)."""

import asyncio

import pytest

from akasha_ray.memories.service import _both, _ranked
from akasha_ray.search import RRF_K, PartialTier, fuse, merge_keyword_hits


def hit(i: str, system: str = "s", **scores) -> dict:
    return {"id": i, "system_id": system, **scores}


def test_fuse_is_reciprocal_rank_fusion():
    by_vector = [hit("a", similarity=0.9), hit("b", similarity=0.8), hit("c", similarity=0.1)]
    by_keyword = [hit("c", bm25=7.0), hit("d", bm25=5.0), hit("a", bm25=1.0)]
    fused = fuse(by_vector, by_keyword, 10)
    expected = {
        "a": 1 / (RRF_K + 1) + 1 / (RRF_K + 3),
        "b": 1 / (RRF_K + 2),
        "c": 1 / (RRF_K + 3) + 1 / (RRF_K + 1),
        "d": 1 / (RRF_K + 2),
    }
    assert {h["id"]: h["score"] for h in fused} == pytest.approx(expected)
    assert [h["id"] for h in fused] == ["a", "c", "b", "d"]  # ties by (system, id)
    assert [h["similarity"] for h in fused] == [0.9, 0.1, 0.8, None]
    assert [h["id"] for h in fuse(by_vector, by_keyword, 1)] == ["a"]


def test_keyword_hits_merge_by_score_once_per_memory():
    merged = merge_keyword_hits(
        [[hit("a", bm25=2.0), hit("b", bm25=1.0)], [hit("a", bm25=3.0), hit("a", "t", bm25=0.5)]],
        10,
    )
    assert [(h["system_id"], h["id"], h["bm25"]) for h in merged] == [
        ("s", "a", 3.0),
        ("s", "b", 1.0),
        ("t", "a", 0.5),
    ]


def test_ranked_scores_by_mode():
    hits = [hit("a", similarity=0.5), hit("b", similarity=0.7), hit("a", bm25=4.0)]
    assert [(h["id"], h["score"]) for h in _ranked(hits, "vector", 5)] == [("b", 0.7), ("a", 0.5)]
    keyword = _ranked(hits, "keyword", 5)
    assert [(h["id"], h["score"], h["similarity"]) for h in keyword] == [("a", 4.0, None)]
    assert [h["id"] for h in _ranked(hits, "hybrid", 5)] == ["a", "b"]


def test_a_failed_ranking_makes_the_tier_partial_keeping_the_other():
    async def good():
        return [hit("a", similarity=0.5)]

    async def broken():
        raise RuntimeError("down")

    async def partial():
        raise PartialTier("hot-1 did not answer", [hit("b", bm25=1.0)])

    with pytest.raises(PartialTier) as raised:
        asyncio.run(_both([good(), broken()]))
    assert raised.value.hits == [hit("a", similarity=0.5)] and "down" in str(raised.value)
    with pytest.raises(PartialTier) as raised:
        asyncio.run(_both([good(), partial()]))
    assert len(raised.value.hits) == 2 and "hot-1 did not answer" in str(raised.value)
    with pytest.raises(RuntimeError):
        asyncio.run(_both([broken(), broken()]))
    assert asyncio.run(_both([good()])) == [hit("a", similarity=0.5)]
