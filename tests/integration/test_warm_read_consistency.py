"""A warm search or read by key sees every acknowledged write without waiting on the server's
clock for each (recent_writes.py), on a real Milvus 2.3.5 server: right after a write to a
system, a search of it (or of every system) and a read of the key find the write, and after a
delete miss it; a system not written for WINDOW_S is read Bounded, and still finds what was
written before."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from akasha_ray.config import WarmConfig
from akasha_ray.embedding_dim import DIM
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.vectors import recent_writes
from akasha_ray.vectors.milvus_store import MilvusStore
from akasha_ray.vectors.recent_writes import RecentWrites
from tests.servers.milvus_server import milvus_server

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vector / np.linalg.norm(vector)


def one_memory(system_id: str, seed: int):
    memory = MemoryIn(
        system_id=system_id, conversation_id="c", content=f"memory {seed}", created_at=NOW
    )
    batch = build_batch([memory], unit(seed)[None, :], model="m", model_revision="r", now=NOW)
    return batch, f"{system_id}/{batch.column('id')[0].as_py()}"


def test_levels_follow_the_writes():
    clock = Clock()
    recent = RecentWrites(clock)
    assert recent.consistency(["a"]) == "Strong"  # just opened: a killed owner's writes
    clock.now = recent_writes.WINDOW_S
    assert recent.consistency(["a"]) == recent.consistency(None) == "Bounded"
    recent.wrote(["a"])
    assert recent.consistency(["a"]) == recent.consistency(["b", "a"]) == "Session"
    assert recent.consistency(None) == "Session" and recent.consistency(["b"]) == "Bounded"
    clock.now += recent_writes.WINDOW_S
    assert recent.consistency(["a"]) == recent.consistency(None) == "Bounded"


async def test_a_search_sees_each_write_at_once_on_a_server(tmp_path):
    with milvus_server() as server:
        store = await MilvusStore.open(WarmConfig(uri=server.uri), tmp_path)
        try:
            clock = Clock()
            store.recent = RecentWrites(clock)
            clock.now = recent_writes.WINDOW_S  # past the opening window: Session or Bounded
            window = (NOW - timedelta(days=1), NOW + timedelta(days=1))
            for seed in range(5):
                batch, key = one_memory(f"sys-{seed % 2}", seed)
                assert await store.insert(batch) == [key]
                system = key.split("/")[0]
                for scope in ([system], None):
                    assert store.recent.consistency(scope) == "Session"
                    hits = await store.search(unit(seed), 3, scope, *window)
                    assert hits and hits[0]["id"] == key.split("/")[1], (seed, scope)
                assert (await store.get(key))["id"] == key.split("/")[1]
                assert await store.delete_many([key]) == [key]
                hits = await store.search(unit(seed), 3, [system], *window)
                assert key.split("/")[1] not in [h["id"] for h in hits]
                assert await store.get(key) is None
            kept, kept_key = one_memory("sys-kept", 99)
            await store.insert(kept)
            time.sleep(6)  # older than Milvus's default gracefulTime (5 s): Bounded sees it
            clock.now += recent_writes.WINDOW_S
            assert store.recent.consistency(["sys-kept"]) == "Bounded"
            hits = await store.search(unit(99), 3, ["sys-kept"], *window)
            assert [h["id"] for h in hits] == [kept_key.split("/")[1]]
            assert (await store.get(kept_key))["id"] == kept_key.split("/")[1]
        finally:
            await store.close()
