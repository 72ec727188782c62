"""The metrics writer (the `timeseries` actor's class, run here without Ray) over a real DuckDB
store: read-your-writes, and a disk that fills up under it then frees space again.

The full disk is a real one: a 16 MiB tmpfs mounted for the test (CI runs as root), filled with a
file until writes get ENOSPC. A machine where it cannot be mounted fails the test, never skips it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from actors.timeseries import TimeseriesActor
from akasha_ray import config
from akasha_ray.errors import Unavailable
from akasha_ray.timeseries import MetricsQuery, Point, PointBatch, duckdb_store
from tests.servers.timeseries_suite import T0, assert_matches_pandas, random_points

SPAN = timedelta(hours=6)
START, END = T0 + timedelta(minutes=7, seconds=13), T0 + SPAN - timedelta(minutes=3)


def writer(data_dir: Path, **options) -> TimeseriesActor:
    settings = config.load(data_dir=data_dir, namespace="test-writer")
    return TimeseriesActor(config.to_dict(settings), options)


async def write(actor: TimeseriesActor, points: list[Point], written: list[Point]) -> None:
    assert await actor.write(PointBatch.from_points(points)) == len(points)
    written.extend(points)


async def until_status(actor: TimeseriesActor, status: str) -> dict:
    """Health, once it says `status` (polled: the flusher runs on its own schedule)."""
    for _ in range(400):
        health = await actor.health()
        if health["status"] == status:
            return health
        await asyncio.sleep(0.05)
    raise AssertionError(f"status never became {status!r}: {health}")


async def test_an_accepted_point_is_in_the_next_query(tmp_path):
    # A minute between flushes: everything below is answered from the store plus the buffer.
    actor = writer(tmp_path, flush_interval_s=60, flush_max_points=1_000_000)
    rng = random.Random(9)
    written: list[Point] = []
    try:
        first = random_points(rng, 1, T0 + timedelta(hours=1), timedelta(minutes=1))
        await write(actor, first, written)
        one = MetricsQuery(
            system_id=written[0].system_id,
            metric_name=written[0].metric_name,
            start=T0,
            end=T0 + SPAN,
            bucket="raw",
        )
        assert [b.count for b in await actor.query(one)] == [1]  # before any flush
        assert (await actor.health())["pending_points"] == 1

        await write(actor, random_points(rng, 600, T0, SPAN), written)
        await assert_matches_pandas(actor, written, START, END, "all buffered")

        await actor.refresh(T0 + timedelta(hours=5))  # flushes, then materializes rollups
        assert (await actor.health())["pending_points"] == 0
        # Buffered on top of materialized buckets, of not yet materialized ones, and late ones.
        await write(actor, random_points(rng, 200, T0, SPAN), written)
        await write(actor, random_points(rng, 50, T0, timedelta(hours=1)), written)
        assert (await actor.health())["pending_points"] == 250
        await assert_matches_pandas(actor, written, START, END, "stored and buffered")

        await actor.flush()
        await assert_matches_pandas(actor, written, START, END, "all flushed")
    finally:
        await actor.shutdown()


@pytest.fixture
def tmpfs(tmp_path) -> Iterator[Path]:
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"cannot mount a tmpfs (run as root): {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder` until writes fail with ENOSPC, then free `leave` bytes;
    returns the filler."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        size = 1 << 16
        while size:  # smaller and smaller writes, down to the last free byte
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                size //= 2
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    if leave:
        os.truncate(filler, filler.stat().st_size - leave)
    return filler


async def test_a_full_disk_keeps_points_until_there_is_room(tmpfs, tmp_path):
    # The store's disk fills up; the journal is on another one (see the test after this one).
    data, journal = tmpfs / "data", str(tmp_path / "journal")
    actor = writer(
        data,
        flush_interval_s=0.05,
        max_pending_points=2_000,
        shutdown_timeout_s=0.2,
        journal_dir=journal,
    )
    rng = random.Random(28)
    written: list[Point] = []
    try:
        await write(actor, random_points(rng, 300, T0, SPAN), written)
        await actor.flush()
        assert (await actor.health())["status"] == "ok"

        filler = fill(tmpfs)
        await write(actor, random_points(rng, 700, T0, SPAN), written)  # 202 still
        health = await until_status(actor, "failing")
        assert "No space left on device" in health["error"], health
        assert health["failing_since"] is not None and health["pending_points"] == 700
        assert health["writer"]["failures"] >= 1
        with pytest.raises(Unavailable, match="could not be written"):
            await actor.flush()
        # Accepted points are answered while the store fails.
        await assert_matches_pandas(actor, written, START, END, "disk full")
        await write(actor, random_points(rng, 1_000, T0, SPAN), written)
        with pytest.raises(Unavailable, match="No space left on device") as refused:
            await actor.write(PointBatch.from_points(random_points(rng, 301, T0, SPAN)))
        assert "retry later" in refused.value.message  # beyond max_pending_points: 503
        # A clean stop cannot save them: it says so, and the writer keeps them and goes on.
        with pytest.raises(Unavailable, match="1700 metric points could not be written"):
            await actor.shutdown()
        assert (await actor.health())["pending_points"] == 1_700

        filler.unlink()
        await actor.flush()  # retried now, not after the backoff
        health = await actor.health()
        assert health["status"] == "ok" and health["pending_points"] == 0, health
        assert health["error"] is None and health["writer"]["flushed"] == 2_000
        await assert_matches_pandas(actor, written, START, END, "room again")
    finally:
        await actor.shutdown()

    # Reopened from the file: every accepted point once, none twice.
    reopened = writer(data, journal_dir=journal)
    try:
        await assert_matches_pandas(reopened, written, START, END, "reopened")
    finally:
        await reopened.shutdown()


async def test_a_full_journal_disk_refuses_writes_and_keeps_what_it_acknowledged(tmpfs):
    # Store and journal on the same full disk (the default layout): no 202 without the journal.
    data = tmpfs / "data"
    actor = writer(data, flush_interval_s=0.05)
    rng = random.Random(5)
    written: list[Point] = []
    try:
        await write(actor, random_points(rng, 300, T0, SPAN), written)
        filler = fill(tmpfs)
        # Larger than the slack in the journal's last page, which a full tmpfs still has.
        with pytest.raises(Unavailable, match="metrics journal cannot be written"):
            await actor.write(PointBatch.from_points(random_points(rng, 5_000, T0, SPAN)))
        await assert_matches_pandas(actor, written, START, END, "refused while full")
        filler.unlink()
        await write(actor, random_points(rng, 50, T0, SPAN), written)
        await actor.flush()
        await assert_matches_pandas(actor, written, START, END, "room again")
    finally:
        await actor.shutdown()


async def test_a_checkpoint_that_fails_loses_nothing_and_stores_nothing_twice(
    tmpfs, tmp_path, monkeypatch
):
    # A checkpoint after every write, and room for a write's WAL but not for a checkpoint: DuckDB
    # invalidates the database after the commit succeeded. The write stands; the next one reopens.
    monkeypatch.setattr(duckdb_store, "_CHECKPOINT_WAL_BYTES", 1)
    data, journal = tmpfs / "data", str(tmp_path / "journal")
    actor = writer(data, flush_interval_s=0.05, journal_dir=journal)
    rng = random.Random(64)
    written: list[Point] = []
    try:
        await write(actor, random_points(rng, 300, T0, SPAN), written)
        await actor.flush()
        filler = fill(tmpfs, leave=64 << 10)
        await write(actor, random_points(rng, 50, T0, SPAN), written)
        await actor.flush()  # committed, then the checkpoint failed
        health = await actor.health()
        assert "Failed to create checkpoint" in health["invalidated"], health
        await assert_matches_pandas(actor, written, START, END, "invalidated")
        # The next writes reopen the file; they fail while there is no room for their WAL.
        await write(actor, random_points(rng, 50, T0, SPAN), written)
        health = await until_status(actor, "failing")
        assert health["invalidated"] is None and health["pending_points"] == 50, health
        filler.unlink()
        await actor.flush()
        assert (await actor.health())["status"] == "ok"
        await assert_matches_pandas(actor, written, START, END, "room again")
    finally:
        await actor.shutdown()
    reopened = writer(data, journal_dir=journal)
    try:
        await assert_matches_pandas(reopened, written, START, END, "reopened")
    finally:
        await reopened.shutdown()
