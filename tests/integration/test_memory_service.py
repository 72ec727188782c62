"""The memory service on real actors: a batch is stored whole or not at all when a shard dies in
the middle of it, and a memory deleted while a migration pass moves it stays deleted."""

import asyncio
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import ray

from actors import supervisor
from akasha_ray.errors import Unavailable
from akasha_ray.identity import keys_of, memory_key
from akasha_ray.memories import MemoryService
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.routing import shard_for

pytestmark = pytest.mark.integration


def systems_on_each_shard(shards: int) -> list[str]:
    """One system name per hot shard."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < shards:
        found.setdefault(shard_for(f"sys-{i}", shards), f"sys-{i}")
        i += 1
    return [found[s] for s in range(shards)]


def batch_of(systems, n, age=timedelta(0), seed=0, tag="m"):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    now = datetime.now(UTC)
    rows = [
        MemoryIn(
            id=f"{tag}-{i}",
            system_id=systems[i % len(systems)],
            conversation_id="c",
            content=f"memory {tag} {i}",
            created_at=now - age,
        )
        for i in range(n)
    ]
    return build_batch(rows, vectors, model="m", model_revision="r", now=now), vectors


def where(settings, keys):
    """Each key's tiers."""
    found: dict[str, list[str]] = {k: [] for k in keys}
    owners = [("hot", s) for s in supervisor.hot_shards(settings)]
    owners += [("warm", supervisor.warm(settings)), ("cold", supervisor.cold(settings))]
    for tier, owner in owners:
        for key in ray.get(owner.existing.remote(keys), timeout=120):
            found[key].append(tier)
    return found


class KillsAShardMidBatch(MemoryService):
    """The real service, with one shard killed for good after the batch was checked and before
    it is written: the other shard's part lands, this one's fails."""

    victim: int = 1

    async def _write_whole(self, parts, write_id):
        ray.kill(self.peers.shards[self.victim], no_restart=True)
        return await super()._write_whole(parts, write_id)


def test_a_batch_is_stored_whole_or_not_at_all_when_a_shard_dies(ray_cluster, settings):
    supervisor.start_all(settings)
    systems = systems_on_each_shard(settings.hot.shards)
    batch, _ = batch_of(systems, 400)
    keys = keys_of(batch)
    service = KillsAShardMidBatch(settings)
    with pytest.raises(Unavailable):
        asyncio.run(service.ingest(batch))
    # The survivor's part was written, then removed again: nothing of the batch is anywhere.
    survivor = supervisor.hot_shards(settings)[0]
    assert ray.get(survivor.existing.remote(keys)) == {}

    # The shard comes back (get-or-create), and the same batch, sent again, is stored whole.
    supervisor.hot_shards(settings)
    stored = asyncio.run(MemoryService(settings).ingest(batch))
    assert sorted(stored.new_keys) == sorted(keys)
    assert all(tiers == ["hot"] for tiers in where(settings, keys).values())


def test_a_shard_crashing_during_writes_never_leaves_half_a_batch(ray_cluster, settings):
    """Crashes (Ray restarts the shard) at arbitrary moments of a stream of batches: every batch
    is either acknowledged and whole, or refused and absent."""
    supervisor.start_all(settings)
    systems = systems_on_each_shard(settings.hot.shards)
    shards = supervisor.hot_shards(settings)
    outcomes = []

    async def stream():
        service = MemoryService(settings)
        for round_ in range(6):
            batch, _ = batch_of(systems, 2000, seed=round_, tag=f"r{round_}")
            try:
                await service.ingest(batch)
                outcomes.append((keys_of(batch), True))
            except Unavailable:
                outcomes.append((keys_of(batch), False))

    async def crash():
        for delay in (0.3, 0.7, 0.4):
            await asyncio.sleep(delay)
            ray.kill(shards[1], no_restart=False)

    async def both():
        await asyncio.gather(stream(), crash())

    asyncio.run(both())
    time.sleep(2)
    for keys, acknowledged in outcomes:
        found = where(settings, keys)
        stored = [k for k, tiers in found.items() if tiers]
        if acknowledged:
            assert all(found[k] == ["hot"] for k in keys)
        else:
            assert stored == []
    assert any(ok for _, ok in outcomes)


def test_a_memory_deleted_while_a_pass_moves_it_is_gone_from_every_tier(ray_cluster, settings):
    supervisor.start_all(settings)
    systems = systems_on_each_shard(settings.hot.shards)
    batch, vectors = batch_of(systems, 600, age=timedelta(days=8), tag="aged")
    keys = keys_of(batch)
    shards = supervisor.hot_shards(settings)
    owner = np.array([shard_for(s, len(shards)) for s in batch.column("system_id").to_pylist()])
    # Straight into hot, whatever the age: memories that have aged there.
    ray.get([shards[i].insert.remote(batch.filter(pa.array(owner == i))) for i in range(2)])
    service = MemoryService(settings)
    doomed = keys[::37]

    async def delete_while_moving():
        migrator = service.peers.migrator
        moving = asyncio.ensure_future(_awaited(migrator.migrate.remote(25)))
        for key in doomed:  # spread over the pass: batches of 25 linger 1 s each
            await asyncio.sleep(0.4)
            assert await service.delete(key)
        return await moving

    report = asyncio.run(delete_while_moving())
    moved = sum(hop["moved"] for name, hop in report["moved"].items() if name.endswith("->warm"))
    assert moved > 0
    found = where(settings, keys)
    assert {k: found[k] for k in doomed if found[k]} == {}
    assert all(found[k] == ["warm"] for k in keys if k not in doomed)
    service = MemoryService(settings)
    for key in doomed:
        assert asyncio.run(service.find(key)) == []
        index = keys.index(key)
        hits = asyncio.run(service.search(vectors[index], 5, None, None, None)).hits
        assert key not in [memory_key(h["system_id"], h["id"]) for h in hits]
    # A later pass and a resend do not bring them back either.
    ray.get(service.peers.migrator.migrate.remote(25), timeout=300)
    assert all(not where(settings, doomed)[k] for k in doomed)


async def _awaited(ref):
    return await ref
