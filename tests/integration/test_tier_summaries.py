"""Per-system tier summaries kept on write (vectors/summaries.py) against a brute-force count, in
the hot shard, Milvus Lite and the cold archive: after ingest, deletes (the oldest and newest of a
system included), moves hot -> warm -> cold as a migration makes them, and a reopen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from akasha_ray.config import WarmConfig
from akasha_ray.identity import keys_of, split_key
from akasha_ray.models import MemoryIn
from akasha_ray.objects.local import LocalObjectStore
from akasha_ray.records import build_batch, time_us_of
from akasha_ray.times import from_us
from akasha_ray.vectors.cold_store import ColdStore
from akasha_ray.vectors.hot_shard import HotShard
from akasha_ray.vectors.milvus_store import MilvusStore

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SYSTEMS = ["a", "b", "c"]


def _batch(n, seed, tag):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 384)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    memories = [
        MemoryIn(
            system_id=SYSTEMS[(i * 7 + seed) % len(SYSTEMS)],
            conversation_id="c",
            content=f"{tag} {i}",
            created_at=NOW - timedelta(hours=int(rng.integers(0, 24 * 200))),
        )
        for i in range(n)
    ]
    return build_batch(memories, x, model="m", model_revision="r", now=NOW)


class Model:
    """What a tier holds, by key: the brute-force side of the comparison."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}

    def add(self, batch, stored):
        times = dict(zip(keys_of(batch), time_us_of(batch).tolist(), strict=True))
        self.rows.update({k: times[k] for k in stored})

    def remove(self, keys):
        for key in keys:
            self.rows.pop(key, None)

    def expect(self, systems):
        times = [t for k, t in self.rows.items() if systems is None or split_key(k)[0] in systems]
        return {
            "count": len(times),
            "oldest": from_us(min(times)) if times else None,
            "newest": from_us(max(times)) if times else None,
        }


def _plain(report):
    return {k: report[k] for k in ("count", "oldest", "newest")}


async def _check(summary, model):
    for systems in [None, ["a"], ["b"], ["a", "c"], ["nobody"], []]:
        assert _plain(await summary(systems)) == model.expect(systems), systems


def _oldest_and_newest(model, system):
    mine = {k: t for k, t in model.rows.items() if split_key(k)[0] == system}
    return [min(mine, key=mine.get), max(mine, key=mine.get)]


async def test_counters_follow_ingest_delete_and_migration(tmp_path):
    hot = HotShard(tmp_path / "hot.duckdb")
    warm = await MilvusStore.open(WarmConfig(), tmp_path)
    cold = ColdStore(LocalObjectStore(tmp_path / "objects"))
    tiers = {"hot": Model(), "warm": Model(), "cold": Model()}

    async def hot_summary(systems):
        return hot.summary(systems)

    summaries = {"hot": hot_summary, "warm": warm.summary, "cold": cold.summary}

    async def check_all():
        for name, model in tiers.items():
            await _check(summaries[name], model)
        # and against a scan of each store
        assert hot.stats()["count"] == len(tiers["hot"].rows)
        assert (await warm.stats())["count"] == len(tiers["warm"].rows)
        assert (await cold.stats())["count"] == len(tiers["cold"].rows)
        counted = hot._db.execute("SELECT system_id, count(*) FROM memories GROUP BY ALL")
        assert hot.system_counts() == dict(counted.fetchall())

    await check_all()  # empty stores

    # ingest into every tier; the counters of an entry asked before the write move with it
    for n, (name, store) in enumerate({"hot": hot, "warm": warm, "cold": cold}.items()):
        batch = _batch(120, seed=n, tag=name)
        stored = hot.insert(batch) if name == "hot" else await store.insert(batch)
        tiers[name].add(batch, stored)
    await check_all()
    for n, (name, store) in enumerate({"hot": hot, "warm": warm, "cold": cold}.items()):
        batch = _batch(60, seed=10 + n, tag=f"more {name}")
        stored = hot.insert(batch) if name == "hot" else await store.insert(batch)
        assert (hot.insert(batch) if name == "hot" else await store.insert(batch)) == []
        tiers[name].add(batch, stored)
    await check_all()

    # deletes of a system's oldest and newest (its bounds must move), and of unknown keys
    for name, store in {"hot": hot, "warm": warm, "cold": cold}.items():
        doomed = [*_oldest_and_newest(tiers[name], "a"), "a/none"]
        gone = hot.delete_many(doomed) if name == "hot" else await store.delete_many(doomed)
        assert len(gone) == 2
        tiers[name].remove(gone)
    await check_all()

    # a migration: the oldest hot rows to warm, the oldest warm rows to cold (copy, then delete)
    for source, target in [("hot", "warm"), ("warm", "cold")]:
        cutoff = NOW - timedelta(days=100 if source == "hot" else 150)
        if source == "hot":
            keys = hot.keys_before(cutoff, 10_000)
            rows = hot.fetch(keys)
        else:
            keys = await warm.keys_before(cutoff, 10_000)
            rows = await warm.fetch(keys)
        assert keys
        target_store = warm if target == "warm" else cold
        tiers[target].add(rows, await target_store.insert(rows))
        gone = hot.delete_many(keys) if source == "hot" else await warm.delete_many(keys)
        tiers[source].remove(gone)
        await check_all()

    # a reopened hot shard starts from its index, with the same answers
    hot.close()
    hot = HotShard(tmp_path / "hot.duckdb")
    await check_all()
    assert hot.stats()["systems"] == len({split_key(k)[0] for k in tiers["hot"].rows})
    hot.close()
    await warm.close()
    await cold.close()
