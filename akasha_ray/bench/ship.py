"""The cost of one DR shipment: `DeltaLog.ship` of N memory-change rows into an S3 bucket.

    python -m akasha_ray.bench.ship [--sizes 100,1000] [--runs 30]
        [--bucket s3://name/prefix --endpoint http://...]

Each row is one memory (384-dim vector, ~200 characters of text, two entity links) as the write
path logs it (`changes.memories_payload`). Runs ship consecutive LSNs onto one growing table, as
a coordinator does; a re-sent batch (nothing to commit) is timed too. Without --bucket it starts
SeaweedFS through the checkout's `tests/servers/` launcher.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from akasha_ray import records
from akasha_ray.bench.stats import machine, summarize
from akasha_ray.replication import changes
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.delta_log import DeltaLog


def memory_changes(stream: str, first_lsn: int, count: int, rng: np.random.Generator) -> pa.Table:
    now = datetime.now(UTC)
    payloads = []
    for lsn in range(first_lsn, first_lsn + count):
        key = f"bench-{lsn}"
        batch = pa.table(
            {
                "id": [key],
                "system_id": ["bench"],
                "conversation_id": ["c1"],
                "content": [f"memory {lsn}: " + "lorem ipsum dolor sit amet " * 7],
                "created_at": [now],
                "metadata": ['{"source": "bench"}'],
                "embedding": [rng.standard_normal(records.DIM).astype(np.float32)],
                "model": ["all-MiniLM-L6-v2"],
                "model_revision": ["bench"],
                "content_hash": [uuid.uuid4().hex],
            },
            schema=records.SCHEMA,
        )
        payloads.append(changes.memories_payload(batch, {f"bench/{key}": ["e1", "e2"]}))
    return pa.table(
        {
            "stream": [stream] * count,
            "lsn": list(range(first_lsn, first_lsn + count)),
            "epoch": [1] * count,
            "at": [now] * count,
            "kind": ["memories"] * count,
            "system_id": ["bench"] * count,
            "payload": payloads,
        },
        schema=changes.SCHEMA,
    )


def measure(bucket: Bucket, sizes: list[int], runs: int) -> dict:
    rng = np.random.default_rng(7)
    results: dict = {"machine": machine(), "bucket": bucket.describe(), "runs": runs, "sizes": {}}
    for size in sizes:
        log = DeltaLog(bucket, f"bench-{size}-{uuid.uuid4().hex[:6]}")
        batches = [memory_changes("hot-0", 1 + i * size, size, rng) for i in range(runs + 3)]
        for batch in batches[:3]:  # warm-up: the table's creation, the first loads
            log.ship(batch, epoch=1)
        seconds = []
        for batch in batches[3:]:
            started = time.perf_counter()
            log.ship(batch, epoch=1)
            seconds.append(time.perf_counter() - started)
        resent = []
        for batch in batches[-5:]:
            started = time.perf_counter()
            log.ship(batch, epoch=1)
            resent.append(time.perf_counter() - started)
        results["sizes"][size] = {
            "ship": summarize(seconds),
            "resent_noop": summarize(resent),
            "payload_mb": round(sum(b["payload"].nbytes for b in batches[3:]) / runs / 2**20, 3),
        }
    return results


@contextlib.contextmanager
def local_seaweedfs() -> Iterator[Bucket]:
    try:
        from tests.servers import seaweedfs
    except ImportError as exc:
        raise SystemExit("without --bucket this needs the checkout's tests/servers/") from exc
    os.environ.setdefault("AWS_ACCESS_KEY_ID", seaweedfs.ACCESS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", seaweedfs.SECRET_KEY)
    os.environ.setdefault("AWS_REGION", seaweedfs.REGION)
    with seaweedfs.seaweedfs_server(bucket="akasha-ship") as server:
        yield Bucket(f"s3://{server.bucket}/bench", server.endpoint_url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m akasha_ray.bench.ship", description=__doc__)
    parser.add_argument("--sizes", default="100,1000", help="rows per shipment, comma-separated")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--bucket", help="s3://name/prefix or a folder (default: a SeaweedFS)")
    parser.add_argument("--endpoint", help="the bucket's S3 endpoint")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    with contextlib.ExitStack() as stack:
        if args.bucket:
            bucket = Bucket(args.bucket, args.endpoint)
        else:
            bucket = stack.enter_context(local_seaweedfs())
        print(json.dumps(measure(bucket, sizes, args.runs), indent=2))


if __name__ == "__main__":
    main()
