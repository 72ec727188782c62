"""Snapshot and bundle files without Ray: parts and manifests in a folder bucket, the newest
finished snapshot at or before a time, bundles refused when they are not ours, CLI arguments."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from akasha_ray.errors import InvalidInput
from akasha_ray.replication import bundle, changes, commands, snapshot
from akasha_ray.replication.bucket import Bucket

T0 = datetime(2026, 11, 28, 12, tzinfo=UTC)


def write(bucket: Bucket, region: str, at: datetime, rows: int, finished: bool = True) -> dict:
    writer = snapshot.PartWriter(bucket, f"{snapshot.ROOT}/{region}/{snapshot.new_id(at)}")
    for i in range(rows):
        writer.add(changes.KEYS, "key", None, changes.json_payload({"i": i}), 1)
    writer.flush()
    manifest = {
        "format": snapshot.FORMAT,
        "id": writer.prefix.rsplit("/", 1)[1],
        "region": region,
        "epoch": 1,
        "at": at.isoformat(),
        "finished_at": (at + timedelta(seconds=1)).isoformat(),
        "versions": {changes.KEYS: rows},
        "parts": writer.parts,
        "counts": writer.counts,
    }
    if finished:
        bucket.put(f"{writer.prefix}/{snapshot.MANIFEST}", json.dumps(manifest).encode())
    return manifest


def test_latest_is_the_newest_finished_snapshot_at_or_before_a_time(tmp_path):
    bucket = Bucket(str(tmp_path))
    assert snapshot.latest(bucket, "east") is None
    first = write(bucket, "east", T0, 3)
    second = write(bucket, "east", T0 + timedelta(hours=1), 5)
    write(bucket, "east", T0 + timedelta(hours=2), 7, finished=False)  # no manifest: unfinished
    write(bucket, "west", T0 + timedelta(hours=3), 1)
    assert snapshot.latest(bucket, "east")["id"] == second["id"]
    assert snapshot.latest(bucket, "east", T0 + timedelta(minutes=30))["id"] == first["id"]
    assert snapshot.latest(bucket, "east", T0) is None  # the first finished a second later
    rows = list(snapshot.load(bucket, second))
    assert sum(t.num_rows for t in rows) == 5
    assert rows[0]["lsn"].to_pylist() == [1, 2, 3, 4, 5]
    assert rows[0].schema == changes.SCHEMA


def test_parts_split_by_size(tmp_path, monkeypatch):
    monkeypatch.setattr(snapshot, "PART_BYTES", 100)
    bucket = Bucket(str(tmp_path))
    writer = snapshot.PartWriter(bucket, "p")
    for _ in range(10):
        writer.add("graph", "entities", None, b"x" * 60, 1)
    writer.flush()
    assert writer.parts == [f"part-{i:05d}.parquet" for i in range(5)]
    assert writer.counts == {"entities": 10}


def test_a_bundle_must_be_ours_and_name_parts_inside_itself(tmp_path):
    with pytest.raises(InvalidInput):
        bundle.read(tmp_path / "absent.tar")
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "other", "format": 1}))
    with pytest.raises(InvalidInput):
        bundle.read(tmp_path)
    ours = {"kind": bundle.KIND, "format": bundle.FORMAT, "system_id": "a", "parts": ["/etc/x"]}
    (tmp_path / "manifest.json").write_text(json.dumps(ours))
    _, parts = bundle.read(tmp_path)
    with pytest.raises(InvalidInput):
        list(parts())


def test_restore_finds_the_only_region_and_reads_times(tmp_path):
    bucket = Bucket(str(tmp_path))
    with pytest.raises(InvalidInput):
        commands._only_region(bucket)
    write(bucket, "east", T0, 1)
    assert commands._only_region(bucket) == "east"
    write(bucket, "west", T0, 1)
    with pytest.raises(InvalidInput):
        commands._only_region(bucket)
    assert commands._time("2026-11-28T12:00:00Z") == T0
    with pytest.raises(InvalidInput):
        commands._time("2026-11-28T12:00:00")
    with pytest.raises(InvalidInput):
        commands._time("yesterday")
