"""Bounded work: do searches stay fast while the service is busy?

`python -m akasha_ray.bench bounded [--entities N --relationships M --ingest K ...]` prints one
JSON document on stdout (progress on stderr), with two parts:

- `embedder` (in process, no Ray): query-embedding latency idle, and during a bulk encode of
  `--ingest` texts of `--text-bytes` bytes through the embedder's own path (chunks on a worker
  thread, queries first: serve_apps/embedder.py). Before, a bulk encode ran on the replica's event
  loop, so a query waited for all of it: `bulk_encode_s` is that wait.
- `served` (a whole Akasha on a local Ray cluster): a graph of `--relationships` random edges is
  loaded straight into the graph store's file (not over HTTP), then `POST /v1/search` p50/p95 is
  measured idle, and again while a bulk ingest of `--ingest` x `--text-bytes` memories runs over
  HTTP together with five concurrent `GET /v1/graph/entities/{id}/neighbors?depth=5`. The
  target: loaded p95 within 2x of idle (`targets`). A benchmark, not a test: nothing asserts it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.stats import loaded_vs_idle, machine, summarize

_WORDS = (
    "river heron memory market quarterly planning garden invoice travel budget sensor kitchen "
    "report meeting customer weather engine battery signal archive protocol harvest lantern"
)
WORDS = _WORDS.split()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="akasha bench bounded", description=__doc__)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--relationships", type=int, default=1_000_000)
    parser.add_argument("--ingest", type=int, default=1000, help="memories in the bulk ingest")
    parser.add_argument("--text-bytes", type=int, default=2048, help="bytes per bulk memory")
    parser.add_argument("--ingest-batch", type=int, default=100, help="memories per POST")
    parser.add_argument("--seed-memories", type=int, default=2000, help="searched memories")
    parser.add_argument("--searches", type=int, default=60, help="idle searches")
    parser.add_argument("--queries", type=int, default=30, help="idle query embeddings")
    parser.add_argument("--neighbors", type=int, default=5, help="concurrent depth-5 calls")
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-served", action="store_true", help="the embedder part only")
    parser.add_argument("--no-embedder", action="store_true", help="the served part only")
    return parser.parse_args(argv)


def _log(message: str) -> None:
    print(f"[bench bounded] {message}", file=sys.stderr, flush=True)


def _text(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


# -- the embedder in process -------------------------------------------------------------------


async def _embedder_part(args: argparse.Namespace) -> dict[str, Any]:
    from akasha_ray.bench.encode import embedder_path
    from serve_apps.embedder import BULK_BUDGET_CHARS

    rng = random.Random(args.seed)
    queries = [" ".join(rng.choice(WORDS) for _ in range(6)) for _ in range(args.queries)]
    texts = [_text(rng, args.text_bytes) for _ in range(args.ingest)]
    part = await embedder_path(None, queries, texts)
    _log(f"embedder: bulk of {args.ingest} in {part['bulk_encode_s']} s")
    return {
        **part,
        "bulk_budget_chars": BULK_BUDGET_CHARS,
        "note": "before: the bulk encode blocked the replica's loop, a query waited bulk_encode_s",
    }


# -- a whole Akasha ----------------------------------------------------------------------------


async def _load_graph(args: argparse.Namespace, data_dir: Path) -> tuple[list[str], dict]:
    from akasha_ray.bench.graph import _load
    from akasha_ray.graph import graph_file
    from akasha_ray.graph.duckdb_store import DuckDBGraphStore

    rng = np.random.default_rng(args.seed)
    ids = [f"ent:{i:08d}" for i in range(args.entities)]
    types = [f"REL_{t}" for t in range(4)]
    edges = {
        "src": rng.integers(0, args.entities, args.relationships),
        "dst": rng.integers(0, args.entities, args.relationships),
        "type": rng.integers(0, len(types), args.relationships),
    }
    store = await DuckDBGraphStore.open(graph_file(data_dir))
    try:
        load = await _load(store, ids, edges, types)  # shared entities: the admin's default
    finally:
        await store.close()
    return ids, load


def _served_part(args: argparse.Namespace, data_dir: Path, ids: list[str]) -> dict[str, Any]:
    from akasha_ray.bench.served import served_akasha

    rng = random.Random(args.seed)
    # A fixed hot window: every memory here is hot, whatever the searches measure.
    with served_akasha(data_dir, port=args.port, tiers={"hot_target_p95_ms": None}) as http:
        seed = [
            {"system_id": "bench", "conversation_id": "c", "content": _text(rng, 120)}
            for _ in range(args.seed_memories)
        ]
        for start in range(0, len(seed), 500):
            http.post("/v1/memories", json={"memories": seed[start : start + 500]})
        _log(f"{len(seed)} memories to search")

        def search() -> float:
            body = {"query": " ".join(rng.choice(WORDS) for _ in range(5)), "limit": 10}
            started = time.perf_counter()
            http.post("/v1/search", json={**body, "system_ids": ["bench"]}).raise_for_status()
            return time.perf_counter() - started

        for _ in range(5):
            search()  # warm-up
        idle = [search() for _ in range(args.searches)]
        _log(f"idle searches: p95 {summarize(idle)['p95_ms']} ms")

        bulk = [
            {"system_id": "bulk", "conversation_id": "b", "content": _text(rng, args.text_bytes)}
            for _ in range(args.ingest)
        ]
        centers = [rng.choice(ids) for _ in range(args.neighbors)]
        busy = threading.Event()
        busy.set()

        def ingest() -> float:
            started = time.perf_counter()
            for start in range(0, len(bulk), args.ingest_batch):
                batch = bulk[start : start + args.ingest_batch]
                http.post("/v1/memories", json={"memories": batch}).raise_for_status()
            return time.perf_counter() - started

        def neighbors(center: str) -> dict[str, Any]:
            started = time.perf_counter()
            answer = http.get(f"/v1/graph/entities/{center}/neighbors", params={"depth": 5})
            answer.raise_for_status()
            body = answer.json()
            return {
                "ms": round((time.perf_counter() - started) * 1000, 1),
                "neighbors": len(body["neighbors"]),
                "truncated": body.get("truncated"),
            }

        with ThreadPoolExecutor(1 + len(centers)) as pool:
            ingesting = pool.submit(ingest)
            walks = [pool.submit(neighbors, c) for c in centers]
            loaded = []
            while not ingesting.done() or len(loaded) < args.searches // 4:
                loaded.append(search())
            ingest_s = ingesting.result()
            walked = [w.result() for w in walks]
        _log(f"loaded searches: p95 {summarize(loaded)['p95_ms']} ms; ingest {ingest_s:.1f} s")
    return {
        **loaded_vs_idle(idle, loaded),
        "ingest": {"memories": args.ingest, "text_bytes": args.text_bytes, "s": round(ingest_s, 2)},
        "neighbors_depth_5": walked,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "benchmark": "bounded",
        "machine": {**machine(), "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "params": vars(args),
    }
    if not args.no_embedder:
        report["embedder"] = asyncio.run(_embedder_part(args))
    if not args.no_served:
        with tempfile.TemporaryDirectory(prefix="akasha-bench-bounded-") as tmp:
            ids, load = asyncio.run(_load_graph(args, Path(tmp)))
            _log(f"graph: {load}")
            report["graph_load"] = load
            report["served"] = _served_part(args, Path(tmp), ids)
    targets = {}
    if "embedder" in report:
        targets["query_embedding_p95_within_2x"] = (report["embedder"]["p95_ratio"] or 0) <= 2
    if "served" in report:
        targets["search_p95_within_2x"] = (report["served"]["p95_ratio"] or 0) <= 2
    report["targets"] = targets
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: list[str] | None = None) -> int:
    json.dump(run(_parse(argv)), sys.stdout, indent=2, default=str)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
