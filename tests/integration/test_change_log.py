"""The write path logs every acknowledged memory change, and only the primary takes writes.

Real actors on a local Ray cluster: the memory service, the hot shards and the `changelog` actor
with its DuckDB file. No other region runs here: shipping is tested elsewhere.
"""

from __future__ import annotations

import asyncio

import pytest
import ray

from actors import supervisor
from akasha_ray.errors import NotPrimary
from akasha_ray.identity import keys_of
from akasha_ray.memories import MemoryService
from akasha_ray.replication import changes
from akasha_ray.routing import shard_for
from tests.integration.test_memory_service import batch_of, systems_on_each_shard

pytestmark = pytest.mark.integration


def with_regions(settings, this: str = "east"):
    regions = [
        {"name": "east", "role": "primary", "bucket": str(settings.data_dir / "b-east")},
        {"name": "west", "role": "secondary", "bucket": str(settings.data_dir / "b-west")},
    ]
    dr = {"region": this, "regions": regions}
    return settings.model_copy(update={"dr": type(settings.dr).model_validate(dr)})


def logged(settings):
    log = ray.get_actor("changelog", namespace=settings.namespace)
    return ray.get(log.read.remote({}, 10_000))


def test_every_acknowledged_memory_change_is_logged_on_its_shards_stream(ray_cluster, settings):
    settings = with_regions(settings)
    supervisor.start_all(settings)
    systems = systems_on_each_shard(settings.hot.shards)
    batch, _ = batch_of(systems, 40)
    service = MemoryService(settings)
    asyncio.run(service.ingest(batch, {keys_of(batch)[0]: ["alice"]}))
    asyncio.run(service.ingest(batch))  # the same batch again: stored once, logged again
    key = keys_of(batch)[1]
    assert asyncio.run(service.delete(key))

    rows = logged(settings)
    kinds = rows["kind"].to_pylist()
    assert kinds.count("memories") == 2 * len(systems) and kinds.count("delete") == 1
    for stream, kind, system, payload in zip(
        *(rows[c].to_pylist() for c in ("stream", "kind", "system_id", "payload")), strict=True
    ):
        assert stream == changes.memory_stream(shard_for(system, settings.hot.shards))
        value = changes.decode(kind, payload)
        if kind == "memories":
            assert set(value["system_id"].to_pylist()) == {system}
        else:
            assert value["key"] == key
    shipped = changes.decode("memories", rows["payload"][0].as_py())
    assert shipped.num_rows == 40 // len(systems)
    by_stream: dict[str, list[int]] = {}
    for stream, lsn in zip(rows["stream"].to_pylist(), rows["lsn"].to_pylist(), strict=True):
        by_stream.setdefault(stream, []).append(lsn)
    assert all(lsns == list(range(1, len(lsns) + 1)) for lsns in by_stream.values())
    first = [  # the first ingest's changes: the ones with links
        changes.decode("memories", p.as_py())
        for p, k, n in zip(rows["payload"], kinds, rows["lsn"].to_pylist(), strict=True)
        if k == "memories" and n == 1
    ]
    links = {
        key: e for t in first for key, e in zip(keys_of(t), t["entities"].to_pylist(), strict=True)
    }
    assert links[keys_of(batch)[0]] == ["alice"]


def test_a_region_that_is_not_primary_stores_nothing_and_names_the_primary(ray_cluster, settings):
    settings = with_regions(settings, this="west")
    supervisor.start_all(settings)
    batch, _ = batch_of(systems_on_each_shard(settings.hot.shards), 10)
    service = MemoryService(settings)
    with pytest.raises(NotPrimary) as refused:
        asyncio.run(service.ingest(batch))
    assert refused.value.primary == "east"
    assert refused.value.status_code == 503
    shards = supervisor.hot_shards(settings)
    assert all(ray.get(s.existing.remote(keys_of(batch))) == {} for s in shards)
    assert logged(settings).num_rows == 0

    # The witness names this region: it takes writes from now on, under the new epoch.
    log = ray.get_actor("changelog", namespace=settings.namespace)
    assert ray.get(log.set_state.remote(2, "west"))["fenced"] is False
    service = MemoryService(settings)
    asyncio.run(service.ingest(batch))
    assert set(logged(settings)["epoch"].to_pylist()) == {2}


def test_with_dr_off_nothing_is_logged_and_no_changelog_runs(ray_cluster, settings):
    supervisor.start_all(settings)
    batch, _ = batch_of(systems_on_each_shard(settings.hot.shards), 10)
    asyncio.run(MemoryService(settings).ingest(batch))
    with pytest.raises(ValueError):
        ray.get_actor("changelog", namespace=settings.namespace)


def test_changes_every_other_region_holds_are_compacted_away(ray_cluster, settings):
    settings = with_regions(settings)
    supervisor.start_all(settings)
    log = ray.get_actor("changelog", namespace=settings.namespace)
    entry = ("graph", "delete_entity", None, changes.json_payload({"entity_id": "e"}))
    ray.get(log.append.remote([entry] * 5))
    ray.get(log.mark_shipped.remote("west", {"graph": 3}))
    assert ray.get(log.shipped_everywhere.remote()) == {"graph": 3}
    assert ray.get(log.compact_shipped.remote()) == 3
    assert ray.get(log.read.remote({}, 100))["lsn"].to_pylist() == [4, 5]
    assert ray.get(log.last.remote()) == {"graph": 5}
