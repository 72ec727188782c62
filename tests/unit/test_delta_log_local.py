"""The Delta Lake change log on a local folder: one commit per shipment, re-sends skipped,
reads beyond given LSNs, time travel, a copied table."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from akasha_ray.replication import changes
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.delta_log import DeltaLog, LogGap


def change_rows(stream: str, lsns: Sequence[int], epoch: int = 1) -> pa.Table:
    """Tombstone changes (the payload names the LSN, so rows can be told apart)."""
    now = datetime.now(UTC)
    return pa.table(
        {
            "stream": [stream] * len(lsns),
            "lsn": list(lsns),
            "epoch": [epoch] * len(lsns),
            "at": [now] * len(lsns),
            "kind": ["delete"] * len(lsns),
            "system_id": ["sys"] * len(lsns),
            "payload": [changes.json_payload({"key": f"sys/{lsn}", "at": now}) for lsn in lsns],
        },
        schema=changes.SCHEMA,
    )


def lsns(table: pa.Table) -> list[tuple[str, int]]:
    return list(zip(table["stream"].to_pylist(), table["lsn"].to_pylist(), strict=True))


def table_version(log: DeltaLog) -> int:
    return DeltaTable(log.uri, storage_options=log.bucket.storage_options).version()


@pytest.fixture
def log(tmp_path: Path) -> DeltaLog:
    return DeltaLog(Bucket(str(tmp_path / "bucket")), "east")


def test_ship_read_versions(log: DeltaLog) -> None:
    assert log.versions() == {} and log.read().num_rows == 0 and log.last_commit() is None
    assert log.ship(change_rows("hot-1", []), epoch=1) == {} and log.last_commit() is None
    batch = pa.concat_tables([change_rows("keys", [1]), change_rows("hot-1", [3, 1, 2])])
    assert log.ship(batch, epoch=1) == {"hot-1": 3, "keys": 1}
    assert log.versions() == {"hot-1": 3, "keys": 1}
    assert log.version("hot-1") == 3 and log.version("metrics") == 0
    assert lsns(log.read()) == [("hot-1", 1), ("hot-1", 2), ("hot-1", 3), ("keys", 1)]
    assert lsns(log.read({"hot-1": 2})) == [("hot-1", 3), ("keys", 1)]
    assert lsns(log.read({"hot-1": 1, "keys": 1}, limit=1)) == [("hot-1", 2)]
    assert log.read().schema == changes.SCHEMA
    assert log.read()["payload"][0].as_py() == batch["payload"][2].as_py()  # hot-1 lsn 1


def test_commit_metadata_and_app_transactions(log: DeltaLog) -> None:
    log.ship(change_rows("hot-0", [1, 2]), epoch=3)
    log.ship(pa.concat_tables([change_rows("hot-0", [3]), change_rows("graph", [1, 2])]), 3)
    table = DeltaTable(log.uri)
    info = table.history(1)[0]
    assert info["akasha.epoch"] == "3" and info["akasha.source"] == "east"
    assert json.loads(info["akasha.lsn_ranges"]) == {"graph": [1, 2], "hot-0": [3, 3]}
    assert table.transaction_version("akasha:east:hot-0") == 3
    assert table.transaction_version("akasha:east:graph") == 2
    commit = log.last_commit()
    assert commit is not None and commit["epoch"] == 3 and commit["version"] == 1


def test_a_resent_batch_commits_nothing(log: DeltaLog) -> None:
    batch = change_rows("hot-0", [1, 2, 3])
    log.ship(batch, epoch=1)
    before = table_version(log)
    # A shipper that crashed between the commit and mark_shipped: a new one (no state) re-sends.
    assert DeltaLog(log.bucket, "east").ship(batch, epoch=1) == {"hot-0": 3}
    assert table_version(log) == before
    assert lsns(log.read()) == [("hot-0", 1), ("hot-0", 2), ("hot-0", 3)]


def test_an_overlapping_batch_ships_only_the_new_rows(log: DeltaLog) -> None:
    log.ship(change_rows("hot-0", [1, 2]), epoch=1)
    assert log.ship(change_rows("hot-0", [2, 3, 4]), epoch=1) == {"hot-0": 4}
    assert log.read()["lsn"].to_pylist() == [1, 2, 3, 4]
    assert json.loads(DeltaTable(log.uri).history(1)[0]["akasha.lsn_ranges"]) == {"hot-0": [3, 4]}


def test_bad_batches_are_refused(log: DeltaLog) -> None:
    log.ship(change_rows("hot-0", [1, 2]), epoch=1)
    with pytest.raises(LogGap, match="hot-0 holds LSNs up to 2, the batch starts at 4"):
        log.ship(change_rows("hot-0", [4]), epoch=1)
    with pytest.raises(ValueError, match="repeat"):
        log.ship(change_rows("hot-0", [3, 3]), epoch=1)
    with pytest.raises(ValueError, match="epoch above"):
        log.ship(change_rows("hot-0", [3], epoch=2), epoch=1)
    with pytest.raises(ValueError, match="lack columns"):
        log.ship(change_rows("hot-0", [3]).drop_columns(["payload"]), epoch=1)
    assert log.versions() == {"hot-0": 2}
    # A first shipment may start past 1 (the log before it is in a snapshot).
    assert log.ship(change_rows("metrics", [40, 41]), epoch=1)["metrics"] == 41


def test_concurrent_shippers_of_one_batch_commit_it_once(log: DeltaLog) -> None:
    log.ship(change_rows("hot-0", [1]), epoch=1)
    batch = pa.concat_tables([change_rows("hot-0", range(2, 50)), change_rows("keys", [1, 2])])
    start = threading.Barrier(4)
    results: list[dict[str, int]] = []

    def ship() -> None:
        shipper = DeltaLog(log.bucket, "east")
        start.wait()
        results.append(shipper.ship(batch, epoch=1))

    threads = [threading.Thread(target=ship) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [{"hot-0": 49, "keys": 2}] * 4
    assert log.read()["lsn"].to_pylist() == [*range(1, 50), 1, 2]
    assert table_version(log) == 1


def test_read_as_of(log: DeltaLog) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    log.ship(change_rows("hot-0", [1, 2]), epoch=1)
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    log.ship(change_rows("hot-0", [3]), epoch=1)
    assert log.read_as_of(before).num_rows == 0
    assert log.read_as_of(between)["lsn"].to_pylist() == [1, 2]
    assert log.read_as_of(between, after={"hot-0": 1})["lsn"].to_pylist() == [2]
    assert log.read_as_of(datetime.now(UTC))["lsn"].to_pylist() == [1, 2, 3]
    with pytest.raises(ValueError, match="timezone"):
        log.read_as_of(datetime.now())


def test_rows_survive_a_copy_of_the_table_folder(log: DeltaLog, tmp_path: Path) -> None:
    log.ship(change_rows("hot-0", [1, 2]), epoch=1)
    log.ship(change_rows("keys", [1]), epoch=1)
    shutil.copytree(tmp_path / "bucket", tmp_path / "copy")
    shutil.rmtree(tmp_path / "bucket")
    copy = DeltaLog(Bucket(str(tmp_path / "copy")), "east")
    assert lsns(copy.read()) == [("hot-0", 1), ("hot-0", 2), ("keys", 1)]
    assert copy.versions() == {"hot-0": 2, "keys": 1}


def test_limited_reads_agree_with_a_full_read(log: DeltaLog) -> None:
    for first in range(1, 40, 4):  # ten commits of four LSNs on two streams, one on a third
        log.ship(
            pa.concat_tables(
                [
                    change_rows("hot-0", range(first, first + 4)),
                    change_rows("hot-1", range(first, first + 4)),
                ]
            ),
            epoch=1,
        )
    log.ship(change_rows("keys", [1, 2, 3]), epoch=1)
    everything = lsns(log.read())
    assert len(everything) == 83
    for after in ({}, {"hot-0": 7}, {"hot-0": 40, "hot-1": 13}, {"hot-1": 2, "keys": 1}):
        full = lsns(log.read(after))
        for limit in (1, 3, 4, 5, 17, 40, 41, 100):
            assert lsns(log.read(after, limit)) == full[:limit], (after, limit)


def test_a_limited_read_opens_only_the_files_it_needs(log: DeltaLog) -> None:
    for first in range(1, 30, 5):
        log.ship(change_rows("hot-0", range(first, first + 5)), epoch=1)
    table = DeltaTable(log.uri)
    later = [
        a["path"]
        for a in pa.table(table.get_add_actions(flatten=True)).to_pylist()
        if a["min.lsn"] > 10
    ]
    for path in later:  # the files past LSN 10 are gone: only what a reader of 1..10 may touch
        (Path(log.uri) / path).unlink()
    assert log.read({"hot-0": 2}, limit=8)["lsn"].to_pylist() == list(range(3, 11))
    with pytest.raises(OSError):
        log.read({"hot-0": 2}, limit=9)


def test_compaction_keeps_rows_and_versions(log: DeltaLog) -> None:
    for first in range(1, 20, 2):
        log.ship(change_rows("hot-0", [first, first + 1]), epoch=1)
    DeltaTable(log.uri).optimize.compact()
    assert DeltaLog(log.bucket, "east").versions() == {"hot-0": 20}
    assert log.read({"hot-0": 5}, limit=3)["lsn"].to_pylist() == [6, 7, 8]
    assert log.ship(change_rows("hot-0", [19, 20, 21]), epoch=1) == {"hot-0": 21}
    assert log.read()["lsn"].to_pylist() == list(range(1, 22))


def test_compact_through_a_snapshot(log: DeltaLog) -> None:
    for first in range(1, 20, 2):
        log.ship(
            pa.concat_tables(
                [change_rows("hot-0", [first, first + 1]), change_rows("keys", [first, first + 1])]
            ),
            epoch=1,
        )
    done = log.compact({"hot-0": 15, "keys": 25, "metrics": 3}, keep_hours=0)
    assert done["deleted_rows"] == 15 + 19 and done["files_merged"] > 0
    assert log.versions() == {"hot-0": 20, "keys": 20}  # keys keeps its last row
    assert lsns(log.read()) == [*[("hot-0", n) for n in range(16, 21)], ("keys", 20)]
    assert log.compact({"hot-0": 15})["deleted_rows"] == 0  # repeated: nothing more
    assert log.ship(change_rows("keys", [20, 21]), epoch=1) == {"keys": 21}
    assert log.read({"hot-0": 20})["lsn"].to_pylist() == [20, 21]
    with pytest.raises(ValueError, match="stream names"):
        log.compact({"hot-0' OR true OR stream = '": 1})
    copy = DeltaLog(log.bucket, "east")  # what a fresh reader sees
    assert copy.versions() == {"hot-0": 20, "keys": 21}


def test_read_as_of_a_settled_time_resolves_it_once(log: DeltaLog) -> None:
    log.ship(change_rows("hot-0", [1, 2, 3]), epoch=1)
    history = DeltaTable.history
    calls: list[int] = []

    def counted(table: DeltaTable, limit: int | None = None) -> list:
        calls.append(1)
        return history(table, limit)

    later = datetime.now(UTC) + timedelta(hours=1)  # recent or ahead: never cached
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DeltaTable, "history", counted)
        for after in (0, 1, 2):
            assert log.read_as_of(later, {"hot-0": after}, limit=1)["lsn"].to_pylist() == [
                after + 1
            ]
        assert len(calls) == 3
        settled = datetime.now(UTC) - timedelta(hours=1)
        for _ in range(3):
            assert log.read_as_of(settled).num_rows == 0
        assert len(calls) == 4
