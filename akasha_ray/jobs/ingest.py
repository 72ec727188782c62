"""Embed a large JSONL or Parquet file of memories with Ray tasks and store it in the hot shards.

    ray job submit --working-dir . -- python -m akasha_ray.jobs.ingest --source memories.jsonl

Chunks are embedded in parallel and written through the shard actors. Ids are derived from each
record's content (or taken from its `id`), and shards ignore ids they hold, so a re-run adds
nothing twice; finished chunks are checkpointed, so a stopped job resumes where it was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import ray
from pydantic import ValidationError
from tqdm import tqdm

from akasha_ray import config
from akasha_ray.errors import Conflict
from akasha_ray.identity import memory_key
from akasha_ray.jobs.checkpoint import Checkpoint
from akasha_ray.models import MemoryIn, now_utc
from akasha_ray.records import build_batch

_embedders: dict[str, Any] = {}  # one model per worker process, reused across its tasks


def read_chunks(source: Path, size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(chunk number, records) from JSONL or Parquet, streaming: the file is never all in memory."""
    if source.suffix == ".parquet":
        for number, batch in enumerate(pq.ParquetFile(source).iter_batches(batch_size=size)):
            yield number, batch.to_pylist()
        return
    chunk: list[dict[str, Any]] = []
    number = 0
    with open(source) as lines:
        for line_number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                chunk.append(json.loads(line))
            except ValueError:
                chunk.append(f"line {line_number} is not JSON")
            if len(chunk) == size:
                yield number, chunk
                chunk, number = [], number + 1
    if chunk:
        yield number, chunk


def count_records(source: Path) -> int:
    if source.suffix == ".parquet":
        return pq.ParquetFile(source).metadata.num_rows
    with open(source) as lines:
        return sum(1 for line in lines if line.strip())


@ray.remote(num_cpus=1, max_retries=3)
def embed_and_store(
    chunk: int, records: list[dict[str, Any]], settings: dict, started_at: datetime
) -> dict:
    """Embed one chunk and store it through the memory service. A record without `created_at`
    gets the job's `started_at` (fixed in its checkpoint), so a retried task or a resumed job
    derives the same ids and stores nothing twice."""
    from akasha_ray.embedding import Embedder
    from akasha_ray.memories import MemoryService

    conf = config.from_dict(settings)
    memories, rows, rejected = [], [], []
    for position, record in enumerate(records):
        if not isinstance(record, dict):
            rejected.append({"chunk": chunk, "row": position, "error": "not a JSON object"})
            continue
        try:
            memory = MemoryIn.model_validate(record)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"]))
            rejected.append({"chunk": chunk, "row": position, "error": f"{where}: {first['msg']}"})
            continue
        memories.append(
            memory if memory.created_at else memory.model_copy(update={"created_at": started_at})
        )
        rows.append(position)
    if not memories:
        return {"chunk": chunk, "seen": len(records), "stored": 0, "rejected": rejected}
    embedder = _embedders.get(conf.embedding.model)
    if embedder is None:
        # One torch thread per task: the job runs a task per core.
        embedder = Embedder(conf.embedding.model_copy(update={"threads": 1}))
        _embedders[conf.embedding.model] = embedder
    vectors = embedder.embed([m.content for m in memories])
    model = {"model": embedder.model_name, "model_revision": embedder.revision}
    batch = build_batch(memories, vectors, now=now_utc(), **model)
    # The same path as HTTP ingest: placement by age (a backfill lands in cold), identity,
    # tombstones, entity links, the whole chunk or nothing.
    service = MemoryService(conf)
    try:
        stored = asyncio.run(_store(service, batch, memories))
    except Conflict:
        # Some memories are stored with other content, or were deleted: store the rest one by
        # one and report those.
        stored = 0
        for row, memory, i in zip(rows, memories, range(len(memories)), strict=True):
            try:
                stored += asyncio.run(_store(service, batch.slice(i, 1), [memory]))
            except Conflict as exc:
                rejected.append({"chunk": chunk, "row": row, "error": exc.message})
    return {"chunk": chunk, "seen": len(records), "stored": stored, "rejected": rejected}


async def _store(service: Any, batch: Any, memories: list[MemoryIn]) -> int:
    ids = batch.column("id").to_pylist()
    entities = {
        memory_key(m.system_id, i): m.entities
        for i, m in zip(ids, memories, strict=True)
        if m.entities
    }
    return len((await service.ingest(batch, entities)).new_keys)


def run(source: Path, settings: config.Settings, chunk_size: int = 512) -> dict[str, Any]:
    """Ingest `source`; returns a summary. Needs a connected Ray; starts Akasha's actors if
    they are not running."""
    from actors import supervisor

    supervisor.start_all(settings)  # the job works with or without `akasha up`
    checkpoint = Checkpoint(settings.data_dir / "jobs", source, chunk_size)
    payload = ray.put(config.to_dict(settings))
    in_flight_limit = max(1, int(ray.cluster_resources().get("CPU", 1)))
    summary = {"seen": 0, "stored": 0, "rejected": 0, "chunks_resumed": len(checkpoint.done)}
    rejects: list[dict] = []
    started = time.perf_counter()
    pending: dict[ray.ObjectRef, int] = {}
    with tqdm(total=count_records(source), unit="mem", desc="embed+store", file=sys.stdout) as bar:

        def settle(ready: list[ray.ObjectRef]) -> None:
            for ref in ready:
                result = ray.get(ref)
                checkpoint.mark(pending.pop(ref))
                summary["seen"] += result["seen"]
                summary["stored"] += result["stored"]
                summary["rejected"] += len(result["rejected"])
                rejects.extend(result["rejected"])
                bar.update(result["seen"])

        for chunk, records in read_chunks(source, chunk_size):
            if chunk in checkpoint.done:
                bar.update(len(records))
                continue
            task = embed_and_store.remote(chunk, records, payload, checkpoint.started_at)
            pending[task] = chunk
            if len(pending) >= in_flight_limit:
                ready, _ = ray.wait(list(pending), num_returns=1)
                settle(ready)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            settle(ready)
    seconds = time.perf_counter() - started
    summary["seconds"] = round(seconds, 2)
    summary["memories_per_s"] = round(summary["seen"] / seconds, 1) if seconds else None
    summary["first_rejects"] = rejects[:10]
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="akasha_ray.jobs.ingest", description=__doc__)
    parser.add_argument("--source", required=True, type=Path, help="a .jsonl or .parquet file")
    parser.add_argument("--chunk-size", type=int, default=512, help="records per Ray task")
    args = parser.parse_args(argv)
    if not args.source.exists():
        parser.error(f"--source {args.source} does not exist")
    if args.chunk_size < 1:
        parser.error("--chunk-size must be at least 1")
    from actors import supervisor

    settings = config.load()
    ray.init(address=settings.ray_address or "auto", namespace=settings.namespace)
    # A job runs in a copy of the working dir: use the data dir of the Akasha already running.
    settings = supervisor.adopt_running(settings)
    summary = run(args.source.resolve(), settings, args.chunk_size)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
