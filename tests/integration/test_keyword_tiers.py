"""The keyword index stays in step with the vectors through the real actors: writes, delete and
migration (hot -> warm -> cold), searched through the memory service in every mode."""

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import ray

from actors import supervisor
from akasha_ray.identity import memory_key
from akasha_ray.memories import MemoryService
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.routing import shard_for
from akasha_ray.search import RRF_K

pytestmark = pytest.mark.integration

WORDS = ["zebra", "quartz", "violin", "glacier", "saffron", "lantern"]
AGES = [0.5, 10, 400]  # days: hot, warm, cold once a pass has run


def batch(now: datetime):
    """Memory i mentions WORDS[i % 6]; among those of a word, by i // 6: systems alternate and
    ages cycle through AGES (zebra: m0 hot, m6 warm, m12 cold, m18 hot, m24 warm, m30 cold)."""
    rng = np.random.default_rng(5)
    memories = [
        MemoryIn(
            id=f"m{i}",
            system_id=f"sys-{(i // 6) % 2}",
            conversation_id="c",
            content=f"we talked about the {WORDS[i % 6]} today",
            created_at=now - timedelta(days=AGES[(i // 6) % 3]),
        )
        for i in range(36)
    ]
    vectors = rng.standard_normal((len(memories), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return build_batch(memories, vectors, model="m", model_revision="r", now=now), vectors


def keys_of_hits(found) -> set[str]:
    return {memory_key(h["system_id"], h["id"]) for h in found.hits}


def test_keyword_search_follows_writes_deletes_and_migration(ray_cluster, settings):
    supervisor.start_all(settings)
    service = MemoryService(settings)
    now = datetime.now(UTC)
    rows, vectors = batch(now)
    shards = supervisor.hot_shards(settings)
    # Straight into hot, whatever the age: memories that have aged there.
    owner = np.array([shard_for(s, len(shards)) for s in rows.column("system_id").to_pylist()])
    ray.get([s.insert.remote(rows.filter(pa.array(owner == i))) for i, s in enumerate(shards)])

    def search(text, mode="keyword", vector=None, systems=None):
        start = now - timedelta(days=1000)
        return asyncio.run(
            service.search(vector, 50, systems, start, None, True, mode=mode, text=text)
        )

    zebra = {f"sys-{(i // 6) % 2}/m{i}" for i in range(0, 36, 6)}
    found = search("Zebras")
    assert keys_of_hits(found) == zebra
    assert all(h["similarity"] is None and h["score"] > 0 for h in found.hits)
    assert keys_of_hits(search("zebra", systems=["sys-1"])) == {
        "sys-1/m6",
        "sys-1/m18",
        "sys-1/m30",
    }

    assert asyncio.run(service.delete("sys-0/m0"))
    assert keys_of_hits(search("zebra")) == zebra - {"sys-0/m0"}

    # The pass moves m6, m24 to warm (its keyword index beside Milvus) and m12, m30 to cold
    # (the archive's BM25 over the partitions read).
    ray.get(supervisor.migrator(settings).migrate.remote(7), timeout=300)
    hot = [h for s in shards for h in ray.get(s.search_keywords.remote("zebra", 50))]
    assert {memory_key(h["system_id"], h["id"]) for h in hot} == {"sys-1/m18"}
    found = search("zebra")
    assert {(memory_key(h["system_id"], h["id"]), h["tier"]) for h in found.hits} == {
        ("sys-1/m18", "hot"),
        ("sys-1/m6", "warm"),
        ("sys-0/m24", "warm"),
        ("sys-0/m12", "cold"),
        ("sys-1/m30", "cold"),
    }
    assert asyncio.run(service.delete("sys-0/m12"))
    assert asyncio.run(service.delete("sys-0/m24"))
    assert keys_of_hits(search("zebra")) == {"sys-1/m18", "sys-1/m6", "sys-1/m30"}

    # Hybrid: both rankings fused.
    i = rows.column("id").to_pylist().index("m6")
    found = search("zebra", mode="hybrid", vector=vectors[i])
    assert not [t for t, a in found.answers.items() if a.error]
    [own] = [h for h in found.hits if h["id"] == "m6"]
    assert own["tier"] == "warm" and own["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert own["score"] > 1 / (RRF_K + 1)  # first by vector, and in the keyword ranking
    scores = [h["score"] for h in found.hits]
    assert scores == sorted(scores, reverse=True)
    assert {"sys-1/m18", "sys-1/m30"} <= keys_of_hits(found)
