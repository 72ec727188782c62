"""Restore throughput: snapshot a deployment of N memories into a folder bucket, then restore it
into fresh, empty deployments (same Ray cluster, own namespace and data dir), timed per run.

    python -m akasha_ray.bench.restore [--memories 100000] [--runs 3] [--systems 10]
        [--linked 0.1] [--dir /tmp/x]

Memories are hot (created an hour ago), 384-d random unit vectors, ~120 characters of text; a
fraction carries one entity link. The figure that matters is `restore.memories_per_s` (the whole
restore: reading the Parquet parts, the memory service's checks and writes, links, durability);
`populate` (ingest through the same service) is the reference. JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from akasha_ray.bench.stats import machine, summarize

BATCH = 5_000


def batch(rng: np.random.Generator, start: int, n: int, systems: int) -> pa.Table:
    from akasha_ray.records import SCHEMA, with_content_hashes

    vectors = rng.standard_normal((n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    created = datetime.now(UTC) - timedelta(hours=1)
    ids = [f"m-{i:08d}" for i in range(start, start + n)]
    table = pa.table(
        {
            "id": ids,
            "system_id": [f"system-{i % systems:03d}" for i in range(start, start + n)],
            "conversation_id": [f"c-{i // 50}" for i in range(start, start + n)],
            "content": [f"memory {i}: the user asked about the weather in Lisbon" for i in ids],
            "created_at": pa.array([created] * n, pa.timestamp("us", tz="UTC")),
            "metadata": [None] * n,
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 384),
            "model": ["all-MiniLM-L6-v2"] * n,
            "model_revision": ["bench"] * n,
        }
    )
    return with_content_hashes(table).cast(SCHEMA)


def deployment(root: Path, name: str):
    from akasha_ray import config

    return config.load(data_dir=root / name, namespace=f"bench-restore-{uuid.uuid4().hex[:8]}")


def stop(settings) -> None:
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["namespace"] == settings.namespace:
            ray.kill(ray.get_actor(actor["name"], namespace=settings.namespace))


def ready(settings) -> None:
    """Wait until the actors a restore of hot memories talks to have started."""
    import ray

    from actors import supervisor

    calls = [shard.stats.remote() for shard in supervisor.hot_shards(settings)]
    calls += [supervisor.graph(settings).ready.remote(), supervisor.keys(settings).version.remote()]
    calls += [supervisor.timeseries(settings).health.remote()]
    ray.get(calls, timeout=600)


async def populate(settings, n: int, systems: int, linked: float) -> float:
    from akasha_ray.identity import keys_of
    from akasha_ray.memories import MemoryService

    service = MemoryService(settings, log_changes=False)
    rng = np.random.default_rng(7)
    started = time.perf_counter()
    for start in range(0, n, BATCH):
        part = batch(rng, start, min(BATCH, n - start), systems)
        keys = keys_of(part)
        links = {k: [f"topic-{i % 100}"] for i, k in enumerate(keys) if rng.random() < linked}
        await service.ingest(part, links)
    return time.perf_counter() - started


def synthetic_snapshot(bucket, n: int, systems: int, linked: float, shards: int) -> dict:
    """A snapshot written straight from generated rows (what `snapshot.take` of a deployment
    holding them writes), to time restores of sizes too slow to ingest first."""
    import pyarrow.compute as pc

    from akasha_ray.identity import keys_of
    from akasha_ray.replication import changes, snapshot
    from akasha_ray.routing import shard_for

    at = datetime.now(UTC)
    writer = snapshot.PartWriter(bucket, f"{snapshot.ROOT}/bench/{snapshot.new_id(at)}", 1)
    rng = np.random.default_rng(7)
    for start in range(0, n, snapshot.PAGE):
        part = batch(rng, start, min(snapshot.PAGE, n - start), systems)
        shard_of = [shard_for(s, shards) for s in part["system_id"].to_pylist()]
        for i in sorted(set(shard_of)):
            rows = part.filter(pc.equal(pa.array(shard_of), i))
            links = {k: ["topic-1"] for k in keys_of(rows) if rng.random() < linked}
            payload = changes.memories_payload(rows, links)
            writer.add(changes.memory_stream(i), "memories", None, payload, rows.num_rows)
    writer.flush()
    manifest = {
        "format": snapshot.FORMAT,
        "id": writer.prefix.rsplit("/", 1)[1],
        "region": "bench",
        "epoch": 1,
        "at": at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "versions": {},
        "parts": writer.parts,
        "counts": writer.counts,
    }
    bucket.put(f"{writer.prefix}/{snapshot.MANIFEST}", json.dumps(manifest).encode())
    return manifest


def main(argv: list[str]) -> int:
    import ray

    from actors import supervisor
    from akasha_ray.replication import snapshot
    from akasha_ray.replication.bucket import Bucket
    from akasha_ray.replication.restore import restore

    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench.restore")
    parser.add_argument("--memories", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--systems", type=int, default=10)
    parser.add_argument("--linked", type=float, default=0.1)
    parser.add_argument("--dir", help="scratch folder (default: a temporary one)")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="write the snapshot from generated rows instead of ingesting and snapshotting",
    )
    args = parser.parse_args(argv)
    root = Path(args.dir or tempfile.mkdtemp(prefix="akasha-bench-restore-"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        bucket = Bucket(str(root / "bucket"))
        if args.synthetic:
            populate_s = float("nan")
            started = time.perf_counter()
            shards = deployment(root, "source").hot.shards
            manifest = synthetic_snapshot(bucket, args.memories, args.systems, args.linked, shards)
            snapshot_s = time.perf_counter() - started
        else:
            source = deployment(root, "source")
            supervisor.start_all(source)
            populate_s = asyncio.run(populate(source, args.memories, args.systems, args.linked))
            started = time.perf_counter()
            manifest = asyncio.run(snapshot.take(source, bucket, region="bench"))
            snapshot_s = time.perf_counter() - started
            stop(source)
        runs = []
        for run in range(args.runs):
            target = deployment(root, f"target-{run}")
            supervisor.start_all(target)
            ready(target)  # a deployment's start (Ray workers, files opened) is not the restore's
            started = time.perf_counter()
            report = asyncio.run(restore(target, bucket, "bench"))
            runs.append(time.perf_counter() - started)
            assert report["applied"]["memories"] == args.memories, report
            stop(target)
            shutil.rmtree(root / f"target-{run}", ignore_errors=True)
        rates = sorted(args.memories / s for s in runs)
        print(
            json.dumps(
                {
                    "memories": args.memories,
                    "systems": args.systems,
                    "linked": args.linked,
                    "populate": None
                    if args.synthetic
                    else {
                        "s": round(populate_s, 1),
                        "memories_per_s": round(args.memories / populate_s),
                    },
                    "snapshot": {
                        "synthetic": args.synthetic,
                        "s": round(snapshot_s, 1),
                        "memories_per_s": round(args.memories / snapshot_s),
                        "parts": len(manifest["parts"]),
                        "bytes": sum(
                            p.stat().st_size for p in (root / "bucket").rglob("*.parquet")
                        ),
                    },
                    "restore": {
                        "seconds": [round(s, 1) for s in runs],
                        **summarize(runs),
                        "memories_per_s_median": round(float(np.median(rates))),
                        "memories_per_s_worst": round(rates[0]),
                    },
                    "machine": machine(),
                },
                indent=1,
            )
        )
    finally:
        ray.shutdown()
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
