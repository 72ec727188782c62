"""Warm-tier benchmark: warm search against exact brute force on the same vectors, migration
throughput from a hot shard into warm, a hybrid hot+warm search against its slowest tier, and
(on the embedded default) the same searches over HTTP from a whole Akasha serving that data dir.

    python -m akasha_ray.bench warm [--n 1000000] [--uri http://milvus:19530] [--no-http]

Without --uri it runs on Milvus Lite in a temporary data dir, where the warm owner searches its
vectors exactly in memory (akasha_ray/vectors/warm_vectors.py); with one, in a collection of its
own on that server, searched by its index (--index), dropped at the end. Prints one JSON document
on stdout, progress on stderr.

Before searching, it waits for the index to cover the loaded rows: on a server it flushes (so
every segment is sealed and indexed) and waits until `describe_index` counts every row indexed
and the query node searches every loaded segment through it; on Lite, until this process stops
using CPU (Lite compacts in threads of this process). It waits again after the migration, before
the hybrid searches, which take hot, warm and both in turn for each query. Each timed series
stops after --budget-s seconds (with at least 10 runs). The migration reports, besides its rate,
how long each store call kept its stage busy (the stages overlap) and the CPU seconds of this
process (Lite's included). On Lite, `reopen_with_vectors_read` is how long the store took to
open the full data dir again and read its vectors back into memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.hot import unit_rows
from akasha_ray.bench.stats import machine, ratio, seconds_of, summarize, timed
from akasha_ray.config import WarmConfig
from akasha_ray.ids import stable_id
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch

K = 10
CHUNK = 20_000
MIN_RUNS = 10
UNINDEXED_ROWS = 1024  # Milvus 2.3's indexCoord.minSegmentNumRowsToEnableIndex


def log(message: str) -> None:
    print(f"[bench warm] {message}", file=sys.stderr, flush=True)


def batch_of(vectors: np.ndarray, first: int, now: datetime, age_days: float):
    """Memories `first`, `first + 1`, ... with UUIDv7 ids from their times, as the service makes
    them: DuckDB's primary-key index deleted 100,000 ids of the form "bench-00000001" in 3.6 s,
    UUIDv7s in 1.6 s."""
    memories = []
    for i in range(first, first + len(vectors)):
        created_at = now - timedelta(days=age_days, seconds=i)
        memories.append(
            MemoryIn(
                id=stable_id(created_at, "bench", str(i)),
                system_id=f"system-{i % 100:03d}",
                conversation_id=f"conv-{i // 10}",
                content=f"synthetic memory {i}",
                created_at=created_at,
            )
        )
    return build_batch(
        memories, vectors, model="random-unit-vectors", model_revision="bench", now=now
    )


async def timed_async(calls, budget_s: float) -> tuple[dict[str, float], list[Any]]:
    """Each call once after 3 warm-up calls, until the calls or `budget_s` run out (at least
    MIN_RUNS runs)."""
    for call in calls[:3]:
        await call()
    seconds, results = [], []
    deadline = time.perf_counter() + budget_s
    for call in calls:
        if len(seconds) >= MIN_RUNS and time.perf_counter() > deadline:
            break
        started = time.perf_counter()
        results.append(await call())
        seconds.append(time.perf_counter() - started)
    return summarize(seconds), results


async def interleaved(series, queries, budget_s: float) -> dict[str, dict[str, float]]:
    """Latencies of each series, its calls taken in turn per query (after 3 warm-up rounds),
    until the queries or `budget_s` run out (at least MIN_RUNS rounds)."""
    for q in queries[:3]:
        for call in series.values():
            await call(q)
    seconds: dict[str, list[float]] = {name: [] for name in series}
    deadline = time.perf_counter() + budget_s
    for rounds, q in enumerate(queries):
        if rounds >= MIN_RUNS and time.perf_counter() > deadline:
            break
        for name, call in series.items():
            started = time.perf_counter()
            await call(q)
            seconds[name].append(time.perf_counter() - started)
    return {name: summarize(taken) for name, taken in seconds.items()}


def recall(answers: list[list[dict]], exact: list[set[str]]) -> float:
    return round(
        float(
            np.mean(
                [
                    len({h["id"] for h in got} & want) / K
                    for got, want in zip(answers, exact, strict=False)
                ]
            )
        ),
        4,
    )


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def settle(warm, config: WarmConfig, n: int, timeout_s: float) -> dict[str, Any]:
    """Wait for the index to cover the rows (see the module docstring); what was seen."""
    started = time.perf_counter()
    health: dict[str, Any] = {}
    if config.uri is None:
        await warm.flush()
    else:  # seal the growing segments (the store never asks a server to): they get indexed
        await asyncio.to_thread(_flush, config.uri, warm.collection)
    while time.perf_counter() - started < timeout_s:
        if config.uri is None:
            before = cpu_s()
            await asyncio.sleep(2)
            if cpu_s() - before < 0.2:  # under 10% of one core: the index threads are done
                break
        else:
            health = await warm.health()
            indexed, pending = health.get("indexed_rows") or 0, health.get("pending_index_rows")
            served = await asyncio.to_thread(_served_by_index, config.uri, warm.collection)
            log(f"index: {indexed:,} rows built, {pending} pending, {served:,} searched by it")
            if indexed >= n and not pending and served >= n:
                break
            await asyncio.sleep(5)
    waited = time.perf_counter() - started
    return {
        "seconds": round(waited, 1),
        "timed_out": waited >= timeout_s,
        "indexed_rows": health.get("indexed_rows"),
        "pending_index_rows": health.get("pending_index_rows"),
    }


def _served_by_index(uri: str, collection: str) -> int:
    """Rows the query node searches through the built index: those of loaded segments that are
    sealed and carry it. A built index serves searches only once the query node has loaded it
    (until then a segment is searched through a temporary one: at a million rows, recall@10 0.62
    right after the build against 0.97 a few minutes later, at the same ef). Milvus indexes no
    segment under UNINDEXED_ROWS rows: those count as they are (searched exactly)."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        segments = client.list_loaded_segments(collection)
    finally:
        client.close()
    if any(s.state_name != "Sealed" for s in segments):
        return 0
    return sum(s.num_rows for s in segments if s.index_id or s.num_rows < UNINDEXED_ROWS)


class Busy:
    """Wraps a store: seconds spent in each of the named methods (calls may overlap); other
    attributes are the store's own."""

    def __init__(self, store, label: str, methods: list[str]) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._store = store
        for name in methods:
            setattr(self, name, self._timed(getattr(store, name), f"{label}.{name}"))

    def __getattr__(self, name: str):
        return getattr(self._store, name)

    def _timed(self, method, key: str):
        async def call(*args):
            started = time.perf_counter()
            try:
                return await method(*args)
            finally:
                self.seconds[key] += time.perf_counter() - started

        return call


async def run(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    from akasha_ray.migration import Ledger, migrate
    from akasha_ray.search import ask_tiers
    from akasha_ray.vectors.base import AsyncHotShard
    from akasha_ray.vectors.milvus_store import COLLECTION, MilvusStore

    lite = args.uri is None
    collection = COLLECTION if lite else f"akasha_bench_{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(args.seed)
    now = datetime.now(UTC)
    vectors = unit_rows(rng, args.n)
    config = WarmConfig(uri=args.uri, index_type=args.index)
    warm = await MilvusStore.open(config, work, collection=collection)
    try:
        log(f"loading {args.n:,} vectors into {warm.index.in_use} ({'Lite' if lite else 'server'})")
        started, cpu = time.perf_counter(), cpu_s()
        ids: list[str] = []
        for lo in range(0, args.n, CHUNK):
            batch = batch_of(vectors[lo : lo + CHUNK], lo, now, age_days=30)
            ids.extend(batch.column("id").to_pylist())
            await warm.insert(batch)
            if (lo // CHUNK) % 10 == 9:
                log(f"loaded {min(args.n, lo + CHUNK):,}")
        load = {"seconds": time.perf_counter() - started, "cpu_s": cpu_s() - cpu}
        log("waiting for the index to cover the rows")
        index_wait = await settle(warm, config, args.n, args.index_timeout_s)

        queries = vectors[rng.integers(0, args.n, args.queries)]
        queries = queries + 0.5 * unit_rows(rng, args.queries)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        exact = [{ids[i] for i in np.argpartition(-(vectors @ q), K)[:K]} for q in queries]
        numpy_scan = summarize(
            [seconds_of(lambda q=q: np.argpartition(-(vectors @ q), K)[:K]) for q in queries]
        )
        log("single searches")
        single, answers = await timed_async(
            [lambda q=q: warm.search(q, K) for q in queries], args.budget_s
        )
        log("batched searches")
        batched_s = []
        for lo in range(0, len(queries), 64):
            started = time.perf_counter()
            await asyncio.gather(*(warm.search(q, K) for q in queries[lo : lo + 64]))
            batched_s.append((time.perf_counter() - started) / len(queries[lo : lo + 64]))

        log(f"migrating {args.migrate:,} memories from a hot shard into warm")
        hot = await AsyncHotShard.open(work / "hot" / "shard-000.duckdb")
        fresh = unit_rows(rng, args.migrate)
        for lo in range(0, args.migrate, CHUNK):
            await hot.insert(batch_of(fresh[lo : lo + CHUNK], args.n + lo, now, age_days=8))
        source = Busy(hot, "hot", ["keys_before", "fetch", "delete_many"])
        target = Busy(warm, "warm", ["insert", "existing", "make_durable", "flush"])
        cpu = cpu_s()
        moved = await migrate(
            source,
            target,
            now - timedelta(days=7),
            Ledger(work / "ledger.jsonl"),
            batch_size=args.migrate_batch,
        )
        moved["batch_size"] = args.migrate_batch
        moved["cpu_s"] = round(cpu_s() - cpu, 1)
        moved["busy_s"] = {k: round(v, 2) for k, v in {**source.seconds, **target.seconds}.items()}

        # Hybrid: recent memories in hot, older in warm; one search over both. First the index
        # catches up with the migrated rows; then each query goes to hot, warm and both in turn,
        # so that whatever else the machine does weighs on the three alike.
        for lo in range(0, args.hybrid_hot, CHUNK):
            count = min(CHUNK, args.hybrid_hot - lo)
            await hot.insert(batch_of(unit_rows(rng, count), 10**7 + lo, now, age_days=1))
        log("waiting for the index to cover the migrated rows")
        moved["index_wait"] = await settle(
            warm, config, args.n + moved["moved"], args.index_timeout_s
        )
        log("hybrid searches")
        series = {
            "hot": lambda q: hot.search(q, K),
            "warm": lambda q: warm.search(q, K),
            "hot_and_warm": lambda q: ask_tiers(
                {"hot": lambda: hot.search(q, K), "warm": lambda: warm.search(q, K)}, 60
            ),
        }
        hybrid = await interleaved(series, queries, args.budget_s)
        stats = await warm.stats()
        await hot.close()
    finally:
        await warm.close()
        if not lite:
            await asyncio.to_thread(_drop, args.uri, collection)
    slowest_p50 = max(hybrid["hot"]["p50_ms"], hybrid["warm"]["p50_ms"])
    if lite:
        started = time.perf_counter()
        reopened = await MilvusStore.open(config, work, collection=collection)
        try:
            await reopened._vectors_built
            vectors_read = {"open_s": round(time.perf_counter() - started, 2)}
        finally:
            await reopened.close()
    search_data = {"now": now, "queries": queries, "ids": ids, "exact": exact}
    report = {
        "benchmark": "warm",
        "machine": machine(),
        "backend": "milvus lite" if lite else "milvus server",
        "index": stats["index"],
        "n": args.n,
        "load": {
            "seconds": round(load["seconds"], 1),
            "vectors_per_s": round(args.n / load["seconds"]),
            "cpu_s": round(load["cpu_s"], 1),
            "index_wait": index_wait,
        },
        "search_single": single,
        "search_batched_64_per_query": summarize(batched_s),
        "numpy_scan": numpy_scan,
        "recall_at_10": recall(answers, exact),
        "migration": moved,
        "hybrid": {
            "hot_vectors": args.hybrid_hot,
            **hybrid,
            "p50_over_slowest_tier_ms": round(hybrid["hot_and_warm"]["p50_ms"] - slowest_p50, 3),
        },
        "ratios": {
            "warm_p95_over_numpy_p95": ratio(single["p95_ms"], numpy_scan["p95_ms"]),
        },
    }
    if lite:
        report["reopen_with_vectors_read"] = vectors_read
    return report, search_data


def bench_http(args: argparse.Namespace, work: Path, search: dict[str, Any]) -> dict[str, Any]:
    """The same queries over HTTP, with a time range that holds only the --n warm vectors, from
    an Akasha serving the data dir the in-process half left."""
    from milvus_lite.server_manager import server_manager_instance

    from akasha_ray.bench.served import post_search, served_akasha

    # Lite's server stays up in this process after its client closes, holding the file's lock:
    # stop it, so that the warm actor can open the file.
    server_manager_instance.release_all()
    newest = search["now"] - timedelta(days=30)
    oldest = newest - timedelta(seconds=args.n)
    with served_akasha(work, port=args.port, cpus=args.cpus) as http:
        bodies = [
            json.dumps(
                {
                    "vector": q.tolist(),
                    "limit": K,
                    "start": oldest.isoformat(),
                    "end": newest.isoformat(),
                }
            ).encode()
            for q in search["queries"]
        ]

        log("HTTP searches")
        over_http, answers = timed([lambda b=b: post_search(http, b) for b in bodies])
    tiers = {tier["tier"]: tier for answer in answers for tier in answer["tiers"]}
    if set(tiers) != {"hot", "warm"}:  # hot is always asked: a range it cannot match is a mask
        raise RuntimeError(f"the HTTP searches asked {sorted(tiers)}, not hot and warm")
    return {
        "http": over_http,
        "http_warm_tier_latency": summarize(
            [t["latency_ms"] / 1000 for a in answers for t in a["tiers"] if t["tier"] == "warm"]
        ),
        "http_recall_at_10": recall([answer["results"] for answer in answers], search["exact"]),
    }


def _flush(uri: str, collection: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        client.flush(collection)
    finally:
        client.close()


def _drop(uri: str, collection: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        client.drop_collection(collection)
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench warm", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the warm tier")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--budget-s", type=float, default=120.0, help="per timed search series")
    parser.add_argument("--migrate", type=int, default=100_000, help="memories moved hot -> warm")
    parser.add_argument("--migrate-batch", type=int, default=10_000)
    parser.add_argument("--hybrid-hot", type=int, default=100_000, help="vectors in hot")
    parser.add_argument("--uri", default=None, help="a Milvus server (default: Milvus Lite)")
    parser.add_argument("--index", default="HNSW", choices=["HNSW", "DISKANN", "IVF_FLAT", "FLAT"])
    parser.add_argument(
        "--index-timeout-s", type=float, default=1800.0, help="longest wait for the index build"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-http", action="store_true", help="in-process figures only")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args(argv)
    if args.n < 1000 or args.queries < MIN_RUNS or args.migrate < 1 or args.hybrid_hot < 1:
        parser.error(f"--n >= 1000, --queries >= {MIN_RUNS}, --migrate and --hybrid-hot >= 1")
    if args.migrate_batch < 1:
        parser.error("--migrate-batch >= 1")
    work = Path(tempfile.mkdtemp(prefix="akasha-bench-warm-"))
    try:
        report, search = asyncio.run(run(args, work))
        if args.uri is None and not args.no_http:
            report.update(bench_http(args, work, search))
            report["ratios"]["http_p95_over_numpy_p95"] = ratio(
                report["http"]["p95_ms"], report["numpy_scan"]["p95_ms"]
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))
    return 0
