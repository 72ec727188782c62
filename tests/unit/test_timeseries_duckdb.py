"""The embedded backend against pandas (the congruence suite), plus what only it has: a file that
reopens to the same answers, in-memory recent buckets, lock-free queries beside writers."""

import asyncio
import random
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from akasha_ray.config import TimeseriesConfig
from akasha_ray.errors import InvalidInput
from akasha_ray.timeseries import MetricsQuery, TimeseriesStore, open_timeseries_store
from tests.servers.timeseries_suite import (
    T0,
    assert_matches_pandas,
    assert_same,
    assert_unknown_series_empty,
    pandas_buckets,
    random_points,
    run_congruence,
)


@pytest.fixture
async def store(tmp_path):
    store = await open_timeseries_store(TimeseriesConfig(), tmp_path)
    yield store
    await store.close()


async def test_congruence_with_pandas(store):
    assert isinstance(store, TimeseriesStore)
    await run_congruence(store)
    await assert_unknown_series_empty(store)


async def test_health_names_the_backend(store):
    health = await store.health()
    assert health["backend"] == "duckdb" and health["flavour"].startswith("duckdb 1.")


async def test_reopened_file_gives_the_same_answers(tmp_path):
    rng = random.Random(7)
    points = random_points(rng, 800, T0, timedelta(hours=4))
    late = random_points(rng, 30, T0, timedelta(hours=1))
    store = await open_timeseries_store(TimeseriesConfig(), tmp_path)
    await store.write(points)
    await store.refresh(T0 + timedelta(hours=3))
    await store.write(late)  # late and not refreshed: recorded as invalidated buckets
    await store.close()

    reopened = await open_timeseries_store(TimeseriesConfig(), tmp_path)
    try:
        health = await reopened.health()
        assert health["recent_buckets"]["5m"] > 0 and health["late_buckets"]["1h"] > 0
        end = T0 + timedelta(hours=4)
        await assert_matches_pandas(reopened, points + late, T0, end, "reopened")
        await reopened.refresh(T0 + timedelta(hours=3, minutes=30))
        await assert_matches_pandas(reopened, points + late, T0, end, "reopened, refreshed")
    finally:
        await reopened.close()


async def test_a_second_process_cannot_open_the_file(store, tmp_path):
    # One owner per file (the actor): another process gets a clear 503, not a corrupt file.
    script = (
        "import sys; from pathlib import Path\n"
        "from akasha_ray.errors import Unavailable\n"
        "from akasha_ray.timeseries.duckdb_store import DuckDBStore\n"
        "from akasha_ray.timeseries.options import TimeseriesOptions\n"
        "try:\n"
        "    DuckDBStore.open_sync(Path(sys.argv[1]), TimeseriesOptions())\n"
        "except Unavailable as exc:\n"
        "    print(exc.message); sys.exit(3)\n"
    )
    path = tmp_path / "timeseries" / "metrics.duckdb"
    result = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "cannot open" in result.stdout


async def test_too_many_raw_points_asks_to_narrow(store, monkeypatch):
    monkeypatch.setattr("akasha_ray.timeseries.duckdb_store.MAX_BUCKETS", 10)
    await store.write(random_points(random.Random(1), 400, T0, timedelta(minutes=30)))
    query = MetricsQuery(
        system_id=None,
        metric_name="latency_ms",
        start=T0,
        end=T0 + timedelta(hours=1),
        bucket="raw",
    )
    with pytest.raises(InvalidInput, match="narrow"):
        await store.query(query)


async def test_queries_beside_writers_and_refreshes_stay_exact(store):
    """Queries read memory without a lock: each answer must still be a consistent one, so when
    the writers stop, every answer equals pandas over what was written."""
    rng = random.Random(3)
    written = random_points(rng, 500, T0, timedelta(hours=2))
    await store.write(written)
    query = MetricsQuery(
        system_id=None, metric_name="latency_ms", start=T0, end=T0 + timedelta(hours=3)
    )
    stop = threading.Event()

    async def writer():
        for i in range(30):
            points = random_points(rng, 50, T0 + timedelta(minutes=i * 4), timedelta(hours=1))
            await store.write(points)
            written.extend(points)
            if i % 5 == 0:
                await store.refresh(T0 + timedelta(minutes=30 + i * 4))
        stop.set()

    async def reader():
        answers = 0
        while not stop.is_set():
            buckets = await store.query(query)
            assert all(b.count > 0 and b.min <= b.avg <= b.max for b in buckets)
            answers += 1
        return answers

    _, answers = await asyncio.gather(writer(), reader())
    assert answers > 0
    assert_same(await store.query(query), pandas_buckets(written, query))


async def test_a_write_retried_with_its_token_is_stored_once(store, tmp_path):
    rng = random.Random(5)
    first = random_points(rng, 40, T0, timedelta(hours=1))
    second = random_points(rng, 30, T0, timedelta(hours=1))
    assert await store.write(first, token="flush-1") == 40
    assert await store.write(first, token="flush-1") == 40  # the retry: not stored again
    assert await store.write(second, token="flush-2") == 30
    assert await store.write(second) == 30  # no token: stored again, as asked
    written = first + second + second
    await assert_matches_pandas(store, written, T0, T0 + timedelta(hours=1), "tokens")
    # Tokens are forgotten after a day, by the clock (refresh's `now` is the policy's time).
    report = await store.refresh(T0 + timedelta(hours=2))
    assert report["write_tokens_forgotten"] == 0
