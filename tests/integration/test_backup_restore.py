"""Backup and restore on real stores: a deployment (Ray actors, DuckDB shards, Milvus Lite, the
cold archive, graph, metrics, keys) is snapshotted into a bucket (a folder, and a real SeaweedFS
S3 endpoint), its later changes go to the Delta log, and an empty deployment restored from both
holds the same data and gives the same answers."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
import ray

from actors import supervisor
from akasha_ray import config
from akasha_ray.errors import Conflict, InvalidInput
from akasha_ray.memories import MemoryService
from akasha_ray.records import vectors_of
from akasha_ray.replication import changes, snapshot
from akasha_ray.replication.apply import Applier
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.bundle import export, import_bundle
from akasha_ray.replication.delta_log import DeltaLog
from akasha_ray.replication.restore import restore
from akasha_ray.replication.rows import change_rows
from akasha_ray.timeseries import PointBatch
from akasha_ray.timeseries.models import Point
from tests.integration.dr_world import NOW, held, memories, prefix, world
from tests.servers import seaweedfs

pytestmark = pytest.mark.integration


@pytest.fixture
def other(tmp_path) -> Iterator[config.Settings]:
    """A second, empty deployment in the same Ray cluster: its own namespace and data dir."""
    isolated = config.load(
        data_dir=tmp_path / "other",
        namespace=f"test-{uuid.uuid4().hex[:8]}",
        serve={"request_timeout_s": 1},
    )
    yield isolated
    if ray.is_initialized():
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == isolated.namespace:
                ray.kill(ray.get_actor(actor["name"], namespace=isolated.namespace))


@pytest.fixture(params=["folder", "seaweedfs"])
def bucket(request, tmp_path) -> Iterator[Bucket]:
    if request.param == "folder":
        yield Bucket(str(tmp_path / "bucket"))
        return
    with seaweedfs.seaweedfs_with_credentials("akasha-dr") as server:
        yield Bucket(f"s3://{server.bucket}/backup", server.endpoint_url)


def the_log(shards: int) -> pa.Table:
    """The world's changes plus a second metrics batch, as a primary's log would hold them."""
    points = [
        Point(
            timestamp=NOW + timedelta(minutes=5),
            system_id="beta",
            metric_name="latency_ms",
            value=99.0,
        )
    ]
    more = change_rows(
        [
            (
                changes.METRICS,
                2,
                "metrics",
                "beta",
                changes.table_payload(PointBatch.from_points(points).table),
            )
        ],
        epoch=1,
    )
    return pa.concat_tables([world(shards), more])


def aged(settings) -> None:
    """Memories old enough for warm and for cold, through the write path."""
    service = MemoryService(settings, log_changes=False)
    for tag, days in (("w", 30), ("c", 200)):
        batch = memories("alpha", 5, tag=tag, seed=days)
        created = pa.array(
            [datetime.now(UTC) - timedelta(days=days, seconds=i) for i in range(5)],
            pa.timestamp("us", tz="UTC"),
        )
        batch = batch.set_column(batch.schema.get_field_index("created_at"), "created_at", created)
        from akasha_ray.records import with_content_hashes

        batch = with_content_hashes(batch.drop_columns(["content_hash"]))
        asyncio.run(service.ingest(batch))


def search(settings, vector) -> list[tuple[str, str]]:
    found = asyncio.run(
        MemoryService(settings, log_changes=False).search(
            vector, 8, None, None, None, include_cold=True
        )
    )
    return [(h["system_id"], h["id"]) for h in found.hits]


def without_admin(state: dict) -> dict:
    return {
        **state,
        "keys": {k: v for k, v in state["keys"].items() if k == "kid_00112233445566ff"},
    }


def test_backup_then_restore_into_an_empty_deployment(
    ray_cluster, settings, other, bucket, monkeypatch
):
    monkeypatch.setattr(snapshot, "WARM_LISTING", 2)  # warm's 5 memories: listed by windows
    supervisor.start_all(settings)
    log = the_log(settings.hot.shards)
    first = prefix(log)  # before the snapshot
    applier = Applier(settings, source="east")
    asyncio.run(applier.apply(first))
    aged(settings)

    manifest = asyncio.run(snapshot.take(settings, bucket, region="east"))
    assert manifest["counts"]["memories"] == 2 * 20 + 10 and manifest["counts"]["key"] == 1
    # This deployment has DR off (no change log): say what the snapshot covered, as a primary's
    # log position would.
    manifest["versions"] = {
        s: max(
            n
            for t, n in zip(first["stream"].to_pylist(), first["lsn"].to_pylist(), strict=True)
            if t == s
        )
        for s in set(first["stream"].to_pylist())
    }
    key = f"{snapshot.ROOT}/east/{manifest['id']}/{snapshot.MANIFEST}"
    bucket.put(key, json.dumps(manifest).encode())
    DeltaLog(bucket, "east").ship(log, epoch=1)  # the whole log; the restore reads after it
    asyncio.run(applier.apply(log))  # the source goes on: deletes, a relationship, a revoke

    supervisor.start_all(other)
    report = asyncio.run(restore(other, bucket, "east"))
    assert report["snapshot"] == manifest["id"]
    assert report["log_changes"] == log.num_rows - first.num_rows
    source, restored = without_admin(held(settings)), without_admin(held(other))
    assert restored == source
    assert any(v.startswith("warm:") for v in restored["memories"].values())
    assert any(v.startswith("cold:") for v in restored["memories"].values())
    vector = vectors_of(memories("alpha", 3, seed=len("alpha")))[2]
    assert search(other, vector) == search(settings, vector)
    assert search(other, vector)[0] == ("alpha", "m-2")

    with pytest.raises(Conflict):  # a restore adds: never into a deployment in use
        asyncio.run(restore(other, bucket, "east"))


def test_restore_as_of_reads_the_log_as_it_was(ray_cluster, settings, tmp_path):
    bucket = Bucket(str(tmp_path / "bucket"))
    log = the_log(settings.hot.shards)
    delta = DeltaLog(bucket, "east")
    delta.ship(prefix(log), epoch=1)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    delta.ship(log, epoch=1)

    supervisor.start_all(settings)
    report = asyncio.run(restore(settings, bucket, "east", as_of=between))
    assert report["snapshot"] is None and report["log_changes"] == 5
    state = held(settings)
    assert "alpha/m-19" in state["memories"] and not state["buried"]  # the delete came later
    assert state["keys"]["kid_00112233445566ff"][1] is None  # not yet revoked


def test_export_then_import_one_system(ray_cluster, settings, other, tmp_path):
    supervisor.start_all(settings)
    asyncio.run(Applier(settings, source="east").apply(the_log(settings.hot.shards)))
    aged(settings)  # alpha's warm and cold memories travel too
    tar = tmp_path / "alpha.tar"
    manifest = asyncio.run(export(settings, "alpha", tar))
    assert manifest["counts"]["memories"] == 19 + 10 and manifest["counts"]["delete"] == 1
    assert "key" not in manifest["counts"]  # keys are the deployment's

    supervisor.start_all(other)
    report = asyncio.run(import_bundle(other, tar))
    assert report["skipped_conflicts"] == 0
    source, imported = held(settings), held(other)
    of_alpha = {k: v for k, v in source["memories"].items() if k.startswith("alpha/")}
    assert imported["memories"] == of_alpha
    assert imported["buried"] == {"alpha/m-19"}
    assert imported["points"] == [p for p in source["points"] if p[1] == "alpha"]
    assert {e["id"] for e in imported["graph"]["entities"]} == {"person:ada", "acme"}
    assert imported["graph"]["links"] == {
        k: v for k, v in source["graph"]["links"].items() if k.startswith("alpha/")
    }
    assert "kid_00112233445566ff" not in imported["keys"]

    asyncio.run(import_bundle(other, tar))  # twice is once
    assert held(other) == imported

    # A folder bundle of beta, whose memories clash with what `other` now holds under beta.
    folder = tmp_path / "beta"
    asyncio.run(export(settings, "beta", folder))
    clash = memories("beta", 2, says="differs")
    asyncio.run(MemoryService(other, log_changes=False).ingest(clash))
    with pytest.raises(Conflict):
        asyncio.run(import_bundle(other, folder))
    assert not [k for k in held(other)["memories"] if k.startswith("beta/m-2")]  # nothing written
    report = asyncio.run(import_bundle(other, folder, on_conflict="skip"))
    assert report["skipped_conflicts"] == 2
    beta = {k: v for k, v in held(other)["memories"].items() if k.startswith("beta/")}
    assert len(beta) == 19 and beta["beta/m-0"] == clash["content_hash"][0].as_py()


def test_a_bundle_that_is_not_one_is_refused(ray_cluster, settings, tmp_path):
    supervisor.start_all(settings)
    bogus = tmp_path / "x.tar"
    bogus.write_bytes(b"not a tar")
    with pytest.raises(InvalidInput):
        asyncio.run(import_bundle(settings, bogus))
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "manifest.json").write_text(
        json.dumps({"format": 1, "kind": "akasha-export", "system_id": "a", "parts": ["../x"]})
    )
    with pytest.raises(InvalidInput):
        asyncio.run(import_bundle(settings, folder))
