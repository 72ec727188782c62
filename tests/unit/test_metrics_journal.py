"""The metrics writer's journal: what a 202 promises (the points are on disk) through `kill -9`,
a torn append, a range in flight when the process died, and segments that come and go."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from actors.timeseries import JOURNAL_DIR, TimeseriesActor
from akasha_ray import config
from akasha_ray.errors import Unavailable
from akasha_ray.timeseries import Point, PointBatch, TimeseriesOptions, duckdb_path
from akasha_ray.timeseries.batcher import WriteBatcher
from akasha_ray.timeseries.duckdb_store import DuckDBStore
from akasha_ray.timeseries.journal import PointJournal
from tests.servers.timeseries_suite import T0, assert_matches_pandas, random_points

SPAN = timedelta(hours=6)
START, END = T0 + timedelta(minutes=7, seconds=13), T0 + SPAN - timedelta(minutes=3)


def batches(seed: int, count: int, size: int = 20) -> list[PointBatch]:
    rng = random.Random(seed)
    return [PointBatch.from_points(random_points(rng, size, T0, SPAN)) for _ in range(count)]


async def put(journal: PointJournal, batch: PointBatch) -> int:
    seq, mark = journal.append(batch)
    await journal.durable(mark)
    return seq


async def test_recovery_returns_the_range_in_flight_with_its_token_and_what_follows(tmp_path):
    journal = PointJournal(tmp_path)
    assert journal.recover().entries == []
    sent = batches(1, 5)
    seqs = [await put(journal, b) for b in sent]
    assert seqs == [1, 2, 3, 4, 5]
    await journal.flushing(1, 2, "t-one")
    await journal.flushed(2)
    await journal.flushing(3, 4, "t-two")
    journal.close()

    again = PointJournal(tmp_path).recover()
    assert again.in_flight == (3, 4, "t-two")
    assert [seq for seq, _ in again.entries] == [3, 4, 5]
    assert [b.table for _, b in again.entries] == [b.table for b in sent[2:]]


def test_many_concurrent_writers_share_fsyncs_and_all_return(tmp_path):
    """Writers that come while a shared fdatasync finishes wait for the next one. (The sync
    once stayed installed after it finished until its starter resumed; a writer coming in
    between awaited the finished future without yielding and spun forever: the event loop,
    here in a thread of its own so that a spin fails the test instead of hanging it.)"""
    journal = PointJournal(tmp_path, segment_bytes=64 * 1024)  # roll-overs on the way, too
    journal.recover()
    sent = batches(seed=5, count=8, size=5)

    async def writer(n: int) -> list[int]:
        seqs = []
        for i in range(15):
            seqs.append(await put(journal, sent[(n + i) % len(sent)]))
            await asyncio.sleep(random.Random(n * 100 + i).choice([0, 0, 0.001]))
        return seqs

    async def all_writers() -> list[int]:
        return [seq for seqs in await asyncio.gather(*map(writer, range(40))) for seq in seqs]

    done: list = []
    thread = threading.Thread(target=lambda: done.append(asyncio.run(all_writers())), daemon=True)
    thread.start()
    thread.join(60)
    assert done, "the writers did not all return within 60 s (an event loop that spins)"
    assert sorted(done[0]) == list(range(1, 601))
    journal.close()
    assert [seq for seq, _ in PointJournal(tmp_path).recover().entries] == list(range(1, 601))


async def test_a_torn_append_is_cut_off_and_appends_go_on(tmp_path):
    journal = PointJournal(tmp_path)
    journal.recover()
    sent = batches(2, 3)
    for b in sent:
        await put(journal, b)
    journal.close()
    segment = sorted(tmp_path.glob("*.wal"))[-1]
    whole = segment.stat().st_size
    with segment.open("ab") as file:  # a crash halfway through a fourth append
        file.write(b"\x40\x00\x00\x00\x12\x34\x56\x78half a record")

    reopened = PointJournal(tmp_path)
    assert [seq for seq, _ in reopened.recover().entries] == [1, 2, 3]
    assert segment.stat().st_size == whole
    assert await put(reopened, sent[0]) == 4
    reopened.close()
    assert [seq for seq, _ in PointJournal(tmp_path).recover().entries] == [1, 2, 3, 4]


async def test_segments_roll_over_and_go_once_flushed(tmp_path):
    journal = PointJournal(tmp_path, segment_bytes=4096)
    journal.recover()
    sent = batches(3, 40)
    seqs = await asyncio.gather(*(put(journal, b) for b in sent[:20]))  # share fsyncs
    seqs += [await put(journal, b) for b in sent[20:]]
    assert sorted(seqs) == list(range(1, 41))
    before = len(list(tmp_path.glob("*.wal")))
    assert before > 3
    await journal.flushing(1, 30, "t")
    await journal.flushed(30)
    journal.close()
    recovered = PointJournal(tmp_path).recover()
    assert [seq for seq, _ in recovered.entries] == list(range(31, 41))
    assert recovered.in_flight is None
    # The segments holding only flushed entries are gone (recovery opened one more).
    assert not (tmp_path / "000000000001.wal").exists()
    assert len(list(tmp_path.glob("*.wal"))) < before


async def test_a_range_committed_before_the_crash_is_not_stored_twice(tmp_path):
    # The store committed the range in flight, the process died before `flushed`: recovery
    # sends it again under the same token, which the store recognises.
    store = await DuckDBStore.open(duckdb_path(tmp_path), TimeseriesOptions())
    journal = PointJournal(tmp_path / "journal")
    journal.recover()
    sent = batches(4, 6)
    for b in sent:
        await put(journal, b)
    await journal.flushing(1, 4, "in-flight")
    await store.write(PointBatch.concat(sent[:4]), "in-flight")
    journal.close()

    journal = PointJournal(tmp_path / "journal")
    batcher = WriteBatcher(store.write, journal=journal)
    batcher.restore(journal.recover())
    batcher.start()
    await batcher.flush()
    await batcher.aclose()
    journal.close()
    points = [p for b in sent for p in b.points()]
    try:
        await assert_matches_pandas(store, points, START, END, "after recovery")
    finally:
        await store.close()


WRITER = """
import asyncio, json, random, sys
from datetime import timedelta
from actors.timeseries import TimeseriesActor
from akasha_ray import config
from akasha_ray.timeseries import PointBatch
from tests.servers.timeseries_suite import T0, random_points

async def main():
    settings = config.load(data_dir=sys.argv[1], namespace="test-journal")
    actor = TimeseriesActor(config.to_dict(settings), {"flush_interval_s": 0.2})
    rng = random.Random(int(sys.argv[2]))
    while True:
        points = random_points(rng, rng.randint(1, 50), T0, timedelta(hours=6))
        print("W " + json.dumps([p.model_dump(mode="json") for p in points]), flush=True)
        await actor.write(PointBatch.from_points(points))
        print("A", flush=True)

asyncio.run(main())
"""


def _key(point) -> tuple:
    return (point.system_id, point.metric_name, point.timestamp, point.value)


async def test_every_acknowledged_point_survives_kill_9_once(tmp_path):
    """A writer process says each batch before writing it and again once the write returned,
    until `kill -9` at a random moment, three times over one data dir. Then every acknowledged
    point is stored once, and of the batch whose answer the kill cut off, all or nothing."""
    acknowledged: list = []
    unknown: list[list] = []
    root = Path(__file__).resolve().parents[2]
    for round_ in range(3):
        said_path = tmp_path / f"said-{round_}.txt"
        with said_path.open("w") as said_file, (tmp_path / "stderr.txt").open("w") as errors:
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, str(tmp_path / "data"), str(round_)],
                cwd=root,
                stdout=said_file,
                stderr=errors,
            )
            # A few acknowledged writes a round are enough to prove the point; the fsyncs they
            # wait for took seconds once on a busy CI disk (17 writes in 120 s).
            started = time.monotonic()
            while time.monotonic() < started + 240 and writer.poll() is None:
                if said_path.read_text().count("A\n") >= 5 + 5 * round_:
                    break
                time.sleep(0.01)
            time.sleep(random.Random(round_).uniform(0.0, 0.3))
            if writer.poll() is None:
                os.kill(writer.pid, signal.SIGKILL)
            writer.wait()
        lines = said_path.read_text().splitlines(keepends=True)
        stderr = (tmp_path / "stderr.txt").read_text()[-3000:]
        assert writer.returncode == -signal.SIGKILL, stderr
        acks = lines.count("A\n")
        assert acks >= 3, f"{acks} acknowledged in {time.monotonic() - started:.0f} s\n{stderr}"
        said = None
        for line in lines:
            if line.startswith("W ") and line.endswith("\n"):
                said = [Point.model_validate(p) for p in json.loads(line[2:])]
            elif line == "A\n":
                acknowledged += said
                said = None
        if said is not None:
            unknown.append(said)
    assert list((tmp_path / "data" / JOURNAL_DIR).glob("*.wal"))

    settings = config.load(data_dir=tmp_path / "data", namespace="test-journal")
    actor = TimeseriesActor(config.to_dict(settings), {})
    try:
        stored = Counter(_key(p) for p in (await actor.export(0, 1_000_000)).points())
    finally:
        await actor.shutdown()
    expected = Counter(_key(p) for p in acknowledged)
    assert all(n == 1 for n in stored.values()), "a point was stored twice"
    missing = expected - stored
    assert not missing, f"{sum(missing.values())} acknowledged points are missing"
    extra = stored - expected
    for batch in unknown:  # stored whole or not at all
        keys = Counter(_key(p) for p in batch)
        assert keys & extra in (keys, Counter()), "a batch was stored in part"
        extra -= keys
    assert not extra, f"{sum(extra.values())} points were stored that no one wrote"


async def test_a_damaged_journal_is_a_503_naming_it(tmp_path):
    journal = PointJournal(tmp_path / "data" / JOURNAL_DIR, segment_bytes=1)  # a segment each
    journal.recover()
    for b in batches(6, 3):
        await put(journal, b)
    journal.close()
    first = sorted((tmp_path / "data" / JOURNAL_DIR).glob("*.wal"))[0]
    first.write_bytes(first.read_bytes()[:-5])  # an older segment cut short: not a torn append
    settings = config.load(data_dir=tmp_path / "data", namespace="test-journal")
    actor = TimeseriesActor(config.to_dict(settings), {})
    with pytest.raises(Unavailable, match="metrics journal cannot be read"):
        await actor.write(batches(7, 1)[0])
