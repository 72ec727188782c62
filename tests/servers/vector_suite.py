"""The vector congruence scenario: one data set, one brute-force oracle, the same assertions for
every `VectorStore` (hot shard, Milvus Lite, Milvus server, cold Parquet on a folder and on S3).

Exact stores must return the oracle's top-k (up to near-ties); approximate ones (Milvus) must reach
recall@10 >= RECALL_MIN. Every scenario leaves the store holding exactly the data set again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from akasha_ray.models import MAX_CONTENT_CHARS, MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.vectors.base import VectorStore

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SYSTEMS = [f"sys-{n}" for n in range(6)]
RECALL_MIN = 0.95
K = 10
TIE = 1e-5  # scores closer than this may come back in either order


@dataclass
class DataSet:
    batch: pa.Table
    vectors: np.ndarray
    ids: np.ndarray
    systems: np.ndarray
    times: np.ndarray  # datetime objects
    queries: np.ndarray

    def expected(
        self,
        query: np.ndarray,
        k: int,
        system_ids: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """Brute force: the ids and scores of the best k rows that pass the filters."""
        keep = np.ones(len(self.ids), dtype=bool)
        if system_ids is not None:
            keep &= np.isin(self.systems, system_ids)
        if start is not None:
            keep &= self.times >= start
        if end is not None:
            keep &= self.times <= end
        scores = self.vectors @ query
        scores[~keep] = -np.inf
        order = np.argsort(-scores, kind="stable")[: min(k, int(keep.sum()))]
        return self.ids[order].tolist(), scores[order]


def make_dataset(n: int = 1500, seed: int = 3) -> DataSet:
    """n memories over SYSTEMS and about a week (7 minutes apart), queries near stored ones."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, 384)).astype(np.float32)
    vectors = centers[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, 384)).astype(
        np.float32
    )
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    memories = [
        MemoryIn(
            system_id=SYSTEMS[i % len(SYSTEMS)],
            conversation_id=f"c{i // 5}",
            content=f"memory {i}: {'x' * (i % 13)}",
            created_at=NOW - timedelta(minutes=7 * i),
            metadata=None if i % 3 == 0 else {"n": i, "tags": ["a", str(i % 4)]},
        )
        for i in range(n)
    ]
    batch = build_batch(memories, vectors, model="all-MiniLM-L6-v2", model_revision="r1", now=NOW)
    queries = vectors[rng.integers(0, n, 24)] + 0.3 * rng.standard_normal((24, 384)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return DataSet(
        batch=batch,
        vectors=vectors,
        ids=np.array(batch.column("id").to_pylist()),
        systems=np.array(batch.column("system_id").to_pylist()),
        times=np.array([m.created_at for m in memories]),
        queries=queries,
    )


def extra_batch(
    contents: list[str], ids: list[str] | None = None, system: str = "extra-sys"
) -> tuple[pa.Table, np.ndarray]:
    """Memories outside the data set (their own system, a month before it) for write scenarios."""
    rng = np.random.default_rng(len(contents))
    vectors = rng.standard_normal((len(contents), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    memories = [
        MemoryIn(
            system_id=system,
            conversation_id="extra",
            content=content,
            created_at=NOW - timedelta(days=30, seconds=i),
            metadata={} if i % 2 else None,
        )
        for i, content in enumerate(contents)
    ]
    batch = build_batch(memories, vectors, model="m", model_revision="r", now=NOW)
    if ids is not None:
        batch = batch.set_column(0, "id", pa.array(ids, pa.string()))
    return batch, vectors


# -- assertions ------------------------------------------------------------------------------------


def assert_exact(hits: list[dict[str, Any]], ids: list[str], scores: np.ndarray) -> None:
    got = [h["id"] for h in hits]
    assert len(got) == len(ids), (got, ids)
    for position, (want, score) in enumerate(zip(ids, scores, strict=True)):
        if got[position] != want:  # allowed only among near-equal scores
            tied = {i for i, s in zip(ids, scores, strict=True) if abs(s - score) < TIE}
            assert got[position] in tied, (position, got, ids)
    for hit in hits:
        index = ids.index(hit["id"]) if hit["id"] in ids else None
        if index is not None:
            assert abs(hit["similarity"] - float(scores[index])) < 1e-4


def recall(hits: list[dict[str, Any]], ids: list[str]) -> float:
    return len({h["id"] for h in hits} & set(ids)) / max(1, len(ids))


def assert_memory(row: dict[str, Any] | None, data: DataSet, position: int) -> None:
    assert row is not None
    batch = data.batch.slice(position, 1).to_pylist()[0]
    assert row["id"] == batch["id"]
    assert row["system_id"] == batch["system_id"]
    assert row["conversation_id"] == batch["conversation_id"]
    assert row["content"] == batch["content"]
    assert row["created_at"] == batch["created_at"]
    assert row["created_at"].utcoffset() == timedelta(0)
    metadata = batch["metadata"]
    assert row["metadata"] == (None if metadata is None else json.loads(metadata))
    assert row["model"] == batch["model"] and row["model_revision"] == batch["model_revision"]


# -- scenarios -------------------------------------------------------------------------------------


async def load(store: VectorStore, data: DataSet) -> None:
    assert await store.insert(data.batch) == data.ids.tolist()


async def scenario_insert_is_idempotent(store: VectorStore, data: DataSet, exact: bool) -> None:
    assert await store.insert(data.batch) == []
    assert await store.insert(data.batch.slice(100, 50)) == []
    batch, _ = extra_batch(["dup a", "dup b", "dup c"])
    doubled = pa.concat_tables([batch, batch.slice(0, 2)])
    new = await store.insert(doubled)
    assert new == batch.column("id").to_pylist()
    assert await store.insert(doubled) == []
    for memory_id in new:
        assert await store.delete(memory_id) is True
    assert (await store.stats())["count"] == len(data.ids)


async def scenario_get(store: VectorStore, data: DataSet, exact: bool) -> None:
    for position in (0, 1, 2, 777, len(data.ids) - 1):
        assert_memory(await store.get(data.ids[position]), data, position)
    assert await store.get("no-such-id") is None


async def scenario_search_top_k(store: VectorStore, data: DataSet, exact: bool) -> None:
    answers = await asyncio.gather(*(store.search(q, K) for q in data.queries))
    recalls = []
    for query, hits in zip(data.queries, answers, strict=True):
        ids, scores = data.expected(query, K)
        if exact:
            assert_exact(hits, ids, scores)
        recalls.append(recall(hits, ids))
        similarities = [h["similarity"] for h in hits]
        assert similarities == sorted(similarities, reverse=True)
        assert set(hits[0]) >= {"id", "system_id", "content", "created_at", "similarity"}
    assert np.mean(recalls) >= RECALL_MIN, np.mean(recalls)


async def scenario_search_filters(store: VectorStore, data: DataSet, exact: bool) -> None:
    # Inclusive bounds at stored instants: rows 200 (newest kept) and 700 (oldest kept).
    start, end = data.times[700], data.times[200]
    cases = [
        (["sys-1"], None, None),
        (["sys-2", "sys-4", "unknown-system"], None, None),
        (None, start, end),
        (["sys-0", "sys-3"], start, end),
        (None, data.times[5], None),
        (None, None, data.times[len(data.ids) - 10]),
    ]
    recalls = []
    for system_ids, lo, hi in cases:
        answers = await asyncio.gather(
            *(store.search(q, K, system_ids, lo, hi) for q in data.queries[:8])
        )
        for query, hits in zip(data.queries[:8], answers, strict=True):
            ids, scores = data.expected(query, K, system_ids, lo, hi)
            for hit in hits:
                assert system_ids is None or hit["system_id"] in system_ids
                assert lo is None or hit["created_at"] >= lo
                assert hi is None or hit["created_at"] <= hi
            if exact:
                assert_exact(hits, ids, scores)
            recalls.append(recall(hits, ids))
    assert np.mean(recalls) >= RECALL_MIN, np.mean(recalls)
    for position in (200, 700):  # each bound's own row is found by its own vector
        hits = await store.search(data.vectors[position], 1, None, start, end)
        assert [h["id"] for h in hits] == [data.ids[position]]


async def scenario_empty_results(store: VectorStore, data: DataSet, exact: bool) -> None:
    query = data.queries[0]
    assert await store.search(query, K, []) == []
    assert await store.search(query, K, ["nobody"]) == []
    later = NOW + timedelta(days=1)
    assert await store.search(query, K, None, later, later + timedelta(days=1)) == []
    assert await store.search(query, K, None, NOW, NOW - timedelta(seconds=1)) == []
    assert await store.search(query, K, ["sys-1"], None, NOW - timedelta(days=365)) == []


async def scenario_delete(store: VectorStore, data: DataSet, exact: bool) -> None:
    position = 42
    memory_id = data.ids[position]
    assert await store.delete(memory_id) is True
    assert await store.delete(memory_id) is False
    assert await store.get(memory_id) is None
    hits = await store.search(data.vectors[position], K)
    assert memory_id not in [h["id"] for h in hits]
    assert (await store.stats())["count"] == len(data.ids) - 1
    assert await store.insert(data.batch) == [memory_id]  # only the deleted one is new again
    assert_memory(await store.get(memory_id), data, position)


async def scenario_hostile_ids(store: VectorStore, data: DataSet, exact: bool) -> None:
    """Ids and filters that would break out of a quoted expression or SQL string."""
    hostile = ['q"x\' or id != "', "back\\slash\\", "new\nline\ttab", "ünï\u00e7ødé 😀"]
    for probe in ['x" or id != "', "' or '1'='1", '") or ("1"=="1', "\\", ""]:
        assert await store.get(probe) is None
        assert await store.delete(probe) is False
        assert await store.search(data.queries[0], K, [probe]) == []
    batch, _ = extra_batch([f"hostile {n}" for n in range(len(hostile))], ids=hostile)
    assert await store.insert(batch) == hostile
    for n, memory_id in enumerate(hostile):
        row = await store.get(memory_id)
        assert row is not None and row["id"] == memory_id and row["content"] == f"hostile {n}"
    for memory_id in hostile:
        assert await store.delete(memory_id) is True
    assert (await store.stats())["count"] == len(data.ids)


async def scenario_large_content_and_metadata(
    store: VectorStore, data: DataSet, exact: bool
) -> None:
    """The longest content a memory may have, in 4-byte characters; {} and None metadata."""
    longest = "😀" * MAX_CONTENT_CHARS
    batch, vectors = extra_batch([longest, "short"])
    ids = await store.insert(batch)
    try:
        first, second = await store.get(ids[0]), await store.get(ids[1])
        assert first is not None and first["content"] == longest and first["metadata"] is None
        assert second is not None and second["metadata"] == {}
        hits = await store.search(vectors[0], 1, ["extra-sys"])
        assert hits[0]["id"] == ids[0] and hits[0]["content"] == longest
    finally:
        for memory_id in ids:
            await store.delete(memory_id)


async def scenario_stats(store: VectorStore, data: DataSet, exact: bool) -> None:
    stats = await store.stats()
    assert stats["count"] == len(data.ids)
    assert stats["oldest"] == min(data.times)
    assert stats["newest"] == max(data.times)
    assert "bytes" in stats


SCENARIOS = [
    scenario_insert_is_idempotent,
    scenario_get,
    scenario_search_top_k,
    scenario_search_filters,
    scenario_empty_results,
    scenario_delete,
    scenario_hostile_ids,
    scenario_large_content_and_metadata,
    scenario_stats,
]
