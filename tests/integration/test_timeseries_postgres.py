"""The time-series congruence suite against every backend: DuckDB, a real PostgreSQL 15 (plain
tables, our own refresh) and a real TimescaleDB (PGlite + timescaledb, one connection), plus what
only the PostgreSQL backend and the Ray actor do. Servers that cannot start fail the run."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import pytest
import ray

from actors.timeseries import ACTOR_NAME, TimeseriesActor
from akasha_ray import config
from akasha_ray.config import TimeseriesConfig
from akasha_ray.errors import ConfigError, Unavailable
from akasha_ray.ports import free_port
from akasha_ray.timeseries import (
    MetricsQuery,
    Point,
    PointBatch,
    TimeseriesOptions,
    TimeseriesStore,
    open_timeseries_store,
)
from akasha_ray.timeseries.postgres_store import PostgresStore
from tests.servers.pglite import pglite_server
from tests.servers.postgres import PostgresServer, postgres_server
from tests.servers.timeseries_suite import (
    T0,
    assert_matches_pandas,
    assert_unknown_series_empty,
    random_points,
    run_congruence,
)

pytestmark = pytest.mark.integration

BACKENDS = ["duckdb", "postgresql", "timescaledb"]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="module")
def timescale() -> Iterator[PostgresServer]:
    with pglite_server() as server:
        yield server


async def drop_metrics_schema(dsn: str) -> None:
    """Start each test from an empty database (PGlite cannot open a second one)."""
    conn = await asyncpg.connect(dsn)
    try:
        for view in ("metrics_5min", "metrics_1hour"):
            kind = await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = $1 "
                "AND relnamespace = 'public'::regnamespace",
                view,
            )
            if kind == "v":  # a continuous aggregate
                await conn.execute(f"DROP MATERIALIZED VIEW {view} CASCADE")
        # One table a statement: TimescaleDB drops a hypertable only on its own.
        for table in (
            "metrics_5min",
            "metrics_1hour",
            "metrics",
            "metrics_rollup_state",
            "metrics_invalidations",
            "metrics_schema",
            "metrics_writes",
        ):
            await conn.execute(f"DROP TABLE IF EXISTS {table} CASCADE")
    finally:
        await conn.close()


def options_for(backend: str, **extra) -> TimeseriesOptions:
    # PGlite serves one client connection: a pool of one.
    return TimeseriesOptions(pool_max_size=1 if backend == "timescaledb" else 4, **extra)


async def open_backend(backend: str, request, tmp_path, **extra) -> TimeseriesStore:
    if backend == "duckdb":
        return await open_timeseries_store(TimeseriesConfig(), tmp_path, options_for(backend))
    server = request.getfixturevalue("timescale" if backend == "timescaledb" else "postgres")
    await drop_metrics_schema(server.dsn)
    cfg = TimeseriesConfig(backend="timescaledb", dsn=server.dsn)
    return await open_timeseries_store(cfg, tmp_path, options_for(backend, **extra))


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path) -> AsyncIterator[TimeseriesStore]:
    store = await open_backend(request.param, request, tmp_path)
    yield store
    await store.close()


async def test_congruence_with_pandas(store):
    await run_congruence(store)
    await assert_unknown_series_empty(store)


async def test_a_write_retried_with_its_token_is_stored_once(store):
    rng = random.Random(5)
    first = random_points(rng, 40, T0, timedelta(hours=1))
    second = random_points(rng, 30, T0, timedelta(hours=1))
    assert await store.write(first, token="flush-1") == 40
    assert await store.write(first, token="flush-1") == 40  # the retry: not stored again
    assert await store.write(second, token="flush-2") == 30
    written = first + second
    await assert_matches_pandas(store, written, T0, T0 + timedelta(hours=1), "tokens")
    report = await store.refresh(T0 + timedelta(hours=2))
    assert report["write_tokens_forgotten"] == 0  # kept a day, by the clock


async def test_health_says_which_flavour(request, store):
    health = await store.health()
    expected = {
        "duckdb": "duckdb ",
        "postgresql": "postgresql 15.",
        "timescaledb": "timescaledb 2.",
    }
    backend = request.node.callspec.params["store"]
    assert health["flavour"].startswith(expected[backend]), health


async def test_timescaledb_schema_policies_and_idempotent_setup(request, tmp_path, timescale):
    extra = {"retention": timedelta(days=30), "compress_after": timedelta(days=7)}
    store = await open_backend("timescaledb", request, tmp_path, **extra)
    await store.close()
    # A second start (another Akasha process, a restart) finds everything and changes nothing.
    store = await PostgresStore.open(timescale.dsn, options_for("timescaledb", **extra))
    try:
        assert store.is_timescaledb
        # One point inside each policy's window: [now-1h, now-10min) and [now-1d, now-1h).
        now = datetime.now(UTC)
        ago = [now - timedelta(minutes=30), now - timedelta(hours=3)]
        await store.write(
            PointBatch.from_columns(
                np.array([int(t.timestamp() * 1e6) for t in ago]),
                ["sys-a", "sys-a"],
                ["latency_ms", "latency_ms"],
                np.array([4.0, 5.0]),
            )
        )
        async with store._connection() as conn:  # the pool's one connection: no store calls
            interval = await conn.fetchval(
                "SELECT time_interval FROM timescaledb_information.dimensions "
                "WHERE hypertable_name = 'metrics'"
            )
            assert interval == timedelta(days=1)
            views = await conn.fetch(
                "SELECT view_name, materialized_only "
                "FROM timescaledb_information.continuous_aggregates ORDER BY view_name"
            )
            assert [(v["view_name"], v["materialized_only"]) for v in views] == [
                ("metrics_1hour", True),
                ("metrics_5min", True),
            ]
            jobs = await conn.fetch(
                "SELECT job_id, proc_name, hypertable_name, config "
                "FROM timescaledb_information.jobs "
                "WHERE proc_name LIKE 'policy_%' AND hypertable_name IS NOT NULL"
            )
            procs = sorted(j["proc_name"] for j in jobs)
            assert procs == [
                "policy_compression",
                "policy_refresh_continuous_aggregate",
                "policy_refresh_continuous_aggregate",
                "policy_retention",
            ], jobs
            # No background workers in PGlite: run each policy once by hand, as a scheduler would.
            for job in jobs:
                await conn.execute("CALL run_job($1)", job["job_id"])
            assert await conn.fetchval("SELECT sum(point_count) FROM metrics_5min") == 1
            assert await conn.fetchval("SELECT sum(point_count) FROM metrics_1hour") == 1
    finally:
        await store.close()


async def test_plain_postgresql_keeps_its_own_rollups(request, tmp_path, postgres):
    store = await open_backend("postgresql", request, tmp_path)
    try:
        assert not store.is_timescaledb
        await store.write(
            PointBatch.from_columns(
                np.array([int(T0.timestamp() * 1e6)]), ["sys-a"], ["latency_ms"], np.array([2.0])
            )
        )
        await store.refresh(T0 + timedelta(days=1))
        async with store._connection() as conn:
            kind = await conn.fetchval(
                "SELECT relkind::text FROM pg_class WHERE relname = 'metrics_5min'"
            )
            assert kind == "r"
            assert await conn.fetchval("SELECT count(*) FROM metrics_1hour") == 1
    finally:
        await store.close()
    with pytest.raises(ConfigError, match="without timescaledb"):
        await PostgresStore.open(postgres.dsn, TimeseriesOptions(require_timescaledb=True))


async def test_an_unreachable_server_is_unavailable():
    dsn = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres?sslmode=disable"
    with pytest.raises(Unavailable, match="cannot reach"):
        await PostgresStore.open(dsn, TimeseriesOptions())


def test_actor_batches_writes_and_flushes_on_shutdown(ray_cluster, settings):
    options = {"flush_interval_s": 60, "flush_max_points": 1_000_000}
    actor = (
        ray.remote(TimeseriesActor)
        .options(name=ACTOR_NAME, namespace=settings.namespace, num_cpus=0)
        .remote(config.to_dict(settings), options)
    )
    start_us = int(T0.timestamp() * 1e6)
    minutes = np.arange(600)
    batch = PointBatch.from_columns(
        start_us + minutes * 60_000_000, ["sys-a"] * 600, ["latency_ms"] * 600, minutes * 1.0
    )
    assert ray.get([actor.write.remote(batch) for _ in range(3)]) == [600, 600, 600]
    health = ray.get(actor.health.remote())
    assert health["writer"]["pending"] == 1800  # buffered: the flush interval is a minute

    summary = ray.get(actor.shutdown.remote())
    assert summary["pending"] == 0 and summary["flushed"] == 1800
    ray.kill(actor)

    reopened = (
        ray.remote(TimeseriesActor)
        .options(namespace=settings.namespace, num_cpus=0)
        .remote(config.to_dict(settings), options)
    )
    query = MetricsQuery(
        system_id="sys-a", metric_name="latency_ms", start=T0, end=T0 + timedelta(hours=10)
    )
    buckets = ray.get(reopened.query.remote(query))
    assert sum(b.count for b in buckets) == 1800 and len(buckets) == 120
    ray.get(reopened.refresh.remote(T0 + timedelta(days=1)))
    assert ray.get(reopened.query.remote(query)) == buckets
    ray.get(reopened.shutdown.remote())


async def set_read_only(dsn: str, read_only: bool) -> None:
    """As after a failover to a standby: every session's transactions become read-only."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET default_transaction_read_only = off")  # this session may write
        if read_only:
            await conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
        else:
            await conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def until_status(actor: TimeseriesActor, status: str) -> dict:
    """Health, once it says `status` (polled: the flusher runs on its own schedule)."""
    for _ in range(400):
        health = await actor.health()
        if health["status"] == status:
            return health
        await asyncio.sleep(0.05)
    raise AssertionError(f"status never became {status!r}: {health}")


async def until_flushed(actor: TimeseriesActor) -> None:
    """flush() until it succeeds: sessions see a reloaded configuration a moment later."""
    for _ in range(100):
        try:
            await actor.flush()
            return
        except Unavailable:
            await asyncio.sleep(0.05)
    await actor.flush()


async def test_read_only_postgresql_keeps_points_until_writable(postgres, tmp_path):
    """The writer (the actor's class, without Ray) over a real PostgreSQL 15 that turns
    read-only during writes, then writable again: no accepted point lost, none stored twice."""
    await drop_metrics_schema(postgres.dsn)
    settings = config.load(
        data_dir=tmp_path,
        namespace="test-read-only",
        timeseries={"backend": "timescaledb", "dsn": postgres.dsn},
    )
    actor = TimeseriesActor(config.to_dict(settings), {"flush_interval_s": 0.05})
    rng = random.Random(15)
    span = timedelta(hours=6)
    start, end = T0 + timedelta(minutes=7), T0 + span - timedelta(minutes=3)
    written: list[Point] = []

    async def write(n: int) -> None:
        points = random_points(rng, n, T0, span)
        assert await actor.write(PointBatch.from_points(points)) == n
        written.extend(points)

    try:
        await write(300)
        await actor.flush()
        await set_read_only(postgres.dsn, True)
        try:
            await write(200)  # accepted: 202
            health = await until_status(actor, "failing")
            assert "read-only transaction" in health["error"], health
            assert health["pending_points"] == 200 and health["failing_since"] is not None
            assert health["flavour"].startswith("postgresql 15.")  # reads still work
            # Read-your-writes while the store refuses writes.
            await assert_matches_pandas(actor, written, start, end, "read-only")
            await write(100)
        finally:
            await set_read_only(postgres.dsn, False)
        await until_flushed(actor)
        health = await actor.health()
        assert health["status"] == "ok" and health["pending_points"] == 0, health
        assert health["writer"]["failures"] >= 1
        await assert_matches_pandas(actor, written, start, end, "writable again")
        conn = await asyncpg.connect(postgres.dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM metrics") == len(written) == 600
        finally:
            await conn.close()
    finally:
        await actor.shutdown()
