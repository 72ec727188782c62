import asyncio
import time
from datetime import UTC, datetime

import numpy as np
import pytest

from akasha_ray.errors import Unavailable
from akasha_ray.timeseries import PointBatch
from akasha_ray.timeseries.batcher import WriteBatcher

T_US = int(datetime(2025, 3, 1, tzinfo=UTC).timestamp() * 1e6)


def batch(n: int) -> PointBatch:
    return PointBatch.from_columns(
        T_US + np.arange(n), ["sys"] * n, ["m"] * n, np.arange(n, dtype=float)
    )


class Sink:
    def __init__(self) -> None:
        self.batches: list[int] = []
        self.fail = False
        self.times: list[float] = []

    async def __call__(self, points: PointBatch, token: str) -> int:
        if self.fail:
            raise Unavailable("database down")
        self.batches.append(len(points))
        self.times.append(time.monotonic())
        return len(points)


async def test_flushes_when_enough_points_wait():
    sink = Sink()
    batcher = WriteBatcher(sink, max_points=100, max_delay_s=30)
    batcher.start()
    for _ in range(5):
        await batcher.add(batch(30))
    await asyncio.sleep(0.05)
    assert sum(sink.batches) >= 100 and sink.batches[0] >= 100  # one flush of the first 120
    await batcher.aclose()
    assert sum(sink.batches) == 150


async def test_flushes_after_the_delay_and_not_before():
    sink = Sink()
    batcher = WriteBatcher(sink, max_points=1_000, max_delay_s=0.2)
    batcher.start()
    started = time.monotonic()
    await batcher.add(batch(10))
    await asyncio.sleep(0.1)
    assert sink.batches == []
    await asyncio.sleep(0.25)
    assert sink.batches == [10]
    assert 0.18 <= sink.times[0] - started < 0.5
    await batcher.aclose()


async def test_clean_close_flushes_everything_accepted():
    sink = Sink()
    batcher = WriteBatcher(sink, max_points=10_000, max_delay_s=60)
    batcher.start()
    for n in (5, 7, 11):
        assert await batcher.add(batch(n)) == n
    await batcher.aclose()
    assert sum(sink.batches) == 23
    with pytest.raises(Unavailable, match="shutting down"):
        await batcher.add(batch(1))


async def test_failures_keep_points_and_retry():
    sink = Sink()
    sink.fail = True
    batcher = WriteBatcher(
        sink, max_points=10, max_delay_s=0.01, retry_delay_s=0.02, max_retry_delay_s=0.02
    )
    batcher.start()
    await batcher.add(batch(20))
    await asyncio.sleep(0.1)
    stats = batcher.stats()
    assert stats["pending"] == 20 and stats["failures"] >= 1
    assert stats["last_error"] == "database down"
    with pytest.raises(Unavailable):
        await batcher.flush()
    sink.fail = False
    await asyncio.sleep(0.1)
    assert sum(sink.batches) == 20 and batcher.stats()["pending"] == 0
    await batcher.aclose()


async def test_backpressure_when_too_much_waits():
    sink = Sink()
    sink.fail = True
    batcher = WriteBatcher(
        sink, max_points=1_000, max_delay_s=0.01, max_pending=50, close_timeout_s=0.05
    )
    batcher.start()
    await batcher.add(batch(40))
    with pytest.raises(Unavailable):
        await batcher.flush()
    with pytest.raises(Unavailable, match="retry later") as refused:
        await batcher.add(batch(20))
    assert "database down" in refused.value.message  # says why the points wait
    with pytest.raises(Unavailable, match="could not be written"):
        await batcher.aclose()  # says what a shutdown could not save
    # ... and keeps them: the writer goes on, and stores them once the sink works.
    assert batcher.stats()["pending"] == 40
    sink.fail = False
    await batcher.flush()
    await batcher.aclose()
    assert sum(sink.batches) == 40


async def test_flush_waits_for_points_added_before_it():
    sink = Sink()
    batcher = WriteBatcher(sink, max_points=10_000, max_delay_s=60)
    batcher.start()
    await batcher.add(batch(3))
    await batcher.flush()
    assert sink.batches == [3]
    await batcher.aclose()


async def test_concurrent_writers_lose_nothing():
    sink = Sink()
    batcher = WriteBatcher(sink, max_points=64, max_delay_s=0.01)
    batcher.start()
    await asyncio.gather(*(batcher.add(batch(n % 17 + 1)) for n in range(200)))
    await batcher.aclose()
    assert sum(sink.batches) == sum(n % 17 + 1 for n in range(200))


class FlakySink(Sink):
    """Fails with whatever exception it is given (not only AkashaError), as stores do."""

    def __init__(self) -> None:
        super().__init__()
        self.error: BaseException | None = None
        self.calls: list[tuple[int, str]] = []

    async def __call__(self, points: PointBatch, token: str) -> int:
        self.calls.append((len(points), token))
        if self.error is not None:
            raise self.error
        return await super().__call__(points, token)


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),
        RuntimeError("cannot execute INSERT in a read-only transaction"),
        ValueError("postgresql://akasha:hunter2@db.example:5432/akasha refused, password=hunter2"),
    ],
)
async def test_any_store_error_keeps_points_and_shows_in_stats(error):
    sink = FlakySink()
    sink.error = error
    batcher = WriteBatcher(sink, max_points=10, max_delay_s=0.01, retry_delay_s=0.01)
    batcher.start()
    await batcher.add(batch(25))
    with pytest.raises(Unavailable, match="could not be written"):
        await batcher.flush()
    stats = batcher.stats()
    assert stats["status"] == "failing" and stats["pending"] == 25
    assert stats["failing_since"] is not None and type(error).__name__ in stats["last_error"]
    assert "hunter2" not in stats["last_error"]  # no secret reaches a health report
    assert stats["loop_crashes"] == 0  # a store failure, handled as one
    await batcher.add(batch(5))  # still accepting while under max_pending
    sink.error = None
    await batcher.flush()
    assert batcher.stats()["status"] == "ok" and batcher.stats()["failing_since"] is None
    await batcher.aclose()
    assert sum(sink.batches) == 30  # nothing lost, nothing twice
    assert max(sink.batches) <= 25  # a backlog drains in rounds of about max_points


def test_backoff_doubles_is_capped_and_jittered():
    batcher = WriteBatcher(Sink(), retry_delay_s=0.5, max_retry_delay_s=8)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (9, 8.0), (40, 8.0)]:
        delays = {batcher._backoff_s(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, delays)
        assert len(delays) > 1  # jittered


async def test_a_crash_of_the_loop_is_recorded_and_the_loop_goes_on(monkeypatch):
    sink = Sink()
    batcher = WriteBatcher(sink, max_points=10, max_delay_s=0.01, retry_delay_s=0.01)
    real = batcher._flush_once
    crashes = iter([True])

    async def crash_once() -> bool:
        if next(crashes, False):
            raise KeyError("a bug in the loop")
        return await real()

    monkeypatch.setattr(batcher, "_flush_once", crash_once)
    batcher.start()
    await batcher.add(batch(7))
    while not sink.batches:
        await asyncio.sleep(0.01)
    stats = batcher.stats()
    assert stats["loop_crashes"] == 1 and "a bug in the loop" in stats["last_error"]
    assert stats["status"] == "ok" and sink.batches == [7]
    await batcher.aclose()


async def test_a_dead_flusher_is_restarted():
    sink = Sink()
    batcher = WriteBatcher(sink, max_points=10_000, max_delay_s=60)
    batcher.start()
    await batcher.add(batch(3))
    batcher._task.cancel()  # the task itself dies (not an exception inside its loop)
    await asyncio.sleep(0)
    assert batcher._task.done()
    await batcher.add(batch(4))  # restarts it
    await batcher.flush()
    assert sum(sink.batches) == 7 and batcher.stats()["restarts"] == 1
    await batcher.aclose()


class SlowSink(Sink):
    """Commits (records the points) before it returns, like a store whose reply is slow."""

    def __init__(self) -> None:
        super().__init__()
        self.stored: list[PointBatch] = []
        self.committed = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, points: PointBatch, token: str) -> int:
        self.stored.append(points)
        self.committed.set()
        await self.release.wait()
        return len(points)


async def test_read_with_pending_never_counts_a_point_twice_or_not_at_all():
    sink = SlowSink()
    batcher = WriteBatcher(sink, max_points=10, max_delay_s=0.01)
    batcher.start()
    await batcher.add(batch(12))
    await sink.committed.wait()  # in the store already, and still buffered: the sink runs

    async def read() -> int:
        return sum(len(b) for b in sink.stored)

    reader = asyncio.create_task(batcher.read_with_pending(read))
    await asyncio.sleep(0.05)
    assert not reader.done()  # it waits for the running flush rather than guess
    sink.release.set()
    stored, pending = await reader
    assert stored + sum(len(b) for b in pending) == 12
    await batcher.aclose()


async def test_a_failed_write_is_sent_again_as_it_was_with_its_token():
    # The store may have committed it (the reply was lost): the same points and token let it say so.
    sink = FlakySink()
    sink.error = ConnectionResetError("connection lost during COMMIT")
    batcher = WriteBatcher(sink, max_points=100, max_delay_s=0.01, retry_delay_s=0.01)
    batcher.start()
    await batcher.add(batch(10))
    with pytest.raises(Unavailable):
        await batcher.flush()
    await batcher.add(batch(5))  # arrives during the outage: not part of the retried write
    sink.error = None
    await batcher.flush()
    first = sink.calls[0]
    failed = [c for c in sink.calls if c[1] == first[1]]
    assert len(failed) >= 2 and {n for n, _ in failed} == {10}
    assert sink.calls[-1][0] == 5 and sink.calls[-1][1] != first[1]
    assert sink.batches == [10, 5]
    await batcher.aclose()


async def test_close_ends_even_while_the_loop_keeps_crashing(monkeypatch):
    batcher = WriteBatcher(Sink(), max_delay_s=0.01, retry_delay_s=0.01, close_timeout_s=0.1)

    async def crash() -> bool:
        raise KeyError("a bug in the loop")

    monkeypatch.setattr(batcher, "_flush_once", crash)
    batcher.start()
    await batcher.add(batch(3))
    with pytest.raises(Unavailable, match="3 metric points could not be written"):
        await batcher.aclose()
    assert batcher.stats()["status"] == "failing" and batcher.stats()["pending"] == 3
    batcher._task.cancel()  # the writer goes on after a failed close; this test stops it
