from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest

from akasha_ray.identity import keys_of, memory_key
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.vectors.hot_shard import LOOKUP_KEYS_MAX, HotShard

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


def test_insert_is_idempotent_by_key(shard):
    batch, _ = _batch(300)
    assert shard.insert(batch) == keys_of(batch)
    assert shard.insert(batch) == []
    assert shard.insert(batch.slice(10, 50)) == []
    assert shard.stats()["count"] == 300 == shard.stats()["indexed"]


def test_duplicate_ids_inside_one_batch_store_once(shard):
    batch, _ = _batch(10)
    doubled = pa.concat_tables([batch, batch])
    assert len(shard.insert(doubled)) == 10


def test_search_is_exact_with_filters(shard):
    batch, x = _batch(2000)
    shard.insert(batch)
    systems = np.array(batch.column("system_id").to_pylist())
    ids = np.array(batch.column("id").to_pylist())
    assert len(set(ids)) == len(ids)
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
    assert memory_key(row["system_id"], row["id"]) == ids[1]
    assert row["content"] == "memory 1" and row["metadata"] == {"n": 1}
    assert row["model"] == "m" and row["model_revision"] == "r"
    assert shard.delete(ids[1]) is True
    assert shard.delete(ids[1]) is False
    assert shard.get(ids[1]) is None
    hits = shard.search(np.ones(384, np.float32) / 19.6, 10)
    assert ids[1] not in [memory_key(h["system_id"], h["id"]) for h in hits]


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


def test_fetch_keys_before_and_delete_many_move_whole_memories(shard, tmp_path):
    batch, x = _batch(50)
    ids = shard.insert(batch)
    old = shard.keys_before(NOW - timedelta(hours=39.5), 100)  # created 40..49 hours ago
    assert old == ids[49:39:-1]  # oldest first
    assert shard.keys_before(NOW - timedelta(hours=39.5), 3) == ids[49:46:-1]
    moved = shard.fetch([*old, "sys-0/unknown"])
    assert moved.num_rows == 10 and moved.schema == batch.schema
    other = HotShard(tmp_path / "other.duckdb")
    assert sorted(other.insert(moved)) == sorted(old)
    row = other.get(old[0])
    assert row == {**shard.get(old[0])}
    assert np.allclose(other.search(x[45], 1)[0]["similarity"], 1, atol=1e-5)
    assert shard.delete_many([*old, "sys-0/unknown"]) == old
    assert shard.delete_many(old) == []
    assert shard.stats()["count"] == 40 and shard.keys_before(NOW - timedelta(hours=39.5), 9) == []
    other.close()


def _one(system_id, memory_id, content, vector_seed=0):
    rng = np.random.default_rng(vector_seed)
    x = rng.standard_normal((1, 384)).astype(np.float32)
    x /= np.linalg.norm(x)
    memory = MemoryIn(
        id=memory_id, system_id=system_id, conversation_id="c", content=content, created_at=NOW
    )
    return build_batch([memory], x, model="m", model_revision="r", now=NOW), x[0]


def test_the_same_id_in_two_systems_is_two_memories(shard):
    a, xa = _one("sys-a", "msg-1", "from a", 1)
    b, xb = _one("sys-b", "msg-1", "from b", 2)
    assert shard.insert(b) == ["sys-b/msg-1"]
    assert shard.insert(a) == ["sys-a/msg-1"]
    assert shard.get("sys-a/msg-1")["content"] == "from a"
    assert shard.get("sys-b/msg-1")["content"] == "from b"
    assert [h["content"] for h in shard.search(xa, 5, ["sys-a"])] == ["from a"]
    assert shard.delete("sys-a/msg-1") is True
    assert shard.get("sys-a/msg-1") is None
    assert shard.get("sys-b/msg-1")["content"] == "from b"
    assert [h["system_id"] for h in shard.search(xb, 5)] == ["sys-b"]


def test_existing_maps_keys_to_content_hashes(shard):
    a, _ = _one("sys-a", "msg-1", "from a")
    changed, _ = _one("sys-a", "msg-1", "other words")
    shard.insert(a)
    stored = shard.existing(["sys-a/msg-1", "sys-b/msg-1"])
    assert stored == {"sys-a/msg-1": a.column("content_hash")[0].as_py()}
    assert stored["sys-a/msg-1"] != changed.column("content_hash")[0].as_py()
    assert shard.insert(changed) == []  # the stored row stays (the write path answers 409)
    assert shard.get("sys-a/msg-1")["content"] == "from a"


def test_buried_keys_are_never_stored_again_and_survive_reopen(tmp_path):
    path = tmp_path / "s.duckdb"
    shard = HotShard(path)
    a, _ = _one("sys-a", "msg-1", "from a")
    b, _ = _one("sys-b", "msg-1", "from b")
    shard.insert(pa.concat_tables([a, b]))
    shard.bury(["sys-a/msg-1"], NOW)
    shard.bury(["sys-a/msg-1"], NOW)  # idempotent
    assert shard.delete_many(["sys-a/msg-1"]) == ["sys-a/msg-1"]
    assert shard.insert(a) == []
    assert shard.buried(["sys-a/msg-1", "sys-b/msg-1"]) == ["sys-a/msg-1"]
    shard.close()
    reopened = HotShard(path)
    assert reopened.insert(a) == [] and reopened.get("sys-a/msg-1") is None
    assert reopened.buried(["sys-a/msg-1"]) == ["sys-a/msg-1"]
    assert reopened.get("sys-b/msg-1")["content"] == "from b"
    reopened.close()


def test_undo_removes_only_what_one_write_stored_even_after_a_retry(shard):
    a, _ = _one("sys-a", "msg-1", "one")
    b, _ = _one("sys-a", "msg-2", "two")
    assert shard.insert(b, "other-write") == ["sys-a/msg-2"]
    batch = pa.concat_tables([a, b])
    assert shard.insert(batch, "w1") == ["sys-a/msg-1"]
    # The same call retried (its first answer lost): it reports what it stored, once.
    assert shard.insert(batch, "w1") == ["sys-a/msg-1"]
    assert shard.undo(["sys-a/msg-1", "sys-a/msg-2"], "w1") == ["sys-a/msg-1"]
    assert shard.get("sys-a/msg-1") is None
    assert shard.get("sys-a/msg-2")["content"] == "two"  # another write's row stays


def test_few_and_many_keys_find_the_same_rows(shard):
    """Up to LOOKUP_KEYS_MAX keys go through the memory_key index, more through a join: the
    same rows either way, unknown and other-system keys left out."""
    batch, _ = _batch(2 * LOOKUP_KEYS_MAX + 10, systems=3)
    shard.insert(batch, write_id="w1")
    keys = keys_of(batch)
    stranger = "sys-9/" + batch.column("id")[0].as_py()  # an id of sys-0 under another system
    many = [*keys[: LOOKUP_KEYS_MAX + 5], "sys-0/nobody", stranger]
    few = [many[:100], many[100:200], many[200:]]
    assert all(len(part) <= LOOKUP_KEYS_MAX for part in few) and len(many) > LOOKUP_KEYS_MAX

    def found(rows):
        return sorted(memory_key(r["system_id"], r["id"]) for r in rows)

    assert found(shard.get_many(many)) == sorted(keys[: LOOKUP_KEYS_MAX + 5])
    assert found(shard.get_many(many)) == sorted(k for p in few for k in found(shard.get_many(p)))
    assert shard.existing(many) == {k: v for p in few for k, v in shard.existing(p).items()}
    assert sorted(shard.undo(many, "w1")) == sorted(keys[: LOOKUP_KEYS_MAX + 5])
    assert shard.get_many(many) == [] and len(shard.get_many(keys)) == LOOKUP_KEYS_MAX + 5


def test_a_shard_written_before_the_key_column_gets_it_on_open(tmp_path):
    """A file of the earlier layout (no memory_key) is given the column, filled in, and its
    index on open; reads by key, searches and new writes then work as on a new shard."""
    import duckdb

    from akasha_ray.records import SCHEMA
    from akasha_ray.vectors.hot_shard import _DDL

    batch, x = _batch(40)
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as db:
        db.execute(_DDL)
        db.register("batch", batch)
        names = ", ".join(SCHEMA.names)
        db.execute(f"INSERT INTO memories ({names}) SELECT {names} FROM batch")
    shard = HotShard(path)
    try:
        keys = keys_of(batch)
        assert len(shard.get_many(keys[:5])) == 5 and len(shard.existing(keys)) == 40
        assert shard.search(x[3], 1)[0]["id"] == batch.column("id")[3].as_py()
        later, _ = _batch(5, seed=1, offset=100)
        assert shard.insert(later) == keys_of(later)
        assert len(shard.get_many(keys_of(later))) == 5
    finally:
        shard.close()
    shard = HotShard(path)  # opened again: the column is there, nothing is redone
    try:
        assert len(shard.get_many(keys_of(batch) + keys_of(later))) == 45
    finally:
        shard.close()
