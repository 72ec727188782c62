"""The cold tier on a local folder: layout, exact filtered search, idempotency across crashes,
delete by rewrite, hints, stats. The same store on S3 runs in the congruence suite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from akasha_ray.errors import InvalidInput
from akasha_ray.identity import keys_of
from akasha_ray.models import MemoryIn
from akasha_ray.objects.local import LocalObjectStore
from akasha_ray.records import SCHEMA, build_batch
from akasha_ray.vectors import cold_store
from akasha_ray.vectors.base import VectorStore
from akasha_ray.vectors.cold_store import ColdStore

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)


def _batch(n, seed=0, systems=4, hours=6, tag="memory"):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    memories = [
        MemoryIn(
            system_id=f"sys:{i % systems}@x",  # ':' and '@' are allowed in names
            conversation_id=f"c{i}",
            content=f"{tag} {i}",
            created_at=NOW - timedelta(hours=hours * i),
            metadata={"i": i} if i % 2 else None,
        )
        for i in range(n)
    ]
    return build_batch(memories, x, model="m", model_revision="r", now=NOW), x


@pytest.fixture
def store(tmp_path) -> ColdStore:
    return ColdStore(LocalObjectStore(tmp_path / "objects"))


def _data_keys(store):
    return sorted(
        str(p.relative_to(store.objects.root))
        for p in store.objects.root.rglob("*.parquet")
        if "/day=" in "/" + str(p.relative_to(store.objects.root))
    )


def _days_named(key: str) -> tuple[str, str]:
    """The first and last day a data file's key names (cold/day=F/system=S/<id>[.until-L])."""
    first = key.split("/")[1].removeprefix("day=")
    name = key.rsplit("/", 1)[1].removesuffix(".parquet")
    return first, name.split(".until-")[1] if ".until-" in name else first


async def test_layout_is_a_file_per_system_and_month_named_by_its_days(store):
    batch, _ = _batch(40, hours=24)  # one memory a day, 2025-12-23 to 2026-01-31
    assert isinstance(store, VectorStore)
    assert await store.insert(batch) == keys_of(batch)
    keys = _data_keys(store)
    assert len(keys) == 8  # 4 systems, 2 months
    assert all(k.startswith("cold/day=") for k in keys)
    assert "cold/day=2026-01-01/system=sys%3A2%40x" in {k.rsplit("/", 1)[0] for k in keys}
    for key in keys:  # each file: one system, one month, sorted by time, in records.SCHEMA
        table = pq.read_table(store.objects.root / key)
        assert table.schema.equals(SCHEMA)
        assert len(set(table.column("system_id").to_pylist())) == 1
        days = sorted(t.date().isoformat() for t in table.column("created_at").to_pylist())
        assert (days[0], days[-1]) == _days_named(key)
        assert len({day[:7] for day in days}) == 1
        times = table.column("created_at").to_pylist()
        assert times == sorted(times)
    one_day, _ = _batch(3, seed=1, systems=1, hours=1, tag="same day")
    await store.insert(one_day)
    names = [k.rsplit("/", 1)[1] for k in _data_keys(store) if "sys%3A0" in k]
    assert sum(".until-" not in n for n in names) == 1  # a file of one day names it once


async def test_search_is_exact_with_filters(store):
    batch, x = _batch(400, hours=1)
    await store.insert(batch)
    ids = np.array(batch.column("id").to_pylist())
    systems = np.array(batch.column("system_id").to_pylist())
    times = np.array([NOW - timedelta(hours=i) for i in range(400)])
    q = x[17]
    start, end = times[300], times[100]  # inclusive, at stored instants
    keep = np.isin(systems, ["sys:1@x", "sys:2@x"]) & (times >= start) & (times <= end)
    scores = x @ q
    scores[~keep] = -np.inf
    expected = ids[np.argsort(-scores)[:15]].tolist()
    hits = await store.search(q, 15, ["sys:1@x", "sys:2@x"], start, end)
    assert [h["id"] for h in hits] == expected
    assert "content_hash" not in hits[0]
    assert hits[0]["similarity"] == pytest.approx(float(np.max(scores)), abs=1e-5)
    assert all(start <= h["created_at"] <= end for h in hits)
    unfiltered = await store.search(q, 5)
    assert [h["id"] for h in unfiltered] == ids[np.argsort(-(x @ q))[:5]].tolist()
    assert await store.search(q, 5, []) == []
    assert await store.search(q, 5, None, end, start) == []
    assert await store.search(q, 0) == []


async def test_search_reads_only_files_whose_days_overlap_the_range(store):
    batch, x = _batch(90, hours=24)  # one memory a day, over three months
    await store.insert(batch)
    # Spoil every file that holds nothing of 2026-01-20..2026-01-25: opening one would fail.
    spoiled = 0
    for key in _data_keys(store):
        first, last = _days_named(key)
        if last < "2026-01-20" or first > "2026-01-25":
            (store.objects.root / key).write_bytes(b"not parquet")
            spoiled += 1
    assert spoiled == 8  # the files of November and December
    start = datetime(2026, 1, 20, tzinfo=UTC)
    end = datetime(2026, 1, 25, 23, 59, tzinfo=UTC)
    hits = await store.search(x[8], 3, None, start, end)
    assert hits[0]["id"] == batch.column("id")[8].as_py()
    assert all(start <= h["created_at"] <= end for h in hits)


async def test_insert_is_idempotent_even_after_a_crash_between_hints_and_data(store, monkeypatch):
    batch, _ = _batch(30)
    first = batch.slice(0, 10)
    assert len(await store.insert(first)) == 10
    assert await store.insert(first) == []
    assert await store.insert(pa.concat_tables([batch, batch])) == keys_of(batch)[10:]

    # A crash after the hints are written but before the data files: the ids are not stored.
    crashed, _ = _batch(5, seed=9, tag="crashed")
    real_put = store.objects.put

    async def put_hints_only(key, data):
        if "/_keys/" not in key:
            raise OSError("crash")
        await real_put(key, data)

    monkeypatch.setattr(store.objects, "put", put_hints_only)
    with pytest.raises(OSError):
        await store.insert(crashed)
    monkeypatch.setattr(store.objects, "put", real_put)
    assert await store.get(keys_of(crashed)[0]) is None
    assert await store.existing(keys_of(crashed)) == {}
    assert await store.insert(crashed) == keys_of(crashed)
    assert (await store.stats())["count"] == 35


async def test_get_delete_rewrites_the_file(store):
    batch, x = _batch(8)
    keys = await store.insert(batch)
    ids = batch.column("id").to_pylist()
    row = await store.get(keys[1])
    assert row["content"] == "memory 1" and row["metadata"] == {"i": 1}
    assert row["id"] == ids[1] and "content_hash" not in row
    assert (await store.get(keys[0]))["metadata"] is None
    assert row["created_at"] == NOW - timedelta(hours=6)
    assert await store.get(ids[1]) is None  # an id alone is not a key
    assert await store.delete(keys[1]) is True
    assert await store.delete(keys[1]) is False
    assert await store.get(keys[1]) is None
    assert ids[1] not in [h["id"] for h in await store.search(x[1], 8)]
    assert await store.delete_many([keys[2], keys[3], "nope", "s/nope"]) == [keys[2], keys[3]]
    assert (await store.stats())["count"] == 5
    assert await store.insert(batch) == [keys[1], keys[2], keys[3]]  # new again after delete


async def test_same_id_in_two_systems_is_two_memories(store):
    batch, x = _batch(2, systems=2)
    ids = batch.column("id").to_pylist()
    twin = batch.set_column(0, "id", pa.array([ids[0], ids[0]]))  # one id, two systems
    first, second = keys_of(twin)
    assert await store.insert(twin.slice(1, 1)) == [second]
    assert await store.insert(twin) == [first]  # not dropped as "already there"
    assert (await store.get(first))["content"] == "memory 0"
    assert (await store.get(second))["content"] == "memory 1"
    hits = await store.search(x[1], 5, ["sys:0@x"])
    assert [(h["system_id"], h["id"]) for h in hits] == [("sys:0@x", ids[0])]
    assert await store.delete(first) is True
    assert (await store.get(second))["content"] == "memory 1"
    assert [h["system_id"] for h in await store.search(x[1], 5)] == ["sys:1@x"]


async def test_existing_fetch_and_keys_before(store):
    batch, _ = _batch(10, hours=24)
    keys = await store.insert(batch)
    hashes = batch.column("content_hash").to_pylist()
    assert await store.existing([keys[3], "x/none", keys[1], "no-slash"]) == {
        keys[3]: hashes[3],
        keys[1]: hashes[1],
    }
    table = await store.fetch([keys[5], "x/none", keys[2], keys[5]])
    assert keys_of(table) == [keys[5], keys[2]]
    assert table.schema.equals(SCHEMA)
    assert table.to_pylist() == [batch.slice(5, 1).to_pylist()[0], batch.slice(2, 1).to_pylist()[0]]
    assert (await store.fetch([])).num_rows == 0
    cutoff = NOW - timedelta(hours=24 * 6)  # rows 7.. are older
    assert sorted(await store.keys_before(cutoff, 100)) == sorted(keys[7:])
    assert len(await store.keys_before(cutoff, 2)) == 2
    assert await store.keys_before(cutoff, 0) == []


async def test_names_holding_the_separator_are_refused(store):
    batch, _ = _batch(2)
    bad = batch.set_column(0, "id", pa.array(["a/b", "fine"]))
    with pytest.raises(InvalidInput) as caught:
        await store.insert(bad)
    assert caught.value.field == "id"
    assert (await store.stats())["count"] == 0


async def test_hints_only_name_files_of_the_keys_system(store):
    """A key reads only its own system's partition, even if a hint (say, a corrupt one) says
    otherwise."""
    batch, _ = _batch(2, systems=2)
    keys = await store.insert(batch)
    other = [k for k in _data_keys(store) if "system=sys%3A1%40x" in k]
    (store.objects.root / other[0]).write_bytes(b"not parquet")  # opening it would fail
    wrong = pa.table({"key": [keys[0]], "file": [other[0]]})
    await store.objects.put("cold/_keys/zz-wrong.parquet", cold_store._parquet(wrong))
    assert (await store.get(keys[0]))["content"] == "memory 0"


async def test_hint_files_are_merged(store, monkeypatch):
    monkeypatch.setattr(cold_store, "HINT_FILES_MAX", 4)
    batch, _ = _batch(12)
    for n in range(12):
        await store.insert(batch.slice(n, 1))
    hints = list((store.objects.root / "cold" / "_keys").iterdir())
    assert len(hints) <= 5
    fresh = ColdStore(LocalObjectStore(store.objects.root))  # no cached hints
    for key, memory_id in zip(keys_of(batch), batch.column("id").to_pylist(), strict=True):
        assert (await fresh.get(key))["id"] == memory_id
    assert await fresh.insert(batch) == []


async def test_stats(store):
    assert (await store.stats())["count"] == 0
    batch, _ = _batch(10, systems=3)
    await store.insert(batch)
    stats = await store.stats()
    assert stats["count"] == 10 and stats["systems"] == 3
    assert stats["newest"] == NOW and stats["oldest"] == NOW - timedelta(hours=54)
    assert stats["bytes"] > 0 and stats["files"] >= 3


class CountingObjects(LocalObjectStore):
    """The real local store, counting the objects it reads."""

    gets = 0

    async def get(self, key: str) -> bytes:
        self.gets += 1
        return await super().get(key)


async def test_a_repeated_search_reads_no_file_and_a_delete_is_seen_at_once(tmp_path):
    store = ColdStore(CountingObjects(tmp_path / "objects"))
    batch, x = _batch(40)
    await store.insert(batch)
    first = await store.search(x[3], 5, ["sys:3@x"])
    read = store.objects.gets
    assert read > 0
    assert await store.search(x[3], 5, ["sys:3@x"]) == first
    assert await store.search_keywords("memory 3", 5, ["sys:3@x"])
    assert store.objects.gets == read  # listing and partitions both cached
    top = keys_of(batch)[3]
    assert first[0]["id"] == batch["id"][3].as_py()
    assert await store.delete_many([top]) == [top]
    after = await store.search(x[3], 5, ["sys:3@x"])
    assert batch["id"][3].as_py() not in [h["id"] for h in after]


async def test_a_file_rewritten_by_another_writer_is_read_again(tmp_path, monkeypatch):
    objects = tmp_path / "objects"
    reader, writer = ColdStore(LocalObjectStore(objects)), ColdStore(LocalObjectStore(objects))
    batch, x = _batch(40)
    await writer.insert(batch)
    assert (await reader.search(x[3], 1, ["sys:3@x"]))[0]["id"] == batch["id"][3].as_py()
    await writer.delete_many([keys_of(batch)[3]])
    monkeypatch.setattr(cold_store, "LISTING_TTL_S", 0.0)  # the listing is re-read now
    assert batch["id"][3].as_py() not in [h["id"] for h in await reader.search(x[3], 5)]


async def test_cached_search_matches_an_exact_numpy_scan(store):
    batch, x = _batch(200, systems=2)
    await store.insert(batch)
    rng = np.random.default_rng(7)
    start = NOW - timedelta(days=20)
    for query in rng.standard_normal((5, 384)).astype(np.float32):
        for _ in range(2):  # cold, then cached
            hits = await store.search(query, 7, ["sys:1@x"], start=start)
            created = np.array(batch["created_at"].cast(pa.int64()).to_pylist())
            mask = (np.array(batch["system_id"].to_pylist()) == "sys:1@x") & (
                created >= int(start.timestamp() * 1e6)
            )
            scores = np.where(mask, x @ (query / np.linalg.norm(query)), -np.inf)
            expected = np.argsort(-scores)[:7]
            assert [h["id"] for h in hits] == batch["id"].take(expected).to_pylist()
            assert np.allclose([h["similarity"] for h in hits], scores[expected], atol=1e-5)


def test_the_partition_cache_keeps_the_most_recently_used_within_its_bound():
    from akasha_ray.vectors.cold_cache import Partition, PartitionCache

    batch, _ = _batch(10)
    part = Partition.of(batch)
    cache = PartitionCache(max_bytes=int(part.nbytes * 2.5))
    for name in ("a", "b"):
        cache.put(name, 1, part)
    assert cache.get("a", 1) is part  # a is now the most recently used
    cache.put("c", 1, part)
    assert cache.get("b", 1) is None and cache.get("a", 1) is part and cache.get("c", 1) is part
    assert cache.get("a", 2) is None  # another size: another file
    cache.keep_only({"c"})
    assert cache.get("a", 1) is None and cache.bytes == part.nbytes


def test_a_key_held_twice_is_one_hit_and_a_stack_is_reused():
    """A crash mid-rewrite can leave a key in two files: the search keeps its best score once.
    The same partitions searched again scan the same stack."""
    from akasha_ray.vectors.cold_cache import Partition, PartitionCache

    batch, x = _batch(30, systems=1)
    twice = Partition.of(batch)
    parts = [twice, Partition.of(batch.slice(0, 10)), Partition.of(batch.slice(10))]
    cache = PartitionCache(max_bytes=1 << 30)
    stack = cache.stack(parts)
    assert cache.stack(parts) is stack
    query = x[3] + 0.01
    hits = cold_store._top_k(stack, query, 30, None, None)
    keys = [part.keys[row] for part, row, _ in hits]
    assert sorted(keys) == sorted(keys_of(batch)), "every key once"
    scores = x @ (query / np.linalg.norm(query))
    assert np.allclose([s for *_, s in hits], np.sort(scores)[::-1], atol=1e-5)
    cache.put("a", 1, parts[1])
    cache.drop("a")  # a partition leaves the cache: the stacks holding it go too
    assert cache.stack(parts) is not stack
