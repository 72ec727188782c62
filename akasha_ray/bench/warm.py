"""Warm-tier benchmark: Milvus search against exact brute force on the same vectors, migration
throughput from a hot shard into Milvus, and a hybrid hot+warm search against its slowest tier.

    python -m akasha_ray.bench warm [--n 1000000] [--uri http://milvus:19530]

Without --uri it runs on Milvus Lite in a temporary data dir. Prints one JSON document on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.hot import unit_rows
from akasha_ray.bench.stats import machine, ratio, summarize
from akasha_ray.config import WarmConfig
from akasha_ray.models import MemoryIn
from akasha_ray.records import build_batch

K = 10
CHUNK = 20_000


def log(message: str) -> None:
    print(f"[bench warm] {message}", file=sys.stderr, flush=True)


def batch_of(vectors: np.ndarray, first: int, now: datetime, age_days: float):
    memories = [
        MemoryIn(
            id=f"bench-{first + i:08d}",
            system_id=f"system-{(first + i) % 100:03d}",
            conversation_id=f"conv-{(first + i) // 10}",
            content=f"synthetic memory {first + i}",
            created_at=now - timedelta(days=age_days, seconds=first + i),
        )
        for i in range(len(vectors))
    ]
    return build_batch(
        memories, vectors, model="random-unit-vectors", model_revision="bench", now=now
    )


async def timed_async(calls) -> tuple[dict[str, float], list[Any]]:
    for call in calls[:3]:
        await call()
    seconds, results = [], []
    for call in calls:
        started = time.perf_counter()
        results.append(await call())
        seconds.append(time.perf_counter() - started)
    return summarize(seconds), results


def recall(answers: list[list[dict]], exact: list[np.ndarray]) -> float:
    return round(
        float(
            np.mean(
                [
                    len({h["id"] for h in got} & {f"bench-{i:08d}" for i in want}) / K
                    for got, want in zip(answers, exact, strict=True)
                ]
            )
        ),
        4,
    )


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from akasha_ray.migration import Ledger, migrate
    from akasha_ray.search import ask_tiers
    from akasha_ray.vectors.base import AsyncHotShard
    from akasha_ray.vectors.milvus_store import MilvusStore

    rng = np.random.default_rng(args.seed)
    now = datetime.now(UTC)
    vectors = unit_rows(rng, args.n)
    warm = await MilvusStore.open(WarmConfig(uri=args.uri, index_type=args.index), work)
    log(f"loading {args.n:,} vectors into {warm.index.in_use} ({'server' if args.uri else 'Lite'})")
    started = time.perf_counter()
    for lo in range(0, args.n, CHUNK):
        await warm.insert(batch_of(vectors[lo : lo + CHUNK], lo, now, age_days=30))
        log(f"loaded {min(args.n, lo + CHUNK):,}")
    load_s = time.perf_counter() - started

    queries = vectors[rng.integers(0, args.n, args.queries)] + 0.5 * unit_rows(rng, args.queries)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = [np.argsort(-(vectors @ q))[:K] for q in queries]
    numpy_scan = summarize(
        [_seconds(lambda q=q: np.argpartition(-(vectors @ q), K)[:K]) for q in queries]
    )
    single, answers = await timed_async([lambda q=q: warm.search(q, K) for q in queries])
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
    moved = await migrate(
        hot, warm, now - timedelta(days=7), Ledger(work / "ledger.jsonl"), batch_size=5000
    )
    # Hybrid: recent memories in hot, older in warm; one search over both.
    for lo in range(0, args.hybrid_hot, CHUNK):
        count = min(CHUNK, args.hybrid_hot - lo)
        await hot.insert(batch_of(unit_rows(rng, count), 10**7 + lo, now, age_days=1))
    hot_only, _ = await timed_async([lambda q=q: hot.search(q, K) for q in queries])
    warm_only, _ = await timed_async([lambda q=q: warm.search(q, K) for q in queries])
    hybrid, _ = await timed_async(
        [
            lambda q=q: ask_tiers(
                {"hot": lambda: hot.search(q, K), "warm": lambda: warm.search(q, K)}, 30
            )
            for q in queries
        ]
    )
    stats = await warm.stats()
    await hot.close()
    await warm.close()
    slowest_p50 = max(hot_only["p50_ms"], warm_only["p50_ms"])
    return {
        "benchmark": "warm",
        "machine": machine(),
        "backend": "milvus server" if args.uri else "milvus lite",
        "index": stats["index"],
        "n": args.n,
        "load": {"seconds": round(load_s, 1), "vectors_per_s": round(args.n / load_s)},
        "search_single": single,
        "search_batched_64_per_query": summarize(batched_s),
        "numpy_scan": numpy_scan,
        "recall_at_10": recall(answers, exact),
        "migration": moved,
        "hybrid": {
            "hot_vectors": args.hybrid_hot,
            "hot": hot_only,
            "warm": warm_only,
            "hot_and_warm": hybrid,
            "p50_over_slowest_tier_ms": round(hybrid["p50_ms"] - slowest_p50, 3),
        },
        "ratios": {
            "warm_p95_over_numpy_p95": ratio(single["p95_ms"], numpy_scan["p95_ms"]),
        },
    }


def _seconds(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench warm", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the warm tier")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--migrate", type=int, default=20_000, help="memories moved hot -> warm")
    parser.add_argument("--hybrid-hot", type=int, default=100_000, help="vectors in hot")
    parser.add_argument("--uri", default=None, help="a Milvus server (default: Milvus Lite)")
    parser.add_argument("--index", default="HNSW", choices=["HNSW", "DISKANN", "IVF_FLAT", "FLAT"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1000 or args.queries < 10 or args.migrate < 1 or args.hybrid_hot < 1:
        parser.error("--n >= 1000, --queries >= 10, --migrate and --hybrid-hot >= 1")
    work = Path(tempfile.mkdtemp(prefix="akasha-bench-warm-"))
    try:
        report = asyncio.run(run(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))
    return 0
