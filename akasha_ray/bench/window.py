"""The adaptive hot window, shown working: hot shards loaded past a latency target, then a few
migrator passes with hot search p95 measured after each (the rule runs every pass, so a step that
falls short is followed by another). The p95 is the one the rule uses (timed inside the shard
actors); a numpy scan of a shard-sized matrix is the peer baseline, to show how the scan cost
follows the rows.

    python -m akasha_ray.bench window [--n 400000] [--passes 3] [--target-ms 0 (half the p95)]

Runs on a local Ray cluster of its own and Milvus Lite in a temporary data dir; JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.hot import load_shards, unit_rows
from akasha_ray.bench.stats import machine, ratio, summarize

K = 10


def log(message: str) -> None:
    print(f"[bench window] {message}", file=sys.stderr, flush=True)


class _Shard:
    """A shard actor as the synchronous store bench.hot loads."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def insert(self, table) -> list[str]:
        import ray

        return ray.get(self.handle.insert.remote(table))


def measure(shards, queries: np.ndarray, rows_per_shard: int, rng) -> dict[str, Any]:
    """Every query on every shard, then what the shards timed; a numpy scan of a matrix the size
    of the biggest shard as the baseline."""
    import ray

    for shard in shards:
        ray.get(shard.reset_load.remote())
        ray.get([shard.search.remote(q, K) for q in queries])
    loads = ray.get([s.load.remote() for s in shards])
    matrix = unit_rows(rng, max(1, rows_per_shard))
    seconds = []
    for q in queries:
        started = time.perf_counter()
        np.argpartition(-(matrix @ q), K)
        seconds.append(time.perf_counter() - started)
    return {
        "shards": [
            {
                "rows": x["rows"],
                "p95_ms": round(x["p95_ms"], 3),
                "scan_p95_ms": round(x["scan_p95_ms"], 3),
            }
            for x in loads
        ],
        "numpy_scan_of_biggest_shard": summarize(seconds),
    }


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import ray
    from threadpoolctl import threadpool_limits

    from actors import supervisor
    from akasha_ray import config

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    rng = np.random.default_rng(args.seed)
    base = {"data_dir": work / "data", "namespace": "bench-window"}
    shards = supervisor.hot_shards(config.load(**base))
    log(f"loading {args.n:,} memories of the last 6 days into {len(shards)} hot shards")
    vectors = unit_rows(rng, args.n)
    load_shards([_Shard(s) for s in shards], vectors, rng)
    queries = vectors[rng.integers(0, args.n, args.queries)] + 0.5 * unit_rows(rng, args.queries)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    with threadpool_limits(limits=1, user_api="blas"):  # as each shard actor has
        log("searching before the pass")
        rows = max(ray.get(s.load.remote())["rows"] for s in shards)
        before = measure(shards, queries, rows, rng)
        worst = max(s["p95_ms"] for s in before["shards"])
        target = args.target_ms or round(worst / 2, 3)
        settings = config.load(**base, tiers={"hot_target_p95_ms": target, "hot_min_days": 0.1})
        migrator = supervisor.migrator(settings)
        passes = []
        for number in range(1, args.passes + 1):
            log(f"target p95 {target} ms; migrator pass {number}")
            started = time.perf_counter()
            passed = ray.get(migrator.migrate.remote())
            pass_s = time.perf_counter() - started
            log("searching after it")
            rows = max(ray.get(s.load.remote())["rows"] for s in shards)
            after = measure(shards, queries, rows, rng)
            moved = sum(v["moved"] for k, v in passed["moved"].items() if "warm" in k)
            passes.append(
                {
                    "hot_window": passed["hot_window"],
                    "moved_to_warm": moved,
                    "seconds": round(pass_s, 1),
                    "after": after,
                    "worst_shard_p95_over_target": ratio(
                        max(s["p95_ms"] for s in after["shards"]), target
                    ),
                }
            )
    ray.shutdown()
    last = passes[-1]["after"]
    return {
        "benchmark": "window",
        "machine": machine(),
        "n": args.n,
        "queries_per_shard": args.queries,
        "target_p95_ms": target,
        "before": before,
        "passes": passes,
        "ratios": {
            "hot_p95_last_over_before": ratio(max(s["p95_ms"] for s in last["shards"]), worst),
            "numpy_p95_last_over_before": ratio(
                last["numpy_scan_of_biggest_shard"]["p95_ms"],
                before["numpy_scan_of_biggest_shard"]["p95_ms"],
            ),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench window", description=__doc__)
    parser.add_argument("--n", type=int, default=400_000, help="memories in the hot shards")
    parser.add_argument("--queries", type=int, default=100, help="searches per shard, each time")
    parser.add_argument("--target-ms", type=float, default=0, help="0: half the p95 measured")
    parser.add_argument("--passes", type=int, default=3, help="migrator passes, each measured")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1000 or args.queries < 20 or args.target_ms < 0 or args.passes < 1:
        parser.error(
            "--n >= 1000, --queries >= 20 (the rule needs 20), --target-ms >= 0, --passes >= 1"
        )
    work = Path(tempfile.mkdtemp(prefix="akasha-bench-window-"))
    try:
        report = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(report, indent=2, default=str))
    return 0
