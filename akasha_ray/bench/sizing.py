"""The sizing table (README, "Sizing"): per-node figures measured here, projected to 100M and 1B
embeddings and 10,000 to 100,000 systems.

    python -m akasha_ray.bench.sizing [--sizes 25000,50000,100000] [--encode encode.json]
        [--timeseries timeseries.json] [--markdown]

Measured in this run, on one hot shard (akasha_ray.vectors.hot_shard.HotShard, loaded as
`bench hot` loads it): the process memory and DuckDB file bytes each stored vector adds, the
search's wall and CPU time at each size (the CPU p95 fitted as a line: the hot tier's search is
a scan, so a shard holds what `tiers.hot_target_p95_ms` allows on a core of its own; the wall
time on a shared machine is mostly waiting for a core), and the zstd Parquet bytes of a memory
as the cold archive writes it. Read from other benchmarks' JSON when given: texts per CPU second
(`bench encode`) and metric points stored per second (`bench timeseries`). Every other input is
an assumption the JSON names as such (the hot share of memories, Milvus's segment size and
index overhead, the node). Prints JSON; `--markdown` prints the table; `--from sizing.json`
projects a previous run's measurements again (with other inputs) without measuring.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from akasha_ray.bench.stats import machine, summarize
from akasha_ray.embedding_dim import DIM

GIB = 1024**3
EMBEDDINGS = (100_000_000, 1_000_000_000)
SYSTEMS = (10_000, 100_000)
# Assumptions (not measured here), named in the output.
ASSUMED = {
    "hot_share": 0.05,  # memories inside the hot window (hot_days 7 of a year and more kept)
    "warm_share": 0.25,  # inside warm_days (90); the rest is cold (S3)
    "node_ram_gib": 64,
    "node_ram_usable": 0.7,  # the rest: the OS, Ray's object store, DuckDB's cache
    "node_cores": 16,
    "milvus_segment_gib": 1.0,  # Milvus's default dataCoord.segment.maxSize (1024 MB)
    "milvus_hnsw_ram_over_raw": 1.5,  # HNSW (M 16): the vectors plus their graph
    "milvus_diskann_ram_over_raw": 0.25,  # DiskANN keeps PQ codes in RAM, the rest on disk
    "metrics_per_system": 10,
    "metric_points_per_minute": 1,
    "ingest_memories_per_s": 1_000,
}


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _parquet_bytes(table: Any) -> int:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")  # as the cold store writes its files
    return sink.tell()


def measure_hot(size: int, queries: int, seed: int) -> dict[str, Any]:
    """One shard of `size` vectors, in a folder of its own, this process's memory before and
    after."""
    from akasha_ray.bench.hot import load_shards, unit_rows
    from akasha_ray.vectors.hot_shard import HotShard

    rng = np.random.default_rng(seed)
    work = Path(tempfile.mkdtemp(prefix="akasha-sizing-"))
    try:
        vectors = unit_rows(rng, size)
        gc.collect()
        before = _rss_bytes() + vectors.nbytes  # the vectors are the input, not the shard's
        shard = HotShard(work / "shard-000.duckdb")
        load_shards([shard], vectors, rng)
        gc.collect()
        added = _rss_bytes() + vectors.nbytes - before
        probe = vectors[rng.integers(0, size, queries)] + 0.5 * unit_rows(rng, queries)
        probe /= np.linalg.norm(probe, axis=1, keepdims=True)
        search, cpu = _timed_cpu([lambda q=q, s=shard: s.search(q, 10) for q in probe])
        sample = shard.export(None, min(size, 20_000))
        cold = _parquet_bytes(sample) / sample.num_rows
        files = sum(p.stat().st_size for p in work.iterdir() if p.is_file())
        shard.close()
        del vectors
        gc.collect()
        return {
            "vectors": size,
            "rss_bytes_per_vector": round(max(added, 0) / size, 1),
            "duckdb_bytes_per_vector": round(files / size, 1),
            "cold_parquet_bytes_per_memory": round(cold, 1),
            "search_p50_ms": search["p50_ms"],
            "search_p95_ms": search["p95_ms"],
            "search_cpu_p50_ms": cpu["p50_ms"],
            "search_cpu_p95_ms": cpu["p95_ms"],
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _timed_cpu(calls: list[Any]) -> tuple[dict[str, float], dict[str, float]]:
    """Wall and CPU time of each call: on a shared machine the wall time is mostly waiting for
    a core, while the CPU time is what one search costs the node that runs it."""
    for call in calls[:3]:
        call()
    wall, cpu = [], []
    for call in calls:
        started, started_cpu = time.perf_counter(), time.process_time()
        call()
        cpu.append(time.process_time() - started_cpu)
        wall.append(time.perf_counter() - started)
    return summarize(wall), summarize(cpu)


def _find(document: Any, key: str) -> Any:
    """The first value under `key` anywhere in a benchmark's JSON."""
    if isinstance(document, dict):
        if key in document:
            return document[key]
        document = list(document.values())
    if isinstance(document, list):
        for item in document:
            found = _find(item, key)
            if found is not None:
                return found
    return None


def project(hot: list[dict[str, Any]], inputs: dict[str, Any], target_ms: float) -> dict:
    sizes = np.array([h["vectors"] for h in hot], dtype=float)
    # The CPU time a search costs: what a node whose cores are not shared would see as latency.
    p95 = np.array([h["search_cpu_p95_ms"] for h in hot])
    slope, intercept = np.polyfit(sizes, p95, 1) if len(hot) > 1 else (p95[0] / sizes[0], 0.0)
    wall = [h["search_p95_ms"] for h in hot]
    wall_slope = np.polyfit(sizes, wall, 1)[0] if len(hot) > 1 else wall[0] / sizes[0]
    # A flat or falling fit (noise on a busy machine): no more per shard than was measured.
    fitted = slope > 0 and intercept < target_ms
    per_shard = int((target_ms - intercept) / slope) if fitted else int(sizes.max())
    rss = float(np.median([h["rss_bytes_per_vector"] for h in hot]))
    disk = float(np.median([h["duckdb_bytes_per_vector"] for h in hot]))
    cold = float(np.median([h["cold_parquet_bytes_per_memory"] for h in hot]))
    a = ASSUMED
    usable = a["node_ram_gib"] * GIB * a["node_ram_usable"]
    raw = DIM * 4
    rows = []
    for embeddings in EMBEDDINGS:
        for systems in SYSTEMS:
            hot_n = embeddings * a["hot_share"]
            warm_n = embeddings * a["warm_share"]
            shards = math.ceil(hot_n / per_shard)
            hot_ram = hot_n * rss
            # A shard is one synchronous actor: a core each, and its RAM on one node.
            hot_nodes = max(math.ceil(hot_ram / usable), math.ceil(shards / a["node_cores"]))
            row = {
                "embeddings": embeddings,
                "systems": systems,
                "hot_vectors": int(hot_n),
                "hot_shards": shards,
                "hot_ram_gib": round(hot_ram / GIB, 1),
                "hot_disk_gib": round(hot_n * disk / GIB, 1),
                "hot_nodes": hot_nodes,
                "warm_vectors": int(warm_n),
                "milvus_segments": math.ceil(warm_n * raw / (a["milvus_segment_gib"] * GIB)),
                "milvus_hnsw_ram_gib": round(warm_n * raw * a["milvus_hnsw_ram_over_raw"] / GIB),
                "milvus_diskann_ram_gib": round(
                    warm_n * raw * a["milvus_diskann_ram_over_raw"] / GIB
                ),
                "s3_gib_all_memories": round(embeddings * cold / GIB),
                "metric_points_per_s": round(
                    systems * a["metrics_per_system"] * a["metric_points_per_minute"] / 60
                ),
            }
            if inputs.get("texts_per_cpu_s"):
                row["ingest_cores"] = math.ceil(
                    a["ingest_memories_per_s"] / inputs["texts_per_cpu_s"]
                )
            if inputs.get("metric_points_stored_per_s"):
                row["timeseries_writers"] = math.ceil(
                    row["metric_points_per_s"] / inputs["metric_points_stored_per_s"]
                )
            rows.append(row)
    return {
        "fit": {
            "search_cpu_p95_ms_per_million_vectors": round(slope * 1e6, 2),
            "intercept_ms": round(float(intercept), 3),
            "search_wall_p95_ms_per_million_vectors": round(float(wall_slope) * 1e6, 2),
            "vectors_per_shard_at_target": per_shard,
            "fitted": bool(fitted),
            "target_p95_ms": target_ms,
            "rss_bytes_per_vector": rss,
            "duckdb_bytes_per_vector": disk,
            "cold_parquet_bytes_per_memory": cold,
        },
        "rows": rows,
    }


COLUMNS = (
    ("embeddings", "embeddings"),
    ("systems", "systems"),
    ("hot_shards", "hot shards"),
    ("hot_ram_gib", "hot RAM GiB"),
    ("hot_nodes", "hot nodes"),
    ("milvus_segments", "Milvus segments"),
    ("milvus_hnsw_ram_gib", "Milvus HNSW RAM GiB"),
    ("milvus_diskann_ram_gib", "Milvus DiskANN RAM GiB"),
    ("s3_gib_all_memories", "S3 GiB"),
    ("metric_points_per_s", "metric points/s"),
    ("ingest_cores", "ingest cores"),
    ("timeseries_writers", "TS writers"),
)


def markdown(rows: list[dict[str, Any]]) -> str:
    columns = [(k, title) for k, title in COLUMNS if any(k in r for r in rows)]
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in rows:
        lines.append("| " + " | ".join(f"{row.get(k, ''):,}" for k, _ in columns) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench.sizing", description=__doc__)
    parser.add_argument("--sizes", default="25000,50000,100000", help="vectors in the shard")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--target-p95-ms", type=float, default=100.0, help="tiers.hot_target_p95_ms"
    )
    parser.add_argument("--encode", type=Path, help="`bench encode` JSON: texts per CPU second")
    parser.add_argument("--timeseries", type=Path, help="`bench timeseries` JSON: points/s")
    parser.add_argument("--markdown", action="store_true", help="print the table, not JSON")
    parser.add_argument(
        "--from", dest="previous", type=Path, help="a previous run's JSON: project, not measure"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.previous:
        hot = json.loads(args.previous.read_text())["measured_hot_shard"]
    else:
        measure_hot(1_000, 5, args.seed)  # loads DuckDB, numpy's BLAS: not the shard's memory
        hot = []
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"[sizing] one hot shard of {size:,} vectors", file=sys.stderr, flush=True)
            hot.append(measure_hot(size, args.queries, args.seed))
    inputs: dict[str, Any] = {}
    if args.encode:
        inputs["texts_per_cpu_s"] = _find(
            json.loads(args.encode.read_text()), "median_texts_per_cpu_s"
        )
    if args.timeseries:
        document = json.loads(args.timeseries.read_text())
        inputs["metric_points_stored_per_s"] = _find(document, "stored_per_s")
    table = project(hot, inputs, args.target_p95_ms)
    report = {
        "benchmark": "sizing",
        "machine": machine(),
        "measured_hot_shard": hot,
        "from_other_benchmarks": inputs,
        "assumed": ASSUMED,
        **table,
    }
    print(markdown(table["rows"]) if args.markdown else json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
