"""The vector congruence scenario: one data set, one brute-force oracle, the same assertions for
every `VectorStore` (hot shard, Milvus Lite, Milvus server, cold Parquet on a folder and on S3).

Exact stores must return the oracle's top-k (up to near-ties); approximate ones (Milvus) must reach
recall@10 >= RECALL_MIN. Every scenario leaves the store holding exactly the data set again.
Stores are keyed by `(system_id, id)` (`akasha_ray.identity`): hits are compared by key.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from akasha_ray.identity import keys_of, memory_key
from akasha_ray.models import MAX_CONTENT_CHARS, MemoryIn
from akasha_ray.records import SCHEMA, build_batch
from akasha_ray.vectors.base import TierStore, VectorStore

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
    keys: np.ndarray  # `<system_id>/<id>`: what stores are addressed by
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
        """Brute force: the keys and scores of the best k rows that pass the filters."""
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
        return self.keys[order].tolist(), scores[order]


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
        keys=np.array(keys_of(batch)),
        systems=np.array(batch.column("system_id").to_pylist()),
        times=np.array([m.created_at for m in memories]),
        queries=queries,
    )


def extra_batch(
    contents: list[str], ids: list[str] | None = None, system: str | list[str] = "extra-sys"
) -> tuple[pa.Table, np.ndarray]:
    """Memories outside the data set (their own system, or one system per memory, a month before
    it) for write scenarios."""
    systems = [system] * len(contents) if isinstance(system, str) else system
    rng = np.random.default_rng(len(contents))
    vectors = rng.standard_normal((len(contents), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    memories = [
        MemoryIn.model_construct(  # no validation: hostile names must reach the store
            id=None,
            system_id=systems[i],
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


def key_of(hit: dict[str, Any]) -> str:
    return memory_key(hit["system_id"], hit["id"])


def assert_exact(hits: list[dict[str, Any]], keys: list[str], scores: np.ndarray) -> None:
    got = [key_of(h) for h in hits]
    assert len(got) == len(keys), (got, keys)
    for position, (want, score) in enumerate(zip(keys, scores, strict=True)):
        if got[position] != want:  # allowed only among near-equal scores
            tied = {k for k, s in zip(keys, scores, strict=True) if abs(s - score) < TIE}
            assert got[position] in tied, (position, got, keys)
    for hit in hits:
        key = key_of(hit)
        if key in keys:
            assert abs(hit["similarity"] - float(scores[keys.index(key)])) < 1e-4


def recall(hits: list[dict[str, Any]], keys: list[str]) -> float:
    return len({key_of(h) for h in hits} & set(keys)) / max(1, len(keys))


MEMORY_FIELDS = {
    "id",
    "system_id",
    "conversation_id",
    "content",
    "created_at",
    "metadata",
    "model",
    "model_revision",
}


def assert_memory(row: dict[str, Any] | None, data: DataSet, position: int) -> None:
    assert row is not None
    assert set(row) == MEMORY_FIELDS, set(row)  # the API's Memory takes no other field
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
    assert await store.insert(data.batch) == data.keys.tolist()


async def scenario_insert_is_idempotent(store: VectorStore, data: DataSet, exact: bool) -> None:
    assert await store.insert(data.batch) == []
    assert await store.insert(data.batch.slice(100, 50)) == []
    batch, _ = extra_batch(["dup a", "dup b", "dup c"])
    doubled = pa.concat_tables([batch, batch.slice(0, 2)])
    new = await store.insert(doubled)
    assert new == keys_of(batch)
    assert await store.insert(doubled) == []
    for key in new:
        assert await store.delete(key) is True
    assert (await store.stats())["count"] == len(data.ids)


async def scenario_resend_keeps_the_stored_row(
    store: VectorStore, data: DataSet, exact: bool
) -> None:
    """A key already stored is never replaced, even by other content (the write path answers
    that with a conflict before it reaches a store)."""
    changed = data.batch.slice(10, 3)
    changed = changed.set_column(
        changed.schema.get_field_index("content"), "content", pa.array(["other"] * 3)
    )
    changed = changed.set_column(
        changed.schema.get_field_index("content_hash"), "content_hash", pa.array(["f" * 32] * 3)
    )
    assert await store.insert(changed) == []
    for position in (10, 11, 12):
        assert_memory(await store.get(data.keys[position]), data, position)
    assert await store.existing(data.keys[10:13].tolist()) == dict(
        zip(
            data.keys[10:13].tolist(),
            data.batch.column("content_hash").to_pylist()[10:13],
            strict=True,
        )
    )


async def scenario_existing_returns_content_hashes(
    store: VectorStore, data: DataSet, exact: bool
) -> None:
    hashes = data.batch.column("content_hash").to_pylist()
    asked = [data.keys[5], "sys-0/no-such-id", data.keys[900], data.ids[7], data.keys[5]]
    assert await store.existing(asked) == {
        data.keys[5]: hashes[5],
        data.keys[900]: hashes[900],
    }
    assert await store.existing([]) == {}
    everything = await store.existing(data.keys.tolist())
    assert everything == dict(zip(data.keys.tolist(), hashes, strict=True))


async def scenario_get(store: VectorStore, data: DataSet, exact: bool) -> None:
    for position in (0, 1, 2, 777, len(data.ids) - 1):
        assert_memory(await store.get(data.keys[position]), data, position)
    assert await store.get("no-such-id") is None
    assert await store.get("sys-0/no-such-id") is None
    assert await store.get(data.ids[0]) is None  # an id alone is not a key
    other_system = SYSTEMS[(SYSTEMS.index(data.systems[0]) + 1) % len(SYSTEMS)]
    assert await store.get(memory_key(other_system, data.ids[0])) is None


async def scenario_same_id_in_two_systems(store: VectorStore, data: DataSet, exact: bool) -> None:
    """Two systems with one client id: two memories, each read, searched and deleted alone."""
    batch, vectors = extra_batch(
        ["twin of A", "twin of B"], ids=["msg-1", "msg-1"], system=["twin-a", "twin-b"]
    )
    key_a, key_b = keys_of(batch)
    assert await store.insert(batch.slice(1, 1)) == [key_b]  # B first, as in the issue
    assert await store.insert(batch) == [key_a]  # A's is new, not "already there"
    try:
        assert (await store.get(key_a))["content"] == "twin of A"
        assert (await store.get(key_b))["content"] == "twin of B"
        assert await store.existing([key_a, key_b]) == dict(
            zip([key_a, key_b], batch.column("content_hash").to_pylist(), strict=True)
        )
        for system, key, vector in (("twin-a", key_a, vectors[1]), ("twin-b", key_b, vectors[0])):
            hits = await store.search(vector, K, [system])  # the other twin's vector
            assert [key_of(h) for h in hits] == [key], hits
        both = await store.search(vectors[0], K, ["twin-a", "twin-b"])
        assert sorted(key_of(h) for h in both) == sorted([key_a, key_b])
        assert {h["id"] for h in both} == {"msg-1"}
        assert await store.delete(key_a) is True
        assert await store.get(key_a) is None
        assert (await store.get(key_b))["content"] == "twin of B"
        assert [key_of(h) for h in await store.search(vectors[0], K, ["twin-a", "twin-b"])] == [
            key_b
        ]
        assert await store.delete(key_a) is False
    finally:
        await store.delete(key_a)
        await store.delete(key_b)
    assert await store.get(key_b) is None
    assert (await store.stats())["count"] == len(data.ids)


async def scenario_search_top_k(store: VectorStore, data: DataSet, exact: bool) -> None:
    answers = await asyncio.gather(*(store.search(q, K) for q in data.queries))
    recalls = []
    for query, hits in zip(data.queries, answers, strict=True):
        keys, scores = data.expected(query, K)
        if exact:
            assert_exact(hits, keys, scores)
        recalls.append(recall(hits, keys))
        similarities = [h["similarity"] for h in hits]
        assert similarities == sorted(similarities, reverse=True)
        assert set(hits[0]) == MEMORY_FIELDS | {"similarity"}
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
            keys, scores = data.expected(query, K, system_ids, lo, hi)
            for hit in hits:
                assert system_ids is None or hit["system_id"] in system_ids
                assert lo is None or hit["created_at"] >= lo
                assert hi is None or hit["created_at"] <= hi
            if exact:
                assert_exact(hits, keys, scores)
            recalls.append(recall(hits, keys))
    assert np.mean(recalls) >= RECALL_MIN, np.mean(recalls)
    for position in (200, 700):  # each bound's own row is found by its own vector
        hits = await store.search(data.vectors[position], 1, None, start, end)
        assert [key_of(h) for h in hits] == [data.keys[position]]


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
    key = data.keys[position]
    assert await store.delete(data.ids[position]) is False  # an id alone deletes nothing
    assert await store.delete(key) is True
    assert await store.delete(key) is False
    assert await store.get(key) is None
    hits = await store.search(data.vectors[position], K)
    assert key not in [key_of(h) for h in hits]
    assert (await store.stats())["count"] == len(data.ids) - 1
    assert await store.insert(data.batch) == [key]  # only the deleted one is new again
    assert_memory(await store.get(key), data, position)


async def scenario_hostile_ids(store: VectorStore, data: DataSet, exact: bool) -> None:
    """Ids and filters that would break out of a quoted expression or SQL string."""
    hostile = ['q"x\' or id != "', "back\\slash\\", "new\nline\ttab", "ünï\u00e7ødé 😀"]
    probes = ['x" or id != "', "' or '1'='1", '") or ("1"=="1', "\\", ""]
    for probe in probes:
        for key in (probe, f"sys-1/{probe}", f"{probe}/{data.ids[1]}", f'{probe}/x" or key != "'):
            assert await store.get(key) is None
            assert await store.delete(key) is False
            assert await store.existing([key]) == {}
        assert await store.search(data.queries[0], K, [probe]) == []
    # Hostile ids in a plain system, and plain ids in hostile systems.
    systems = ["extra-sys"] * len(hostile) + hostile
    ids = hostile + [f"plain-{n}" for n in range(len(hostile))]
    batch, vectors = extra_batch([f"hostile {n}" for n in range(len(ids))], ids=ids, system=systems)
    keys = keys_of(batch)
    assert await store.insert(batch) == keys
    try:
        for n, key in enumerate(keys):
            row = await store.get(key)
            assert row is not None and row["content"] == f"hostile {n}"
            assert (row["system_id"], row["id"]) == (systems[n], ids[n])
        assert await store.existing(keys) == dict(
            zip(keys, batch.column("content_hash").to_pylist(), strict=True)
        )
        for n, system in enumerate(hostile):  # each hostile system finds its own only
            hits = await store.search(vectors[len(hostile) + n], K, [system])
            assert [key_of(h) for h in hits] == [keys[len(hostile) + n]]
        for key in keys:
            assert await store.delete(key) is True
    finally:
        for key in keys:
            await store.delete(key)
    assert (await store.stats())["count"] == len(data.ids)


async def scenario_large_content_and_metadata(
    store: VectorStore, data: DataSet, exact: bool
) -> None:
    """The longest content a memory may have, in 4-byte characters; {} and None metadata."""
    longest = "😀" * MAX_CONTENT_CHARS
    batch, vectors = extra_batch([longest, "short"])
    keys = await store.insert(batch)
    try:
        first, second = await store.get(keys[0]), await store.get(keys[1])
        assert first is not None and first["content"] == longest and first["metadata"] is None
        assert second is not None and second["metadata"] == {}
        hits = await store.search(vectors[0], 1, ["extra-sys"])
        assert key_of(hits[0]) == keys[0] and hits[0]["content"] == longest
    finally:
        for key in keys:
            await store.delete(key)


async def scenario_stats(store: VectorStore, data: DataSet, exact: bool) -> None:
    stats = await store.stats()
    assert stats["count"] == len(data.ids)
    assert stats["oldest"] == min(data.times)
    assert stats["newest"] == max(data.times)
    assert "bytes" in stats


async def scenario_tier_reads(store: VectorStore, data: DataSet, exact: bool) -> None:
    """What moving memories out of a tier needs: old keys, whole rows back, bulk delete."""
    assert isinstance(store, TierStore)
    cutoff = data.times[1399]  # rows 1400.. are older than row 1399
    old = await store.keys_before(cutoff, 1000)
    assert sorted(old) == sorted(data.keys[1400:].tolist())
    assert len(await store.keys_before(cutoff, 10)) == 10
    assert await store.keys_before(cutoff, 0) == []
    wanted = [*old[:40], "sys-0/missing", "no-slash", old[0]]
    table = await store.fetch(wanted)
    assert table.schema.equals(SCHEMA)
    assert sorted(keys_of(table)) == sorted(old[:40])  # in no promised order
    by_key = dict(zip(data.keys.tolist(), data.batch.to_pylist(), strict=True))
    for key, row in zip(keys_of(table), table.to_pylist(), strict=True):
        want = by_key[key]
        assert row["embedding"] == pytest.approx(want["embedding"], abs=1e-6)
        assert {k: v for k, v in row.items() if k != "embedding"} == {
            k: v for k, v in want.items() if k != "embedding"
        }
    assert (await store.fetch([])).num_rows == 0
    gone = old[:3]
    assert await store.delete_many([*gone, "sys-0/missing", gone[0]]) == gone
    assert await store.existing(gone) == {}
    assert sorted(await store.keys_before(cutoff, 1000)) == sorted(old[3:])
    assert sorted(await store.insert(data.batch)) == sorted(gone)


SCENARIOS = [
    scenario_insert_is_idempotent,
    scenario_resend_keeps_the_stored_row,
    scenario_existing_returns_content_hashes,
    scenario_get,
    scenario_same_id_in_two_systems,
    scenario_search_top_k,
    scenario_search_filters,
    scenario_empty_results,
    scenario_delete,
    scenario_hostile_ids,
    scenario_large_content_and_metadata,
    scenario_tier_reads,
    scenario_stats,
]
