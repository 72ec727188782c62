"""Hot-tier benchmark: exact search over N vectors in-process and over HTTP, against numpy and
DuckDB SQL on the same vectors, plus ingest throughput against plain SentenceTransformer.encode.

    python -m akasha_ray.bench hot [--n 1000000] [--queries 200]

Prints one JSON document on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from akasha_ray.bench.stats import machine, ratio, summarize, timed
from akasha_ray.embedding_dim import DIM
from akasha_ray.routing import shard_for
from akasha_ray.search import merge_hits

SYSTEMS = 100
DAYS = 6
LOAD_CHUNK = 50_000


def log(message: str) -> None:
    print(f"[bench hot] {message}", file=sys.stderr, flush=True)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def load_shards(shards, vectors: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """Write the vectors into the shard files as memories of SYSTEMS systems over the last
    DAYS days (inside the hot window, so the HTTP half asks the hot tier only)."""
    from akasha_ray.records import SCHEMA, with_content_hashes

    n = len(vectors)
    systems = np.array([f"system-{i:03d}" for i in range(SYSTEMS)])
    system_of = rng.integers(0, SYSTEMS, n)
    shard_of_system = np.array([shard_for(s, len(shards)) for s in systems])
    now = datetime.now(UTC)
    start_us = int((now - timedelta(days=DAYS)).timestamp() * 1e6)
    created_us = np.sort(rng.integers(start_us, int(now.timestamp() * 1e6), n))
    ids = np.array([f"bench-{i:08d}" for i in range(n)])
    started = time.perf_counter()
    for lo in range(0, n, LOAD_CHUNK):
        hi = min(n, lo + LOAD_CHUNK)
        owner = shard_of_system[system_of[lo:hi]]
        for index, shard in enumerate(shards):
            rows = np.flatnonzero(owner == index) + lo
            if not len(rows):
                continue
            table = pa.Table.from_arrays(
                [
                    pa.array(ids[rows]),
                    pa.array(systems[system_of[rows]]),
                    pa.array(np.char.add("conv-", (rows // 10).astype(str))),
                    pa.array(np.char.add("synthetic memory ", rows.astype(str))),
                    pa.array(created_us[rows]).cast(pa.timestamp("us", tz="UTC")),
                    pa.nulls(len(rows), pa.string()),
                    pa.FixedSizeListArray.from_arrays(pa.array(vectors[rows].reshape(-1)), DIM),
                    pa.array(["random-unit-vectors"] * len(rows)),
                    pa.array(["bench"] * len(rows)),
                ],
                schema=pa.schema([f for f in SCHEMA if f.name != "content_hash"]),
            )
            shard.insert(with_content_hashes(table))
        log(f"loaded {hi:,}/{n:,}")
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 1),
        "vectors_per_s": round(n / seconds),
        "ids": ids,
        "systems": systems,
        "system_of": system_of,
    }


def numpy_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def bench_search(args, work: Path, rng: np.random.Generator) -> tuple[dict[str, Any], dict]:
    from akasha_ray.vectors.hot_shard import HotShard

    vectors = unit_rows(rng, args.n)
    paths = [work / "hot" / f"shard-{i:03d}.duckdb" for i in range(args.shards)]
    shards = [HotShard(p) for p in paths]
    loaded = load_shards(shards, vectors, rng)
    # Queries near stored vectors, as real queries land near real memories.
    queries = vectors[rng.integers(0, args.n, args.queries)] + 0.5 * unit_rows(rng, args.queries)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    k = 10

    def akasha(query, systems=None):
        return merge_hits([s.search(query, k, systems) for s in shards], k)

    log("in-process searches")
    in_process, answers = timed([lambda q=q: akasha(q) for q in queries])
    one_system = loaded["systems"][0]
    filtered, _ = timed([lambda q=q: akasha(q, [one_system]) for q in queries])
    log("numpy scans")
    numpy_scan, exact = timed([lambda q=q: numpy_top_k(vectors, q, k) for q in queries])
    recall = np.mean(
        [
            len({h["id"] for h in got} & set(loaded["ids"][want])) / k
            for got, want in zip(answers, exact, strict=True)
        ]
    )
    log("DuckDB array_cosine_similarity queries")
    sql = (
        f"SELECT id, array_cosine_similarity(embedding, ?::FLOAT[{DIM}]) AS similarity "
        "FROM memories ORDER BY similarity DESC LIMIT ?"
    )

    def duckdb_sql(query):
        rows = [s._db.execute(sql, [query.tolist(), k]).fetchall() for s in shards]
        return sorted((r for part in rows for r in part), key=lambda r: -r[1])[:k]

    sql_queries = queries[: args.sql_queries]
    duckdb_scan, sql_answers = timed([lambda q=q: duckdb_sql(q) for q in sql_queries], warmup=1)
    sql_recall = np.mean(
        [
            len({r[0] for r in got} & set(loaded["ids"][want])) / k
            for got, want in zip(sql_answers, exact[: len(sql_answers)], strict=True)
        ]
    )
    for shard in shards:
        shard.close()
    report = {
        "load": {k: loaded[k] for k in ("seconds", "vectors_per_s")},
        "in_process": in_process,
        "in_process_one_system": filtered,
        "numpy_scan": numpy_scan,
        "duckdb_sql": duckdb_scan,
        "recall_at_10": round(float(recall), 4),
        "duckdb_sql_recall_at_10": round(float(sql_recall), 4),
    }
    return report, {"queries": queries, "exact": exact, "ids": loaded["ids"]}


def bench_http(args, work: Path, search_data: dict, records: list[dict]) -> dict[str, Any]:
    from akasha_ray.bench.served import post_search, served_akasha

    with served_akasha(work, port=args.port, cpus=args.cpus, hot={"shards": args.shards}) as http:
        # A range inside the hot window that covers every loaded vector: only hot is asked.
        start = (datetime.now(UTC) - timedelta(days=DAYS + 0.5)).isoformat()
        bodies = [
            json.dumps({"vector": q.tolist(), "limit": 10, "start": start}).encode()
            for q in search_data["queries"]
        ]

        log("HTTP searches")
        over_http, answers = timed([lambda b=b: post_search(http, b) for b in bodies])
        ids = search_data["ids"]
        recall = np.mean(
            [
                len({h["id"] for h in got["results"]} & set(ids[want])) / 10
                for got, want in zip(answers, search_data["exact"], strict=True)
            ]
        )
        tier_ms = summarize([a["tiers"][0]["latency_ms"] / 1000 for a in answers])
        ingest = bench_ingest_http(http, records) if records else None
        return {
            "http": over_http,
            "http_tier_latency": tier_ms,
            "http_recall_at_10": round(float(recall), 4),
            "ingest_http": ingest,
        }


def throughput(texts: int, seconds: float) -> dict[str, Any]:
    return {"texts": texts, "seconds": round(seconds, 2), "per_s": round(texts / seconds, 1)}


def bench_ingest_http(http, records: list[dict]) -> dict[str, Any]:
    """The real path: POST /v1/memories in batches of 500, embedded by the embedder replica."""
    log(f"ingesting {len(records)} real texts over HTTP")
    started = time.perf_counter()
    for lo in range(0, len(records), 500):
        http.post("/v1/memories", json={"memories": records[lo : lo + 500]}).raise_for_status()
    return throughput(len(records), time.perf_counter() - started)


def bench_plain_encode(records: list[dict]) -> dict[str, Any]:
    """The peer: sentence-transformers on the same texts, every core, nothing else."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    from akasha_ray.embedding import bundled_model_path

    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    texts = [r["content"] for r in records]
    model.encode(texts[:64])
    log(f"plain encode of {len(texts)} texts")
    started = time.perf_counter()
    model.encode(texts, batch_size=64, normalize_embeddings=True)
    return throughput(len(texts), time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench hot", description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the hot shards")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--queries", type=int, default=200, help="timed searches per method")
    parser.add_argument("--sql-queries", type=int, default=30, help="timed DuckDB SQL scans")
    parser.add_argument("--ingest-texts", type=int, default=3000, help="0 skips ingest")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--no-http", action="store_true", help="in-process figures only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1000 or args.queries < 10:
        parser.error("--n must be at least 1000 and --queries at least 10")
    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="akasha-bench-hot-"))
    # Ray and the libraries print to stdout; only the JSON report may go there.
    with contextlib.redirect_stdout(sys.stderr):
        try:
            search, search_data = bench_search(args, work, rng)
            from akasha_ray import demo

            # Real texts, dated now: the ingest path under test is embed + hot shard write. Each
            # its own id: without one, two equal texts of a conversation in one batch would be
            # one memory (ids derive from the content and time), with other metadata: a 409.
            records = [
                {"id": f"ingest-{i}", **{k: v for k, v in r.items() if k != "created_at"}}
                for i, r in enumerate(demo.generate(args.ingest_texts, seed=args.seed))
            ]
            plain = bench_plain_encode(records) if records else None
            served = None if args.no_http else bench_http(args, work, search_data, records)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report: dict[str, Any] = {
        "benchmark": "hot",
        "machine": machine(),
        "n": args.n,
        "shards": args.shards,
        "k": 10,
        **search,
        "plain_encode": plain,
    }
    ratios = {
        "in_process_p95_over_numpy_p95": ratio(
            search["in_process"]["p95_ms"], search["numpy_scan"]["p95_ms"]
        ),
        "in_process_p50_over_duckdb_sql_p50": ratio(
            search["in_process"]["p50_ms"], search["duckdb_sql"]["p50_ms"]
        ),
    }
    if served:
        report.update(served)
        ratios["http_overhead_p50_ms"] = round(
            served["http"]["p50_ms"] - search["in_process"]["p50_ms"], 3
        )
        ratios["http_p95_over_numpy_p95"] = ratio(
            served["http"]["p95_ms"], search["numpy_scan"]["p95_ms"]
        )
        if plain and served["ingest_http"]:
            ratios["ingest_http_over_plain_encode"] = ratio(
                served["ingest_http"]["per_s"], plain["per_s"]
            )
    report["ratios"] = ratios
    print(json.dumps(report, indent=2))
    return 0
