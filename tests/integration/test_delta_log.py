"""The Delta Lake change log in a real SeaweedFS bucket: one commit per shipment, re-sends and
crash re-sends skipped, concurrent shippers, time travel, a copied table; the bucket's objects
and compare-and-swap against the real server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from akasha_ray.errors import Unavailable
from akasha_ray.replication.bucket import Backoff, Bucket, CasFailed
from akasha_ray.replication.delta_log import DeltaLog
from tests.servers import seaweedfs
from tests.servers.flaky_proxy import flaky_proxy
from tests.unit.test_delta_log_local import change_rows, lsns

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[seaweedfs.S3Server]:
    with seaweedfs.seaweedfs_with_credentials("akasha-dr") as server:
        yield server


@pytest.fixture
def bucket(s3: seaweedfs.S3Server) -> Bucket:
    return Bucket(f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}", s3.endpoint_url)


def test_objects_and_compare_and_swap(bucket: Bucket, s3: seaweedfs.S3Server) -> None:
    assert bucket.get("a/x") is None and bucket.list() == []
    bucket.put("a/x", b"one")
    bucket.put("b", b"two")
    assert bucket.get("a/x") == b"one" and bucket.list() == ["a/x", "b"]
    assert bucket.list("a/") == ["a/x"]
    keys = s3.client().list_objects_v2(Bucket=s3.bucket, Prefix=bucket.prefix)["Contents"]
    assert sorted(item["Key"] for item in keys) == [f"{bucket.prefix}/a/x", f"{bucket.prefix}/b"]
    first = bucket.put_if("w", b"1", None)
    with pytest.raises(CasFailed, match=f"{bucket.url} at {s3.endpoint_url}"):
        bucket.put_if("w", b"2", None)
    second = bucket.put_if("w", b"2", first)
    with pytest.raises(CasFailed):
        bucket.put_if("w", b"3", first)
    assert bucket.get_blob("w") is not None and bucket.get_blob("w").etag == second  # type: ignore[union-attr]
    bucket.delete("b")
    assert bucket.list() == ["a/x", "w"]


def test_ship_read_and_resend(bucket: Bucket) -> None:
    log = DeltaLog(bucket, "east")
    assert log.ship(pa.concat_tables([change_rows("hot-0", [1, 2]), change_rows("keys", [1])]), 2)
    assert log.ship(change_rows("hot-0", [3]), epoch=2) == {"hot-0": 3}
    table = DeltaTable(log.uri, storage_options=bucket.storage_options)
    assert table.version() == 1
    assert table.history(1)[0]["akasha.epoch"] == "2"
    # Re-sent by a fresh shipper (one that crashed between the commit and mark_shipped).
    again = DeltaLog(bucket, "east")
    assert again.ship(change_rows("hot-0", [1, 2, 3]), epoch=2) == {"hot-0": 3}
    assert again.ship(change_rows("keys", [1]), epoch=2) == {"keys": 1}
    table.update_incremental()
    assert table.version() == 1
    assert again.versions() == {"hot-0": 3, "keys": 1}
    assert lsns(again.read({"hot-0": 1})) == [("hot-0", 2), ("hot-0", 3), ("keys", 1)]


def test_concurrent_shippers_commit_a_batch_once(bucket: Bucket) -> None:
    DeltaLog(bucket, "east").ship(change_rows("hot-0", [1]), epoch=1)
    batch = change_rows("hot-0", range(2, 30))
    start = threading.Barrier(3)
    results: list[dict[str, int]] = []

    def ship() -> None:
        shipper = DeltaLog(bucket, "east")
        start.wait()
        results.append(shipper.ship(batch, epoch=1))

    threads = [threading.Thread(target=ship) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"hot-0": 29}] * 3
    assert DeltaLog(bucket, "east").read()["lsn"].to_pylist() == list(range(1, 30))


def test_read_as_of_and_a_copied_table(bucket: Bucket, s3: seaweedfs.S3Server) -> None:
    log = DeltaLog(bucket, "east")
    log.ship(change_rows("hot-0", [1, 2]), epoch=1)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    log.ship(change_rows("hot-0", [3]), epoch=1)
    assert log.read_as_of(between)["lsn"].to_pylist() == [1, 2]
    # Copy every object of the table under another prefix: the log's paths are relative.
    client = s3.client()
    copy = Bucket(f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}", s3.endpoint_url)
    for key in bucket.list("akasha-dr/log/east/"):
        client.copy_object(
            Bucket=s3.bucket,
            Key=f"{copy.prefix}/{key}",
            CopySource={"Bucket": s3.bucket, "Key": f"{bucket.prefix}/{key}"},
        )
    copied = DeltaLog(copy, "east")
    assert copied.read()["lsn"].to_pylist() == [1, 2, 3]
    assert copied.versions() == {"hot-0": 3}


def test_a_link_down_for_a_moment_is_ridden_out(s3: seaweedfs.S3Server) -> None:
    with flaky_proxy(s3.endpoint_url) as proxy:
        backoff = Backoff(attempts=6, base_s=0.2, cap_s=1.0)
        bucket = Bucket(f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}", proxy.url, backoff=backoff)
        log = DeltaLog(bucket, "east")
        log.ship(change_rows("hot-0", [1]), epoch=1)
        proxy.down()
        threading.Timer(0.8, proxy.up).start()
        assert log.ship(change_rows("hot-0", [2, 3]), epoch=1) == {"hot-0": 3}
        assert proxy.refused > 0
        assert log.read()["lsn"].to_pylist() == [1, 2, 3]


def test_a_link_down_for_long_is_unavailable_then_the_same_shipment_lands_once(
    s3: seaweedfs.S3Server,
) -> None:
    with flaky_proxy(s3.endpoint_url) as proxy:
        fast = Backoff(attempts=2, base_s=0.05, cap_s=0.05)
        bucket = Bucket(f"s3://{s3.bucket}/{uuid.uuid4().hex[:8]}", proxy.url, backoff=fast)
        log = DeltaLog(bucket, "east")
        log.ship(change_rows("hot-0", [1]), epoch=1)
        proxy.down()
        with pytest.raises(Unavailable, match=f"{bucket.url} at {proxy.url}"):
            log.ship(change_rows("hot-0", [2, 3]), epoch=1)
        with pytest.raises(Unavailable, match=f"{bucket.url} at {proxy.url}"):
            bucket.get("akasha-dr/witness.json")
        proxy.up()
        assert log.ship(change_rows("hot-0", [2, 3]), epoch=1) == {"hot-0": 3}
        assert log.ship(change_rows("hot-0", [2, 3]), epoch=1) == {"hot-0": 3}
        assert log.read()["lsn"].to_pylist() == [1, 2, 3]


def test_limited_reads_and_compaction(bucket: Bucket) -> None:
    log = DeltaLog(bucket, "east")
    for n, first in enumerate(range(1, 13, 3), start=1):
        batch = [change_rows("hot-0", range(first, first + 3)), change_rows("keys", [n])]
        log.ship(pa.concat_tables(batch), epoch=1)
    assert lsns(log.read({"hot-0": 2}, limit=5)) == [("hot-0", n) for n in range(3, 8)]
    done = log.compact({"hot-0": 9, "keys": 10}, keep_hours=0)
    assert done["deleted_rows"] == 9 + 3 and done["files_removed"] > 0
    fresh = DeltaLog(bucket, "east")
    assert fresh.versions() == {"hot-0": 12, "keys": 4}
    assert lsns(fresh.read()) == [("hot-0", 10), ("hot-0", 11), ("hot-0", 12), ("keys", 4)]
    assert fresh.ship(change_rows("hot-0", [12, 13]), epoch=1) == {"hot-0": 13}
