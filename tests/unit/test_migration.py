"""Tier migration between two real shard stores, including a crash in the middle of a batch."""

import asyncio
import time
from datetime import timedelta

import numpy as np
import pytest

from akasha_ray.identity import keys_of
from akasha_ray.migration import Ledger, MigrationError, migrate
from akasha_ray.search import merge_hits
from akasha_ray.vectors.base import AsyncHotShard
from akasha_ray.vectors.hot_shard import HotShard
from tests.unit.test_hot_shard import NOW, _batch


class Store(AsyncHotShard):
    """A real shard behind the async face the migrator uses; it can die before a delete."""

    def __init__(self, shard: HotShard, fail_delete_on_call: int | None = None) -> None:
        super().__init__(shard)
        self.fail_delete_on_call = fail_delete_on_call
        self.delete_calls = 0

    async def delete_many(self, keys):
        self.delete_calls += 1
        if self.delete_calls == self.fail_delete_on_call:
            raise RuntimeError("killed between copy and delete")
        return await super().delete_many(keys)


@pytest.fixture
def tiers(tmp_path):
    hot, warm = HotShard(tmp_path / "hot.duckdb"), HotShard(tmp_path / "warm.duckdb")
    yield hot, warm
    hot.close()
    warm.close()


def _ids(shard):
    return set(shard.index._row_of)


def test_moves_only_what_aged_out(tiers, tmp_path):
    hot, warm = tiers
    batch, _ = _batch(300)  # created 0..299 hours ago
    everything = set(hot.insert(batch))
    cutoff = NOW - timedelta(hours=100)
    report = asyncio.run(
        migrate(Store(hot), Store(warm), cutoff, Ledger(tmp_path / "l.jsonl"), batch_size=64)
    )
    assert report["moved"] == 199 and report["batches"] == 4  # 100.5 .. 299 hours old
    assert _ids(hot) | _ids(warm) == everything and not _ids(hot) & _ids(warm)
    assert all(hot.get(i)["created_at"] >= cutoff for i in _ids(hot))
    assert not (tmp_path / "l.jsonl").exists()  # nothing left open


def test_killed_mid_batch_then_rerun_loses_and_duplicates_nothing(tiers, tmp_path):
    hot, warm = tiers
    batch, x = _batch(300)
    everything = set(hot.insert(batch))
    cutoff = NOW - timedelta(hours=100)
    ledger_path = tmp_path / "ledger.jsonl"
    crashing = Store(hot, fail_delete_on_call=2)
    with pytest.raises(RuntimeError):
        asyncio.run(migrate(crashing, Store(warm), cutoff, Ledger(ledger_path), batch_size=64))

    # Mid-crash: the batch whose delete died sits in both tiers, with any batch the pipeline had
    # copied behind it; all are open in the ledger. A search across both sees each memory once.
    open_ids = {i for ids in Ledger(ledger_path).open_batches().values() for i in ids}
    assert len(_ids(hot) & _ids(warm)) >= 64
    assert _ids(hot) & _ids(warm) <= open_ids <= _ids(hot)
    assert _ids(hot) | _ids(warm) == everything
    for q in x[:5]:
        merged = merge_hits([hot.search(q, 50), warm.search(q, 50)], 50)
        ids = [(h["system_id"], h["id"]) for h in merged]
        assert len(ids) == len(set(ids)) == 50
        scores = np.stack([x[i] for i in range(300)]) @ q
        assert merged[0]["similarity"] == pytest.approx(float(scores.max()), abs=1e-5)

    # A new process reads the ledger, finishes the open batches, then the rest.
    report = asyncio.run(
        migrate(Store(hot), Store(warm), cutoff, Ledger(ledger_path), batch_size=64)
    )
    assert report["recovered"] == len(open_ids)
    assert _ids(hot) | _ids(warm) == everything and not _ids(hot) & _ids(warm)
    assert len(_ids(warm)) == 199


def test_a_torn_ledger_line_is_ignored(tmp_path):
    path = tmp_path / "ledger.jsonl"
    ledger = Ledger(path)
    first = ledger.start(["a", "b"])
    ledger.start(["c"])
    ledger.finish(first)
    with open(path, "a") as out:
        out.write('{"batch": 2, "sta')  # the process died while writing
    assert Ledger(path).open_batches() == {1: ["c"]}


class CappedStore(Store):
    """Lists at most `cap` ids, newest first (as Milvus may: any order, 16,384 at most)."""

    def __init__(self, shard: HotShard, cap: int) -> None:
        super().__init__(shard)
        self.cap = cap

    async def keys_before(self, cutoff, limit):
        keys = await super().keys_before(cutoff, 10**9)
        return keys[::-1][: min(limit, self.cap)]


@pytest.mark.parametrize("cap", [10, 64, 100])
def test_a_source_that_lists_few_ids_in_any_order_still_empties(tiers, tmp_path, cap):
    hot, warm = tiers
    batch, _ = _batch(300)
    everything = set(hot.insert(batch))
    cutoff = NOW - timedelta(hours=100)
    report = asyncio.run(
        migrate(
            CappedStore(hot, cap), Store(warm), cutoff, Ledger(tmp_path / "l.jsonl"), batch_size=64
        )
    )
    assert report["moved"] == 199
    assert _ids(hot) | _ids(warm) == everything and not _ids(hot) & _ids(warm)
    assert all(hot.get(i)["created_at"] >= cutoff for i in _ids(hot))


def test_the_target_is_flushed_once_at_the_end(tiers, tmp_path):
    hot, warm = tiers
    hot.insert(_batch(300)[0])

    class Flushing(Store):
        flushes = 0

        async def flush(self):
            Flushing.flushes += 1

    report = asyncio.run(
        migrate(
            Store(hot),
            Flushing(warm),
            NOW - timedelta(hours=100),
            Ledger(tmp_path / "l.jsonl"),
            batch_size=64,
        )
    )
    assert report["batches"] == 4 and Flushing.flushes == 1


class Clocked(Store):
    """Notes when each id landed here, and, as a source, how long it had been in `target`."""

    def __init__(self, shard, target=None):
        super().__init__(shard)
        self.target, self.landed, self.both_s = target, {}, []

    async def insert(self, batch):
        stored = await super().insert(batch)
        now = time.monotonic()
        self.landed.update({k: now for k in keys_of(batch)})
        return stored

    async def delete_many(self, keys):
        now = time.monotonic()
        self.both_s += [now - self.target.landed[k] for k in keys if k in self.target.landed]
        return await super().delete_many(keys)


def test_a_checked_batch_lingers_in_both_tiers_before_the_source_lets_go(tiers, tmp_path):
    hot, warm = tiers
    batch, _ = _batch(300)
    hot.insert(batch)
    target = Clocked(warm)
    source = Clocked(hot, target)
    cutoff = NOW - timedelta(hours=100)
    ledger = Ledger(tmp_path / "l.jsonl")
    report = asyncio.run(migrate(source, target, cutoff, ledger, batch_size=40, linger_s=0.3))
    assert report["moved"] == len(source.both_s) == 199  # created 101..299 hours ago
    # Every memory was readable in the target for the whole linger before it left the source.
    assert min(source.both_s) >= 0.3


class Graveyard:
    """Tombstones as the memory service keeps them: in the source shard's table."""

    def __init__(self, source: Store, bury_after_copy: list[str] | None = None) -> None:
        self.source, self.bury_after_copy = source, bury_after_copy or []

    async def buried(self, keys):
        # A DELETE that lands between the copy and the check: its tombstone is there by now.
        shard = self.source.shard
        await self.source._call(shard.bury, self.bury_after_copy, NOW)
        return await self.source._call(shard.buried, keys)


def test_a_memory_deleted_while_its_batch_moves_stays_deleted(tiers, tmp_path):
    hot, warm = tiers
    batch, _ = _batch(300)
    everything = hot.insert(batch)
    cutoff = NOW - timedelta(hours=100)
    victims = [k for k in everything if hot.get(k)["created_at"] < cutoff][:3]
    source = Store(hot)
    graveyard = Graveyard(source, bury_after_copy=victims)
    ledger = Ledger(tmp_path / "l.jsonl")
    report = asyncio.run(
        migrate(source, Store(warm), cutoff, ledger, batch_size=64, graveyard=graveyard)
    )
    assert report["moved"] == 199
    assert all(warm.get(k) is None and hot.get(k) is None for k in victims)
    assert len(_ids(warm)) == 199 - len(victims)


def test_a_target_row_with_other_content_under_the_same_key_is_not_a_copy(tiers, tmp_path):
    hot, warm = tiers
    batch, _ = _batch(10)
    keys = hot.insert(batch)
    stale = batch.slice(9, 1).set_column(
        batch.schema.get_field_index("content_hash"), "content_hash", [["not-this-memory"]]
    )
    warm.insert(stale)  # the same key, other content: the check must not take it for the copy
    with pytest.raises(MigrationError, match="did not land"):
        asyncio.run(
            migrate(Store(hot), Store(warm), NOW, Ledger(tmp_path / "l.jsonl"), batch_size=64)
        )
    assert hot.get(keys[9]) is not None  # the source keeps it


def test_the_source_lets_go_only_after_the_target_made_the_batch_durable(tiers, tmp_path):
    hot, warm = tiers
    hot.insert(_batch(300)[0])
    events = []

    class Durable(Store):
        async def make_durable(self):
            events.append("durable")

    class Logged(Store):
        async def delete_many(self, keys):
            events.append("delete")
            return await super().delete_many(keys)

    ledger = Ledger(tmp_path / "l.jsonl")
    asyncio.run(
        migrate(Logged(hot), Durable(warm), NOW - timedelta(hours=100), ledger, batch_size=64)
    )
    assert events.count("delete") == 4
    assert all(events[i - 1] == "durable" for i, e in enumerate(events) if e == "delete")


def test_a_delete_that_takes_the_new_copy_before_the_check_is_no_error(tiers, tmp_path):
    """A DELETE between the copy and the check removes the target's new copy: the pass goes on."""
    hot, warm = tiers
    batch, _ = _batch(100)
    keys = hot.insert(batch)
    victim = keys[-1]  # the oldest: in the first batch

    source = Store(hot)

    class DeletedAfterCopy(Store):
        async def insert(self, rows):
            stored = await super().insert(rows)
            if victim in keys_of(rows):  # the DELETE: tombstone, then every tier's copy
                await source._call(hot.bury, [victim], NOW)  # each shard behind its own lock
                await self._call(self.shard.delete_many, [victim])
            return stored

    report = asyncio.run(
        migrate(
            source,
            DeletedAfterCopy(warm),
            NOW,
            Ledger(tmp_path / "l.jsonl"),
            batch_size=40,
            graveyard=Graveyard(source),
        )
    )
    assert report["moved"] == 99  # all but the one created exactly at the cutoff
    assert warm.get(victim) is None and hot.get(victim) is None
    assert len(_ids(warm)) == 98
