"""Keyword search (BM25) answers alike in every tier: the hot shard's in-memory index, the warm
owner's index beside Milvus Lite (built from the collection on first use), and the cold archive
scoring the partitions it reads; all equal to rank_bm25 on the rows that pass the filters, and
still after deletes, later inserts and a reopen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from akasha_ray.config import ObjectsConfig, WarmConfig
from akasha_ray.models import MemoryIn
from akasha_ray.objects import open_object_store
from akasha_ray.records import build_batch
from akasha_ray.vectors.base import AsyncHotShard
from akasha_ray.vectors.cold_store import ColdStore
from akasha_ray.vectors.keyword_index import tokens
from akasha_ray.vectors.milvus_store import MilvusStore
from tests.unit.test_keyword_index import LuceneBM25

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

WORDS = [
    "apple",
    "banana",
    "cherry",
    "running",
    "runner",
    "hiking",
    "tennis",
    "paris",
    "london",
    "cat",
    "dog",
    "violin",
]
NOW = datetime(2025, 6, 1, tzinfo=UTC)
QUERIES = [
    ("running in Paris", None, None, None),
    ("cat dog dog", ["s1"], None, None),
    ("violin hiking", ["s0", "s2"], NOW - timedelta(days=3), NOW - timedelta(days=1)),
    ("tennis", None, NOW - timedelta(days=2), None),
    ("nothing here", None, None, None),
]


def batch(n: int, seed: int, prefix: str = "m"):
    rng = np.random.default_rng(seed)
    memories = [
        MemoryIn(
            id=f"{prefix}{i}",
            system_id=f"s{i % 3}",
            conversation_id="c",
            content=" ".join(rng.choice(WORDS, size=int(rng.integers(1, 10)))),
            created_at=NOW - timedelta(days=int(i % 5), minutes=i),
        )
        for i in range(n)
    ]
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return build_batch(memories, vectors, model="m", model_revision="r", now=NOW)


def peer(rows: dict[str, tuple[str, datetime, str]], query, systems, start, end):
    kept = [
        (key, text)
        for key, (system, when, text) in sorted(rows.items())
        if (systems is None or system in systems)
        and (start is None or when >= start)
        and (end is None or when <= end)
    ]
    if not kept:
        return []
    bm25 = LuceneBM25([tokens(text) for _, text in kept], k1=1.2, b=0.75)
    scores = bm25.get_scores(tokens(query))
    ranked = sorted(
        ((key, s) for (key, _), s in zip(kept, scores, strict=True) if s > 0),
        key=lambda pair: (-pair[1], pair[0]),
    )
    return ranked[:10]


def rows_of(table) -> dict[str, tuple[str, datetime, str]]:
    return {
        f"{s}/{i}": (s, t, c)
        for i, s, t, c in zip(
            *[table.column(n).to_pylist() for n in ("id", "system_id", "created_at", "content")],
            strict=True,
        )
    }


class Hot(AsyncHotShard):
    async def search_keywords(self, *args) -> list[dict]:
        return await self._call(self.shard.search_keywords, *args)


async def assert_congruent(stores, rows) -> None:
    for query, systems, start, end in QUERIES:
        expected = peer(rows, query, systems, start, end)
        for name, store in stores.items():
            hits = await store.search_keywords(query, 10, systems, start, end)
            got = [(f"{h['system_id']}/{h['id']}", h["bm25"]) for h in hits]
            assert [k for k, _ in got] == [k for k, _ in expected], (name, query)
            assert [s for _, s in got] == pytest.approx([s for _, s in expected]), (name, query)
            assert all(h["content"] == rows[k][2] for h, (k, _) in zip(hits, got, strict=True))


async def test_every_tier_scores_keywords_alike(tmp_path):
    first = batch(400, seed=1)
    rows = rows_of(first)
    stores = {
        "hot": await Hot.open(tmp_path / "hot.duckdb"),
        "warm": await MilvusStore.open(WarmConfig(), tmp_path / "warm"),
        "cold": ColdStore(open_object_store(ObjectsConfig(), tmp_path / "cold")),
    }
    try:
        for store in stores.values():
            await store.insert(first)
        await assert_congruent(stores, rows)

        gone = sorted(rows)[::7]
        for store in stores.values():
            assert sorted(await store.delete_many(gone)) == gone
        rows = {k: v for k, v in rows.items() if k not in gone}
        later = batch(60, seed=2, prefix="late")  # after warm's index was built
        for store in stores.values():
            await store.insert(later)
        rows |= rows_of(later)
        await assert_congruent(stores, rows)

        await stores["warm"].close()  # reopened: its index is rebuilt from the collection
        stores["warm"] = await MilvusStore.open(WarmConfig(), tmp_path / "warm")
        await assert_congruent(stores, rows)
    finally:
        for store in stores.values():
            await store.close()
