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

    async def __call__(self, points: PointBatch) -> int:
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
    batcher = WriteBatcher(sink, max_points=10, max_delay_s=0.01, retry_delay_s=0.02)
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
    batcher = WriteBatcher(sink, max_points=1_000, max_delay_s=60, max_pending=50)
    batcher.start()
    await batcher.add(batch(40))
    with pytest.raises(Unavailable, match="retry later"):
        await batcher.add(batch(20))
    with pytest.raises(Unavailable, match="could not be written"):
        await batcher.aclose()  # says what a shutdown could not save


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
