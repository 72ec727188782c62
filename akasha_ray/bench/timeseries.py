"""Time-series benchmark: `python -m akasha_ray.bench timeseries [--points N]`, JSON on stdout.

Loads N points (default 10,000,000: 100 systems x 10 metrics, one point a minute for 7 days, in
arrival order: every series' point for minute t before any for minute t+1) into the embedded
DuckDB store, runs the refresh policy once at the end of the week, then times, in the same run and
interleaved so both see the same machine noise:
- one system's metric for the last day at 5 minutes,
- one metric over all systems for the 7 days at 1 hour,
each answered by the store (rollups + recent buckets) and by the same aggregation over the raw
points (the peer), asserting both give the same buckets. Then it times writes through the
`timeseries` Ray actor (batcher included), sent as API-sized requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from akasha_ray.timeseries import MetricsQuery, Point, PointBatch, TimeseriesOptions
from akasha_ray.timeseries.duckdb_store import DuckDBStore

END = datetime(2025, 1, 8, tzinfo=UTC)  # fixed, so runs are comparable
MINUTE_US = 60_000_000
TARGET_P95_MS = 20.0
TARGET_RATIO = 5.0
TARGET_WRITES_PER_S = 100_000


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="akasha bench timeseries", description=__doc__)
    parser.add_argument("--points", type=int, default=10_000_000)
    parser.add_argument("--systems", type=int, default=100)
    parser.add_argument("--metrics", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100, help="timed runs per query and peer")
    parser.add_argument(
        "--actor-points", type=int, default=1_000_000, help="points written through the actor"
    )
    parser.add_argument("--request-points", type=int, default=1_000, help="points per request")
    parser.add_argument("--no-actor", action="store_true", help="skip the Ray actor part")
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temporary folder")
    return parser.parse_args(argv)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "load_average": os.getloadavg(),
    }


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{i:03d}" for i in range(count)]


def minute_batches(
    systems: list[str], metrics: list[str], minutes: int, per_batch: int, seed: int = 1
):
    """Batches of whole minutes, every series once a minute, values a noisy daily cycle."""
    rng = np.random.default_rng(seed)
    series_systems = np.repeat(np.array(systems, dtype=object), len(metrics))
    series_metrics = np.tile(np.array(metrics, dtype=object), len(systems))
    n_series = len(series_systems)
    start_us = int((END - timedelta(minutes=minutes)).timestamp() * 1e6)
    for first in range(0, minutes, per_batch):
        block = np.arange(first, min(first + per_batch, minutes))
        n = len(block) * n_series
        timestamps = np.repeat(start_us + block * MINUTE_US, n_series)
        cycle = 50 + 40 * np.sin(np.repeat(block, n_series) * (2 * np.pi / 1440))
        yield PointBatch.from_columns(
            timestamps,
            np.tile(series_systems, len(block)).tolist(),
            np.tile(series_metrics, len(block)).tolist(),
            cycle + rng.normal(0, 5, n),
        )


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(ms[-1], 3),
        "runs": len(ms),
    }


def same_answer(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        x.bucket == y.bucket
        and x.count == y.count
        and x.min == y.min
        and x.max == y.max
        and abs(x.avg - y.avg) <= 1e-9 * max(1.0, abs(y.avg))
        for x, y in zip(a, b, strict=True)
    )


async def time_query(store: DuckDBStore, make_query, runs: int) -> dict[str, Any]:
    rollup_s, raw_s, buckets = [], [], 0
    for i in range(runs + 2):
        query = make_query(i)
        t0 = time.perf_counter()
        answer = await store.query(query)
        t1 = time.perf_counter()
        peer = await store.raw_aggregation(query)
        t2 = time.perf_counter()
        if not same_answer(answer, peer):
            raise AssertionError(f"rollup answer differs from raw aggregation for {query!r}")
        if i >= 2:  # the first runs warm caches
            rollup_s.append(t1 - t0)
            raw_s.append(t2 - t1)
            buckets = len(answer)
    rollups, raw = summary(rollup_s), summary(raw_s)
    return {
        "buckets": buckets,
        "rollups": rollups,
        "raw_aggregation": raw,
        "ratio_p50": round(raw["p50_ms"] / rollups["p50_ms"], 2),
        "ratio_p95": round(raw["p95_ms"] / rollups["p95_ms"], 2),
        "answers_equal": True,
    }


async def store_part(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    systems, metrics = names("system", args.systems), names("metric", args.metrics)
    minutes = max(1, args.points // (args.systems * args.metrics))
    store = await DuckDBStore.open(data_dir / "bench.duckdb", TimeseriesOptions())
    try:
        per_batch = max(1, 200_000 // (args.systems * args.metrics))
        loaded, write_s = 0, 0.0
        for batch in minute_batches(systems, metrics, minutes, per_batch):
            t0 = time.perf_counter()
            loaded += await store.write(batch)
            write_s += time.perf_counter() - t0
        t0 = time.perf_counter()
        await store.refresh(END)
        refresh_s = time.perf_counter() - t0

        day = timedelta(days=1)
        one_system_day = await time_query(
            store,
            lambda i: MetricsQuery(
                system_id=systems[i % len(systems)],
                metric_name=metrics[i % len(metrics)],
                start=END - day,
                end=END,
                bucket="5m",
            ),
            args.runs,
        )
        all_systems_week = await time_query(
            store,
            lambda i: MetricsQuery(
                system_id=None,
                metric_name=metrics[i % len(metrics)],
                start=END - timedelta(minutes=minutes),
                end=END,
                bucket="1h",
            ),
            args.runs,
        )
        health = await store.health()
    finally:
        await store.close()
    return {
        "points": loaded,
        "series": args.systems * args.metrics,
        "span_minutes": minutes,
        "store_write": {
            "points_per_s": round(loaded / write_s),
            "batch_points": per_batch * args.systems * args.metrics,
        },
        "refresh_s": round(refresh_s, 3),
        "watermarks": health["watermarks"],
        "queries": {
            "one_system_one_metric_1_day_5m": one_system_day,
            "one_metric_all_systems_7_days_1h": all_systems_week,
        },
    }


def actor_part(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    import ray

    from actors.timeseries import TimeseriesActor
    from akasha_ray import config

    settings = config.load(data_dir=data_dir / "actor", namespace="bench-timeseries")
    systems, metrics = names("system", args.systems), names("metric", args.metrics)
    per_request_minutes = max(1, args.request_points // (args.systems * args.metrics))
    minutes = max(1, args.actor_points // (args.systems * args.metrics))
    requests = list(minute_batches(systems, metrics, minutes, per_request_minutes, seed=2))

    # The edge's share, measured apart: validating JSON-shaped points into a batch.
    sample = requests[0].points()
    t0 = time.perf_counter()
    PointBatch.from_points(Point.model_validate(p.model_dump()) for p in sample)
    edge_s = time.perf_counter() - t0

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        actor = ray.remote(TimeseriesActor).options(num_cpus=0).remote(config.to_dict(settings))
        ray.get(actor.health.remote())  # opens the store: not part of the timing
        in_flight, window = [], 16
        t0 = time.perf_counter()
        for batch in requests:
            in_flight.append(actor.write.remote(batch))
            if len(in_flight) >= window:
                ray.get(in_flight.pop(0))
        ray.get(in_flight)
        accepted_s = time.perf_counter() - t0
        ray.get(actor.flush.remote())
        stored_s = time.perf_counter() - t0
        health = ray.get(actor.health.remote())
        ray.get(actor.shutdown.remote())
        ray.kill(actor)
    finally:
        if started_ray:
            ray.shutdown()
    written = sum(len(b) for b in requests)
    return {
        "points": written,
        "request_points": len(requests[0]),
        "requests_in_flight": window,
        "accepted_per_s": round(written / accepted_s),
        "stored_per_s": round(written / stored_s),
        "flushes": health["writer"],
        "edge_validation_points_per_s": round(len(sample) / edge_s),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="akasha-bench-ts-") as tmp:
        data_dir = args.data_dir or Path(tmp)
        data_dir.mkdir(parents=True, exist_ok=True)
        result: dict[str, Any] = {"benchmark": "timeseries", "machine": machine()}
        result["store"] = asyncio.run(store_part(args, data_dir))
        if not args.no_actor:
            result["write_through_actor"] = actor_part(args, data_dir)
    queries = result["store"]["queries"].values()
    result["targets"] = {
        "p95_ms_at_most": TARGET_P95_MS,
        "ratio_at_least": TARGET_RATIO,
        "writes_per_s_at_least": TARGET_WRITES_PER_S,
        "p95_met": all(q["rollups"]["p95_ms"] <= TARGET_P95_MS for q in queries),
        "ratio_met": all(q["ratio_p50"] >= TARGET_RATIO for q in queries),
        "writes_met": (
            result["write_through_actor"]["stored_per_s"] >= TARGET_WRITES_PER_S
            if "write_through_actor" in result
            else None
        ),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
