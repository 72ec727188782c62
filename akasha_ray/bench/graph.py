"""Graph benchmark: bulk load, 5-hop shortest paths and neighbourhoods, against networkx.

`python -m akasha_ray.bench graph [--entities N --relationships M]` builds one random graph,
loads it into the embedded (DuckDB) store and into a networkx graph in the same process, asks both
the same questions in alternation (so machine noise hits both alike), checks that they agree on
every path length, and prints one JSON document on stdout (progress goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import networkx as nx
import numpy as np

from akasha_ray.bench.stats import machine, ratio, seconds_of, summarize
from akasha_ray.graph import graph_file
from akasha_ray.graph.duckdb_store import DuckDBGraphStore
from akasha_ray.graph.models import DEFAULT_MAX_FRONTIER, Entity, Relationship

BATCH = 100_000
UNMATCHED_ROUTE = "/v1/no-such-route"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="akasha bench graph", description=__doc__)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--relationships", type=int, default=1_000_000)
    parser.add_argument("--types", type=int, default=4, help="distinct relationship types")
    parser.add_argument("--queries", type=int, default=500, help="path queries per side")
    parser.add_argument("--neighbor-queries", type=int, default=200)
    parser.add_argument("--writes", type=int, default=200, help="write-then-path rounds")
    parser.add_argument("--max-hops", type=int, default=5)
    parser.add_argument(
        "--max-frontier", type=int, default=DEFAULT_MAX_FRONTIER, help="the traversal cap"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--http-queries", type=int, default=300, help="path queries over HTTP")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--no-http", action="store_true", help="in-process figures only")
    args = parser.parse_args(argv)
    if args.entities < 2 or args.relationships < 1:
        parser.error("need at least 2 entities and 1 relationship")
    return args


def _log(message: str) -> None:
    print(f"[bench graph] {message}", file=sys.stderr, flush=True)


def _machine() -> dict[str, Any]:
    # The machine is shared: the load average says how quiet it was.
    return {
        **machine(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "duckdb": duckdb.__version__,
        "networkx": nx.__version__,
    }


async def _load(
    store: DuckDBGraphStore, ids: list[str], edges: dict[str, np.ndarray], types: list[str]
) -> dict[str, Any]:
    started = time.perf_counter()
    entities = [Entity(id=entity_id, type="Thing") for entity_id in ids]
    validate_s = time.perf_counter() - started
    started = time.perf_counter()
    for start in range(0, len(entities), BATCH):
        await store.upsert_entities(entities[start : start + BATCH])
    entities_s = time.perf_counter() - started
    del entities

    now = datetime.now(UTC)
    rels_s = 0.0
    total = len(edges["src"])
    for start in range(0, total, BATCH):
        stop = min(start + BATCH, total)
        t0 = time.perf_counter()
        batch = [
            Relationship(source=ids[s], target=ids[d], type=types[t], created_at=now)
            for s, d, t in zip(
                edges["src"][start:stop].tolist(),
                edges["dst"][start:stop].tolist(),
                edges["type"][start:stop].tolist(),
                strict=True,
            )
        ]
        t1 = time.perf_counter()
        await store.upsert_relationships(batch)
        t2 = time.perf_counter()
        validate_s += t1 - t0
        rels_s += t2 - t1
        _log(f"loaded {stop:,}/{total:,} relationships")
    # The first read builds the adjacency from the tables: part of the load's cost.
    started = time.perf_counter()
    await store.shortest_path(ids[0], ids[0])
    build_s = time.perf_counter() - started
    stats = await store.stats()
    return {
        "entities": len(ids),
        "relationships_sent": total,
        "relationships_stored": stats.relationships,
        "entities_s": round(entities_s, 3),
        "relationships_s": round(rels_s, 3),
        "adjacency_build_s": round(build_s, 3),
        "relationships_per_s": round(total / (rels_s + build_s)),
        "model_validation_s": round(validate_s, 3),
        "relationships_per_s_with_validation": round(total / (rels_s + build_s + validate_s)),
    }


async def _paths(
    store: DuckDBGraphStore, graph: nx.Graph, pairs: list[tuple[str, str]], max_hops: int
) -> dict[str, Any]:
    ours, theirs, lengths = [], [], []
    disagree = 0
    for i, (source, target) in enumerate(pairs):
        # Alternate who goes first so neither side always meets a warm cache.
        for turn in (0, 1) if i % 2 == 0 else (1, 0):
            if turn == 0:
                t0 = time.perf_counter()
                found = await store.shortest_path(source, target, max_hops=max_hops)
                ours.append(time.perf_counter() - t0)
            else:
                t0 = time.perf_counter()
                try:
                    peer: list[str] | None = nx.bidirectional_shortest_path(graph, source, target)
                except nx.NetworkXNoPath:
                    peer = None
                theirs.append(time.perf_counter() - t0)
        our_len = None if found.path is None else len(found.path) - 1
        peer_len = None if peer is None or len(peer) - 1 > max_hops else len(peer) - 1
        disagree += our_len != peer_len
        lengths.append(our_len)
    store_summary, nx_summary = summarize(ours), summarize(theirs)
    histogram: dict[str, int] = {}
    for length in lengths:
        key = "none" if length is None else str(length)
        histogram[key] = histogram.get(key, 0) + 1
    return {
        "max_hops": max_hops,
        "store": store_summary,
        "networkx": nx_summary,
        "ratio_p50": ratio(store_summary["p50_ms"], nx_summary["p50_ms"]),
        "ratio_p95": ratio(store_summary["p95_ms"], nx_summary["p95_ms"]),
        "length_disagreements": disagree,
        "path_lengths": dict(sorted(histogram.items())),
    }


async def _neighbors(
    store: DuckDBGraphStore, graph: nx.Graph, centers: list[str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Depth 5 reaches most of a random graph: bounded by the store's frontier cap, it says
    # `truncated` and is not compared for counts.
    for depth in (1, 2, 5):
        ours, theirs, sizes = [], [], []
        disagree = truncated = 0
        for center in centers:
            t0 = time.perf_counter()
            hood = await store.neighbors(center, depth=depth, limit=10_000)
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            peer = nx.single_source_shortest_path_length(graph, center, cutoff=depth)
            theirs.append(time.perf_counter() - t0)
            disagree += len(hood.neighbors) != len(peer) - 1 and not hood.truncated
            truncated += hood.truncated
            sizes.append(len(hood.neighbors))
        store_summary, nx_summary = summarize(ours), summarize(theirs)
        out[f"depth_{depth}"] = {
            "store": store_summary,
            "networkx": nx_summary,
            "ratio_p95": ratio(store_summary["p95_ms"], nx_summary["p95_ms"]),
            "mean_neighbors": round(float(np.mean(sizes)), 1),
            "count_disagreements": disagree,
            "truncated": truncated,
            "max_frontier": store.max_frontier,
            "note": "store returns entities and relationships; networkx node distances only",
        }
    return out


async def _writes_then_paths(
    store: DuckDBGraphStore, ids: list[str], rounds: int, rng: random.Random, max_hops: int
) -> dict[str, Any]:
    """One new relationship, then a path query: the adjacency must be fresh and stay fast."""
    writes, reads = [], []
    for _ in range(rounds):
        source, target = rng.choice(ids), rng.choice(ids)
        rel = Relationship(source=source, target=target, type="WROTE_NOW")
        t0 = time.perf_counter()
        await store.upsert_relationships([rel])
        t1 = time.perf_counter()
        found = await store.shortest_path(source, target, max_hops=max_hops, types=["WROTE_NOW"])
        t2 = time.perf_counter()
        if found.path is None or len(found.path) > 2:
            raise AssertionError(
                f"fresh relationship {source}->{target} not seen by the path query"
            )
        writes.append(t1 - t0)
        reads.append(t2 - t1)
    stats = await store.stats()
    return {
        "upsert_one": summarize(writes),
        "path_after_write": summarize(reads),
        "adjacency": stats.details,
    }


async def _run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    ids = [f"ent:{i:08d}" for i in range(args.entities)]
    types = [f"REL_{t}" for t in range(args.types)]
    edges = {
        "src": rng.integers(0, args.entities, args.relationships),
        "dst": rng.integers(0, args.entities, args.relationships),
        "type": rng.integers(0, args.types, args.relationships),
    }
    _log(f"{args.entities:,} entities, {args.relationships:,} relationships in {data_dir}")
    store = await DuckDBGraphStore.open(graph_file(data_dir), args.max_frontier)
    try:
        load = await _load(store, ids, edges, types)
        _log(f"load: {load}")
        started = time.perf_counter()
        graph = nx.Graph()
        graph.add_nodes_from(ids)
        graph.add_edges_from(
            zip(
                map(ids.__getitem__, edges["src"].tolist()),
                map(ids.__getitem__, edges["dst"].tolist()),
                strict=True,
            )
        )
        nx_build_s = time.perf_counter() - started
        pick = random.Random(args.seed)
        pairs = [(pick.choice(ids), pick.choice(ids)) for _ in range(args.queries)]
        paths = await _paths(store, graph, pairs, args.max_hops)
        _log(f"paths: p95 {paths['store']['p95_ms']} ms vs {paths['networkx']['p95_ms']} ms")
        centers = [pick.choice(ids) for _ in range(args.neighbor_queries)]
        neighbors = await _neighbors(store, graph, centers)
        writes = await _writes_then_paths(store, ids, args.writes, pick, args.max_hops)
        files = graph_file(data_dir).parent.glob("graph.duckdb*")  # the file and its WAL
        file_mb = sum(f.stat().st_size for f in files) / 2**20
    finally:
        await store.close()
    return {
        "benchmark": "graph",
        "backend": "duckdb (embedded, in-process, async facade)",
        "machine": _machine(),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "load": {
            **load,
            "networkx_build_s": round(nx_build_s, 3),
            "duckdb_file_mb": round(file_mb, 1),
        },
        "shortest_path": paths,
        "http_pairs": pairs[: args.http_queries],
        "neighbors": neighbors,
        "write_then_path": writes,
        "targets": {
            "path_p95_under_2s": paths["store"]["p95_ms"] < 2000,
            "path_p95_not_slower_than_networkx": (paths["ratio_p95"] or 0) <= 1.0,
            "bulk_load_at_least_100k_per_s": load["relationships_per_s"] >= 100_000,
            "path_lengths_agree_with_networkx": paths["length_disagreements"] == 0,
        },
    }


def _http_paths(args: argparse.Namespace, data_dir: Path, pairs: list[tuple[str, str]]) -> dict:
    """The same path queries through GET /v1/graph/path, the graph actor owning the same file;
    in turn with each, a GET of a route that does not exist: Serve's proxy and the ingress's
    routing alone (no key, no actor), the floor under every request's latency."""
    from akasha_ray.bench.served import served_akasha

    with served_akasha(data_dir, port=args.port) as http:
        _log(f"{len(pairs)} path queries over HTTP, each with an unmatched request")

        def path(source: str, target: str) -> None:
            params = {"source": source, "target": target, "max_hops": args.max_hops}
            http.get("/v1/graph/path", params=params).raise_for_status()

        def unmatched() -> None:
            if http.get(UNMATCHED_ROUTE).status_code != 404:
                raise RuntimeError(f"{UNMATCHED_ROUTE} should be a 404")

        paths, floor = [], []
        for source, target in pairs[:3]:  # warm-up
            path(source, target)
            unmatched()
        for source, target in pairs:
            paths.append(seconds_of(lambda s=source, t=target: path(s, t)))
            floor.append(seconds_of(unmatched))
    paths, floor = summarize(paths), summarize(floor)
    return {
        "shortest_path_http": paths,
        "unmatched_route_http": floor,
        "path_above_unmatched_p50_ms": round(paths["p50_ms"] - floor["p50_ms"], 3),
    }


def _run_all(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    result = asyncio.run(_run(args, data_dir))
    pairs = result.pop("http_pairs")
    if not args.no_http:  # after the event loop: Ray and Serve start outside it
        http = _http_paths(args, data_dir, pairs)
        result.update(http)
        result["targets"]["http_path_p95_at_most_20ms"] = http["shortest_path_http"]["p95_ms"] <= 20
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        if graph_file(args.data_dir).exists():
            raise SystemExit(f"{graph_file(args.data_dir)} exists; give an empty --data-dir")
        result = _run_all(args, args.data_dir)
    else:
        with tempfile.TemporaryDirectory(prefix="akasha-bench-graph-") as tmp:
            result = _run_all(args, Path(tmp))
    json.dump(result, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
