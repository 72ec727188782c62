"""The migrator actor, for real: killed mid-pass (and the warm tier with it) then run again, and
the hot window shrinking when hot search is over its latency target."""

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import ray

from actors import supervisor
from actors.tiers import TierHandles
from akasha_ray import config
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch
from akasha_ray.routing import shard_for

pytestmark = pytest.mark.integration


def memories(ages_days, now, rng, first=0):
    vectors = rng.standard_normal((len(ages_days), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        MemoryIn(
            system_id=f"sys-{(first + i) % 5}",
            conversation_id=f"c{first + i}",
            content=f"memory {first + i}",
            created_at=now - timedelta(days=age),
        )
        for i, age in enumerate(ages_days)
    ]
    return build_batch(rows, vectors, model="m", model_revision="r", now=now), vectors


def put_in_hot(shards, batch):
    """Straight into the hot shards, whatever the age: memories that have aged there."""
    owner = np.array([shard_for(s, len(shards)) for s in batch.column("system_id").to_pylist()])
    ray.get([shards[i].insert.remote(batch.filter(owner == i)) for i in range(len(shards))])


def where_is(settings, ids):
    """Each id's tiers: a memory must be in exactly one."""
    found: dict[str, list[str]] = {i: [] for i in ids}
    owners = [("hot", s) for s in supervisor.hot_shards(settings)]
    owners += [("warm", supervisor.warm(settings)), ("cold", supervisor.cold(settings))]
    for tier, owner in owners:
        for memory_id in ray.get(owner.existing.remote(ids)):
            found[memory_id].append(tier)
    return found


def wait_for_open_batch(path, number, timeout_s=120):
    """Until the ledger holds batch `number` (or a later one) started and not done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            last = json.loads(path.read_text().splitlines()[-1])
        except (FileNotFoundError, IndexError, ValueError):  # none open, or a line half-written
            last = None
        if last and last["state"] == "start" and last["batch"] >= number:
            return
        time.sleep(0.01)
    raise AssertionError(f"{path} never held batch {number} open")


def test_a_pass_killed_midway_then_run_again_loses_and_duplicates_nothing(ray_cluster, settings):
    now = datetime.now(UTC)
    rng = np.random.default_rng(11)
    ages = list(np.linspace(8, 80, 1500))  # all aged out of hot, none out of warm
    batch, vectors = memories(ages, now, rng)
    ids = batch.column("id").to_pylist()
    shards = supervisor.hot_shards(settings)
    put_in_hot(shards, batch)
    migrator, warm = supervisor.migrator(settings), supervisor.warm(settings)
    ledgers = settings.data_dir / "migration"

    # Kill the migrator while a batch is open in the ledger: Ray restarts it, and the call it was
    # running is retried, which first finishes the open batch.
    first = migrator.migrate.remote(25)
    wait_for_open_batch(ledgers / "hot-0-to-warm.jsonl", 3)
    ray.kill(migrator, no_restart=False)
    # Then kill the warm actor (Milvus Lite's owner) in the middle of the retried pass.
    wait_for_open_batch(ledgers / "hot-1-to-warm.jsonl", 2)
    ray.kill(warm, no_restart=False)
    ray.get(first, timeout=300)

    final = ray.get(supervisor.migrator(settings).migrate.remote(25), timeout=300)["moved"]
    assert all(hop["recovered"] == 0 for hop in final.values())  # nothing left open
    assert list(ledgers.glob("*.jsonl")) == []  # every ledger closed and removed
    found = where_is(settings, ids)
    assert {i: t for i, t in found.items() if t != ["warm"]} == {}
    assert ray.get(warm.stats.remote())["count"] == len(ids)  # no row twice in Milvus either
    for i in rng.choice(len(ids), 5, replace=False).tolist():  # whole: found by their vectors
        [best] = ray.get(warm.search.remote(vectors[i], 1))
        assert best["id"] == ids[i] and best["content"] == f"memory {i}"
        assert best["similarity"] == pytest.approx(1.0, abs=1e-4)


def test_the_hot_window_shrinks_when_hot_search_misses_its_target(ray_cluster, settings):
    # A target no search can meet: every shard is over its budget of (almost) no rows, so the
    # window shrinks to its floor, two days, and the migrator moves what that leaves out.
    settings = config.load(
        data_dir=settings.data_dir,
        namespace=settings.namespace,
        tiers={"hot_target_p95_ms": 1e-6, "hot_min_days": 2},
        serve={"request_timeout_s": 1},
    )
    now = datetime.now(UTC)
    rng = np.random.default_rng(5)
    ages = [0.1, 0.5, 1.5, 3, 5, 6] * 5
    batch, vectors = memories(ages, now, rng)
    ids = batch.column("id").to_pylist()
    tiers = TierHandles(settings)
    asyncio.run(tiers.insert(batch, now))
    assert all(t == ["hot"] for t in where_is(settings, ids).values())
    for shard in tiers.shards:
        ray.get([shard.search.remote(vectors[0], 5) for _ in range(25)])

    report = ray.get(tiers.migrator.migrate.remote(10), timeout=120)
    window = report["hot_window"]
    assert window["days"] == 2 and "over its" in window["reason"]
    found = where_is(settings, ids)
    assert [found[i] for i in ids] == [["hot"] if a < 2 else ["warm"] for a in ages]

    # Searches plan with the new window: from 2.5 days back they ask warm too.
    tiers = TierHandles(settings)  # a fresh reader, not one holding the old window
    plan = asyncio.run(tiers.plan(now - timedelta(days=2.5), datetime.now(UTC), False))
    assert plan == ["hot", "warm"]
    assert asyncio.run(tiers.plan(now - timedelta(days=1), datetime.now(UTC), False)) == ["hot"]
    # New memories are placed by it too: 2.5 days old now goes to warm.
    late, _ = memories([2.5], now, rng, first=100)
    asyncio.run(tiers.insert(late, now))
    assert where_is(settings, late.column("id").to_pylist()) == {
        late.column("id")[0].as_py(): ["warm"]
    }

    # The window survives a restart of the migrator, and /v1/tiers' status shows it.
    saved = json.loads((settings.data_dir / "tiers" / "hot_window.json").read_text())
    assert saved["days"] == 2
    ray.kill(tiers.migrator, no_restart=False)
    status = ray.get(supervisor.migrator(settings).status.remote(), timeout=60)
    assert status["hot_window"]["days"] == 2 and status["last_pass"] is None
