"""Tier migration between two real shard stores, including a crash in the middle of a batch."""

import asyncio
import time
from datetime import timedelta

import numpy as np
import pytest

from akasha_ray.migration import Ledger, migrate
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

    async def delete_many(self, ids):
        self.delete_calls += 1
        if self.delete_calls == self.fail_delete_on_call:
            raise RuntimeError("killed between copy and delete")
        return await super().delete_many(ids)


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
        ids = [h["id"] for h in merged]
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

    async def ids_before(self, cutoff, limit):
        ids = await super().ids_before(cutoff, 10**9)
        return ids[::-1][: min(limit, self.cap)]


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
        self.landed.update({i: now for i in batch.column("id").to_pylist()})
        return stored

    async def delete_many(self, ids):
        now = time.monotonic()
        self.both_s += [now - self.target.landed[i] for i in ids if i in self.target.landed]
        return await super().delete_many(ids)


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
