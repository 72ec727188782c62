"""Migration through the real actors: hot (DuckDB) -> warm (Milvus Lite) -> cold (Parquet)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import ray

from actors import supervisor
from akasha_ray.identity import keys_of, memory_key
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.routing import shard_for

pytestmark = pytest.mark.integration


def test_memories_end_in_the_tier_their_age_calls_for(ray_cluster, settings):
    now = datetime.now(UTC)
    rng = np.random.default_rng(3)
    ages = [0.5, 3, 6.5, 8, 20, 45, 89, 91, 120, 400] * 6  # days
    vectors = rng.standard_normal((len(ages), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    memories = [
        MemoryIn(
            system_id=f"sys-{i % 3}",
            conversation_id=f"c{i}",
            content=f"memory {i}",
            created_at=now - timedelta(days=age),
        )
        for i, age in enumerate(ages)
    ]
    batch = build_batch(memories, vectors, model="m", model_revision="r", now=now)
    supervisor.start_all(settings)  # the migrator finds its peers by name
    shards = supervisor.hot_shards(settings)
    owner = np.array([shard_for(s, len(shards)) for s in batch.column("system_id").to_pylist()])
    ids = keys_of(batch)
    ray.get([shards[i].insert.remote(batch.filter(owner == i)) for i in range(len(shards))])

    migrator = supervisor.migrator(settings)
    report = ray.get(migrator.migrate.remote(7))["moved"]
    moved_to_warm = sum(v["moved"] for k, v in report.items() if k.endswith("->warm"))
    assert moved_to_warm == 42  # everything 7 days old or more left hot
    assert report["warm->cold"]["moved"] == 18  # then everything past 90 days left warm

    warm, cold = supervisor.warm(settings), supervisor.cold(settings)
    where = {}
    for tier, handles in (("hot", shards), ("warm", [warm]), ("cold", [cold])):
        for handle in handles:
            for memory_id in ray.get(handle.existing.remote(ids)):
                assert memory_id not in where, f"{memory_id} in {where[memory_id]} and {tier}"
                where[memory_id] = tier
    expected = ["hot" if a < 7 else "warm" if a < 90 else "cold" for a in ages]
    assert [where[i] for i in ids] == expected

    # The moved memories are whole: the warm and cold tiers find them by their own vectors.
    for tier, handle in (("warm", warm), ("cold", cold)):
        i = expected.index(tier)
        [best] = ray.get(handle.search.remote(vectors[i], 1))
        assert memory_key(best["system_id"], best["id"]) == ids[i]
        assert best["content"] == f"memory {i}"
        assert best["similarity"] == pytest.approx(1.0, abs=1e-4)

    again = ray.get(migrator.migrate.remote(7))["moved"]
    assert all(v["moved"] == 0 and v["recovered"] == 0 for v in again.values())
