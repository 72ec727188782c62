from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.vectors.hot_shard import HotShard

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _batch(n, seed=0, systems=5, offset=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    memories = [
        MemoryIn(
            system_id=f"sys-{i % systems}",
            conversation_id=f"c{i // 4}",
            content=f"memory {i + offset}",
            created_at=NOW - timedelta(hours=i),
            metadata={"n": i} if i % 2 else None,
        )
        for i in range(n)
    ]
    return build_batch(memories, x, model="m", model_revision="r", now=NOW), x


@pytest.fixture
def shard(tmp_path):
    shard = HotShard(tmp_path / "shard.duckdb")
    yield shard
    shard.close()


def test_insert_is_idempotent_by_id(shard):
    batch, _ = _batch(300)
    assert len(shard.insert(batch)) == 300
    assert shard.insert(batch) == []
    assert shard.insert(batch.slice(10, 50)) == []
    assert shard.stats()["count"] == 300 == shard.stats()["indexed"]


def test_duplicate_ids_inside_one_batch_store_once(shard):
    batch, _ = _batch(10)
    import pyarrow as pa

    doubled = pa.concat_tables([batch, batch])
    assert len(shard.insert(doubled)) == 10


def test_search_is_exact_with_filters(shard):
    batch, x = _batch(2000)
    shard.insert(batch)
    systems = np.array(batch.column("system_id").to_pylist())
    ids = np.array(batch.column("id").to_pylist())
    times = np.array([NOW - timedelta(hours=i) for i in range(2000)])
    q = x[17]
    start, end = NOW - timedelta(hours=500), NOW - timedelta(hours=100)
    keep = np.isin(systems, ["sys-1", "sys-2"]) & (times >= start) & (times <= end)
    scores = x @ q
    scores[~keep] = -np.inf
    expected = ids[np.argsort(-scores)[:15]].tolist()
    hits = shard.search(q, 15, ["sys-1", "sys-2"], start, end)
    assert [h["id"] for h in hits] == expected
    assert all(h["system_id"] in {"sys-1", "sys-2"} for h in hits)
    assert all(start <= h["created_at"] <= end for h in hits)
    assert hits[0]["similarity"] == pytest.approx(float(np.max(scores)), abs=1e-6)


def test_get_delete_and_metadata(shard):
    batch, _ = _batch(5)
    ids = shard.insert(batch)
    row = shard.get(ids[1])
    assert row["content"] == "memory 1" and row["metadata"] == {"n": 1}
    assert row["model"] == "m" and row["model_revision"] == "r"
    assert shard.delete(ids[1]) is True
    assert shard.delete(ids[1]) is False
    assert shard.get(ids[1]) is None
    assert ids[1] not in [h["id"] for h in shard.search(np.ones(384, np.float32) / 19.6, 10)]


def test_data_and_index_survive_reopen(tmp_path):
    path = tmp_path / "s.duckdb"
    shard = HotShard(path)
    batch, x = _batch(500)
    ids = shard.insert(batch)
    shard.delete(ids[0])
    before = [h["id"] for h in shard.search(x[3], 10)]
    del shard  # no close: as if the process died; DuckDB's WAL must carry the writes
    import gc

    gc.collect()
    reopened = HotShard(path)
    assert reopened.stats()["count"] == 499 == len(reopened.index)
    assert [h["id"] for h in reopened.search(x[3], 10)] == before
    assert reopened.insert(batch) == [ids[0]]  # only the deleted one is new again
    reopened.close()


def test_fetch_ids_before_and_delete_many_move_whole_memories(shard, tmp_path):
    batch, x = _batch(50)
    ids = shard.insert(batch)
    old = shard.ids_before(NOW - timedelta(hours=39.5), 100)  # created 40..49 hours ago
    assert old == ids[49:39:-1]  # oldest first
    assert shard.ids_before(NOW - timedelta(hours=39.5), 3) == ids[49:46:-1]
    moved = shard.fetch([*old, "unknown"])
    assert moved.num_rows == 10 and moved.schema == batch.schema
    other = HotShard(tmp_path / "other.duckdb")
    assert sorted(other.insert(moved)) == sorted(old)
    row = other.get(old[0])
    assert row == {**shard.get(old[0])}
    assert np.allclose(other.search(x[45], 1)[0]["similarity"], 1, atol=1e-5)
    assert shard.delete_many([*old, "unknown"]) == old
    assert shard.delete_many(old) == []
    assert shard.stats()["count"] == 40 and shard.ids_before(NOW - timedelta(hours=39.5), 9) == []
    other.close()
