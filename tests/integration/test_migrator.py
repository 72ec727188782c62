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
from akasha_ray import config
from akasha_ray.hot_window import HEADROOM, ShardLoad, budget
from akasha_ray.identity import keys_of, memory_key
from akasha_ray.memories import MemoryService
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


def where_is(settings, keys):
    """Each memory key's tiers: a memory must be in exactly one."""
    found: dict[str, list[str]] = {k: [] for k in keys}
    owners = [("hot", s) for s in supervisor.hot_shards(settings)]
    owners += [("warm", supervisor.warm(settings)), ("cold", supervisor.cold(settings))]
    for tier, owner in owners:
        for key in ray.get(owner.existing.remote(keys)):
            found[key].append(tier)
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
    ids = keys_of(batch)
    supervisor.start_all(settings)  # the migrator finds its peers by name
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
        assert memory_key(best["system_id"], best["id"]) == ids[i]
        assert best["content"] == f"memory {i}"
        assert best["similarity"] == pytest.approx(1.0, abs=1e-4)


def target_between(loads):
    """A p95 target every shard misses but could meet with fewer rows (see hot_window.budget)."""
    slowest_rest = max(max(0.0, x["p95_ms"] - x["scan_p95_ms"]) for x in loads)
    fastest = min(x["p95_ms"] for x in loads)
    low, high = slowest_rest / HEADROOM, fastest
    return (low + high) / 2 if low < high * 0.95 else None


def test_the_hot_window_shrinks_when_hot_search_misses_its_target(ray_cluster, settings):
    now = datetime.now(UTC)
    rng = np.random.default_rng(5)
    ages = rng.uniform(0, 6, 30_000)
    batch, vectors = memories(ages, now, rng)
    ids = keys_of(batch)
    shards = supervisor.hot_shards(settings)  # the rest starts below, with the target found
    put_in_hot(shards, batch)
    # Searches as users make them, timed by the shards; retried if this machine's noise leaves no
    # target between what does and does not grow with the rows (a loaded 2-core machine can
    # queue a search behind other work for longer than the scan itself: wait for a calmer moment).
    for attempt in range(15):
        if attempt:
            time.sleep(2)
        for shard in shards:
            ray.get(shard.reset_load.remote())
            ray.get([shard.search.remote(v, 10) for v in vectors[:30]])
        loads = ray.get([s.load.remote() for s in shards])
        target = target_between(loads)
        if target is not None:
            break
    if target is None:  # the rule cannot be judged here: say so (see the closing note of #13)
        pytest.skip(f"inconclusive on this machine, no target fits these loads: {loads}")
    # What the rule says the window must become, from the same measurements the migrator reads.
    budgets = [budget(ShardLoad(**x), target) for x in loads]
    cutoffs = ray.get([s.newest_beyond.remote(b) for s, b in zip(shards, budgets, strict=True)])
    expected_days = (datetime.now(UTC) - max(cutoffs)) / timedelta(days=1)

    settings = config.load(
        data_dir=settings.data_dir,
        namespace=settings.namespace,
        tiers={"hot_target_p95_ms": target, "hot_min_days": 0.01},
        serve={"request_timeout_s": 1},
    )
    supervisor.start_all(settings)  # the migrator, with that target
    tiers = MemoryService(settings)
    report = ray.get(tiers.peers.migrator.migrate.remote(), timeout=300)
    window = report["hot_window"]
    assert window["days"] == pytest.approx(expected_days, abs=0.01)
    assert window["days"] < 6 and "over its" in window["reason"]
    cut = now - timedelta(days=window["days"])
    found = where_is(settings, ids)
    created = batch.column("created_at").to_pylist()
    misplaced = [
        (i, c, found[i])
        for i, c in zip(ids, created, strict=True)
        if abs(c - cut) > timedelta(minutes=5) and found[i] != (["hot"] if c > cut else ["warm"])
    ]
    assert misplaced == []
    moved = sum(v["moved"] for k, v in report["moved"].items() if k.endswith("->warm"))
    assert moved == sum(1 for t in found.values() if t == ["warm"]) > 0

    # Searches plan with the new window, and new memories are placed by it.
    tiers = MemoryService(settings)  # a fresh reader, not one holding the old window
    outside = datetime.now(UTC) - timedelta(days=window["days"] + 0.5)
    assert asyncio.run(tiers.plan(outside, datetime.now(UTC), False)) == ["hot", "warm"]
    inside = datetime.now(UTC) - timedelta(days=window["days"] / 2)
    assert asyncio.run(tiers.plan(inside, datetime.now(UTC), False)) == ["hot"]
    late, _ = memories([window["days"] + 0.5], datetime.now(UTC), rng, first=10**6)
    asyncio.run(tiers.ingest(late, None, datetime.now(UTC)))
    [late_id] = keys_of(late)
    assert where_is(settings, [late_id]) == {late_id: ["warm"]}

    # The window survives a restart of the migrator, and its status (in /v1/tiers) shows it.
    saved = json.loads((settings.data_dir / "tiers" / "hot_window.json").read_text())
    assert saved["days"] == window["days"]
    ray.kill(tiers.peers.migrator, no_restart=False)
    status = ray.get(supervisor.migrator(settings).status.remote(), timeout=60)
    assert status["hot_window"]["days"] == window["days"] and status["last_pass"] is None
