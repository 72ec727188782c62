"""Shipping between two real deployments: east (primary) and west (secondary) in one Ray
cluster, each with its own namespace, data dir and actors (hot shards, changelog, region
coordinators...), and a bucket per region (plus the backup's, holding the witness) on a real
SeaweedFS S3 endpoint. What east acknowledges reaches west's stores; sync mode answers a write
only once west's bucket holds it; west refuses writes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import ray

from actors import supervisor
from akasha_ray import config
from akasha_ray.errors import NotPrimary
from akasha_ray.identity import keys_of
from akasha_ray.memories import MemoryService
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.delta_log import DeltaLog
from tests.integration.test_memory_service import batch_of, systems_on_each_shard
from tests.servers import seaweedfs

pytestmark = pytest.mark.integration

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": seaweedfs.ACCESS_KEY,
    "AWS_SECRET_ACCESS_KEY": seaweedfs.SECRET_KEY,
    "AWS_REGION": seaweedfs.REGION,
}
WAIT_S = 240  # a bound on waiting (a loaded 2-core machine), never a measured figure


@dataclass
class World:
    east: config.Settings
    west: config.Settings
    endpoint: str


@pytest.fixture(scope="module")
def s3() -> Iterator[seaweedfs.S3Server]:
    with pytest.MonkeyPatch.context() as env:
        for name, value in CREDENTIALS.items():
            env.setenv(name, value)
        with seaweedfs.seaweedfs_server(bucket="dr-vault") as server:
            for name in ("dr-east", "dr-west"):
                server.client().create_bucket(Bucket=name)
            yield server


def regions_of(tmp_path, endpoint: str, here: str, mode: str) -> config.Settings:
    regions = [
        {"name": name, "role": role, "bucket": f"s3://dr-{name}/akasha", "endpoint_url": endpoint}
        for name, role in (("east", "primary"), ("west", "secondary"), ("vault", "backup"))
    ]
    return config.load(
        data_dir=tmp_path / here,
        namespace=f"test-{here}-{uuid.uuid4().hex[:8]}",
        serve={"request_timeout_s": 30},  # a loaded machine: a find asks every tier
        dr={
            "region": here,
            "regions": regions,
            "mode": mode,
            "ship_every_s": 0.2,
            "witness_check_s": 0.2,
            "sync_timeout_s": 30,
        },
    )


def start(settings: config.Settings) -> None:
    """Every actor of one deployment; the coordinators first, with the bucket credentials (the
    shared test cluster started without them)."""
    supervisor.changelog(settings)
    supervisor.regions(settings, env=CREDENTIALS)
    supervisor.start_all(settings)


@pytest.fixture(params=["async", "sync"])
def world(request, ray_cluster, s3, tmp_path, monkeypatch) -> Iterator[World]:
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    mode = request.param
    # Fresh buckets' contents per test: a prefix of its own.
    prefix = uuid.uuid4().hex[:6]
    east = regions_of(tmp_path, s3.endpoint_url, "east", mode)
    west = regions_of(tmp_path, s3.endpoint_url, "west", mode)
    east, west = (with_prefix(s, prefix) for s in (east, west))
    start(west)
    start(east)
    yield World(east, west, s3.endpoint_url)
    for settings in (east, west):
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == settings.namespace:
                ray.kill(ray.get_actor(actor["name"], namespace=settings.namespace))


def with_prefix(settings: config.Settings, prefix: str) -> config.Settings:
    dr = settings.dr.model_dump()
    for region in dr["regions"]:
        region["bucket"] = f"{region['bucket']}/{prefix}"
    return settings.model_copy(update={"dr": type(settings.dr).model_validate(dr)})


def until(check, what: str, world: World | None = None):
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}; {statuses(world)}")
        time.sleep(0.2)


def statuses(world: World | None) -> str:
    """Both coordinators' status, for a failure's message."""
    if world is None:
        return ""
    east = ray.get(coordinator(world.east, "west").status.remote(), timeout=30)
    west = ray.get(coordinator(world.west, "east").status.remote(), timeout=30)
    return f"east->west: {east}; west<-east: {west}"


def coordinator(settings: config.Settings, other: str):
    return ray.get_actor(f"region-{other}", namespace=settings.namespace)


def logged(settings: config.Settings) -> dict[str, int]:
    return ray.get(ray.get_actor("changelog", namespace=settings.namespace).last.remote())


def test_what_the_primary_acknowledges_reaches_the_secondary(world):
    east, west = world.east, world.west
    systems = systems_on_each_shard(east.hot.shards)
    batch, _ = batch_of(systems, 30)
    keys = keys_of(batch)
    writer = MemoryService(east)
    asyncio.run(writer.ingest(batch, {keys[0]: ["person:ada"]}))
    assert asyncio.run(writer.delete(keys[1]))
    last = logged(east)
    assert sum(last.values()) == len(systems) + 1  # one memories change per shard, one delete

    if east.dr.mode == "sync":
        # Answered only once another region's bucket held it (RPO 0): checked right after the
        # answers, in the bucket that got it.
        held = [
            DeltaLog(Bucket(r.bucket, world.endpoint), "east").versions() for r in east.dr.others()
        ]
        assert any(all(h.get(s, 0) >= n for s, n in last.items()) for h in held), (held, last)

    reader = MemoryService(west, log_changes=False)
    until(lambda: asyncio.run(reader.find(keys[-1])), "west holds the memories", world)
    until(lambda: not asyncio.run(reader.find(keys[1])), "west applied the delete")
    assert all(asyncio.run(reader.find(k)) for k in keys[2:])

    status = ray.get(coordinator(east, "west").status.remote())
    assert status["duty"] == "ship" and status["last_error"] is None
    until(
        lambda: ray.get(coordinator(east, "west").status.remote())["lag_changes"] == 0,
        "east reports nothing left to ship",
    )
    applied = until(
        lambda: (s := ray.get(coordinator(west, "east").status.remote()))["lag_changes"] == 0 and s,
        "west reports nothing left to apply",
    )
    assert applied["duty"] == "apply" and applied["applied"] == last
    # The backup region got the log too (it is shipped to every other region).
    vault = DeltaLog(Bucket(east.dr.witness_region().bucket, world.endpoint), "east")
    until(lambda: vault.versions() == last, "the backup bucket holds east's log")

    # The secondary takes no writes.
    other, _ = batch_of(systems, 2, tag="w")
    with pytest.raises(NotPrimary) as refused:
        asyncio.run(MemoryService(west).ingest(other))
    assert refused.value.primary == "east"
