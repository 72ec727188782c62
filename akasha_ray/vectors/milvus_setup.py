"""Start-up of the warm tier's Milvus collection: schema, index probe, creation and load.

These calls go through the blocking `MilvusClient`, run in a worker thread by the store:
`AsyncMilvusClient.create_index` always waits for the build through an AllocTimestamp call that
Milvus Lite does not implement, and start-up is the only place that creates indexes.

Why a probe: servers accept index types they cannot build or load. Milvus Lite 3.2 accepts DISKANN
and IVF_PQ and fails at load; Milvus 2.3.5 accepts DISKANN, then its build fails and is retried
forever while `describe_index` says Finished with every row pending. So before creating the
collection, the requested type is built over a scratch collection, loaded and searched; if that
fails, the next of FALLBACKS is tried, and the reason is kept for logs, stats and health.

Partitions: system_id is the partition key (PARTITIONS buckets), so a server prunes a search
filtered by system to its bucket. Milvus Lite 3.2 prunes nothing (it hashes into 16 buckets), but
its buckets still help recall: each bucket's segments get their own small HNSW graph, and a search
merges their answers. One partition on Lite was tried: recall@10 over 20,000 random vectors fell
from 0.99 to 0.75 at ef 128 (0.96 needed ef 512; at 100,000 rows ef 1,024 gave 0.83).
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from akasha_ray.embedding_dim import DIM
from akasha_ray.errors import Unavailable
from akasha_ray.vectors.milvus_rows import (
    CONTENT_FIELDS,
    HASH_BYTES,
    ID_BYTES,
    KEY_BYTES,
    VARCHAR_BYTES,
)

logger = logging.getLogger("akasha.warm")

FALLBACKS = ("HNSW", "IVF_FLAT", "FLAT")
PROBE_ROWS = 2048  # more than Milvus' 1,024-row threshold below which a segment is not indexed
PARTITIONS = 64  # partition-key buckets for system_id
LOAD_TIMEOUT_S = 120.0
SERVER_EF = 768
LITE_EF = 512
LITE_FILTERED_EF = 1024
ERRORS = (MilvusException, grpc.RpcError, TimeoutError)


@dataclass(frozen=True)
class IndexChoice:
    requested: str
    in_use: str
    fallback_reason: str | None = None


def build_params(index_type: str) -> dict[str, Any]:
    return {"HNSW": {"M": 16, "efConstruction": 200}, "IVF_FLAT": {"nlist": 128}}.get(
        index_type, {}
    )


def search_params(
    index_type: str, k: int, *, lite: bool = False, filtered: bool = False
) -> dict[str, Any]:
    """Search parameters; HNSW's ef (at least k) by backend, measured on 384-dim random unit
    vectors (the hardest case for a graph index), recall@10 against exact:

    - a server, ef SERVER_EF: over a million rows on Milvus 2.3.5 (64 partitions, a graph per
      segment, each ef measured just after loading the collection) ef 128 gave 0.62 at p50 40 ms,
      512 0.935 at 105 ms, 768 0.975 at 130 ms, 1,024 0.985 at 145 ms. (Searched right after
      searches with a larger ef, ef 128 gave 0.95: the first figures are what a server gives
      after a restart.)
    - Lite, ef LITE_EF: over 200,000 rows 1.0 at p50 211 ms, where ef 128 gave 0.89 at p50 207 ms
      (a Lite search spends its time in Python scans of every row, hardly in the graph).
      `filtered`: ef LITE_FILTERED_EF, as Lite's HNSW skips rows outside the filter while it walks
      the graph and returns too few when the filter keeps few rows (0.68 at ef 128 for a time
      range holding 6 rows of a 1,500-row segment; 1.0 at ef 1,024). A server searches such a
      filter by brute force itself.
    """
    ef = (LITE_FILTERED_EF if filtered else LITE_EF) if lite else SERVER_EF
    params = {
        "HNSW": {"ef": max(ef, k)},
        "DISKANN": {"search_list": max(100, k)},
        "IVF_FLAT": {"nprobe": 16},
    }.get(index_type, {})
    return {"metric_type": "COSINE", "params": params}


def prepare_collection(
    client: MilvusClient, collection: str, requested: str, probe_timeout_s: float
) -> IndexChoice:
    """Create (after probing the index type) or load the collection; the index in use."""
    if client.has_collection(collection):
        return _load_existing(client, collection, requested, probe_timeout_s)
    choice = choose_index(client, requested, probe_timeout_s)
    _create(client, collection, choice.in_use)
    return choice


def choose_index(client: MilvusClient, requested: str, timeout_s: float) -> IndexChoice:
    """The requested index type if the server can build, load and search it, else a fallback."""
    reasons = []
    for candidate in dict.fromkeys((requested, *FALLBACKS)):
        failure = probe_index(client, candidate, timeout_s)
        if failure is None:
            reason = "; ".join(reasons) if reasons else None
            return IndexChoice(requested=requested, in_use=candidate, fallback_reason=reason)
        reasons.append(f"{candidate}: {failure}")
    raise Unavailable("no vector index type works on this Milvus: " + "; ".join(reasons))


def probe_index(client: MilvusClient, index_type: str, timeout_s: float) -> str | None:
    """Build `index_type` over a scratch collection, load and search it; None, or what failed.

    `timeout_s` bounds the wait for the build once the collection is loaded (on a server, flush
    and load take seconds of their own).
    """
    name = f"akasha_probe_{uuid.uuid4().hex[:12]}"
    vectors = np.random.default_rng(7).standard_normal((PROBE_ROWS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
    try:
        client.create_collection(name, schema=schema, shards_num=1, consistency_level="Strong")
        client.insert(name, [{"id": i, "embedding": v} for i, v in enumerate(vectors)])
        client.flush(name)  # seals the segment, so a server builds the index over it
        client.create_index(name, index_params(index_type), sync=False)
        # Lite builds the index on load (and fails there); a server builds it in the background.
        client.load_collection(name, timeout=LOAD_TIMEOUT_S)
        deadline = time.monotonic() + timeout_s  # for the build alone: flush and load vary
        while True:
            index = client.describe_index(name, "embedding")
            if index.get("state") == "Failed":
                return f"index build failed: {index.get('fail_reason') or 'no reason given'}"
            if int(index.get("indexed_rows") or 0) >= PROBE_ROWS:
                break
            if time.monotonic() > deadline:
                return (
                    f"index not built within {timeout_s:g}s of loading (Milvus 2.3 retries a "
                    "failing build without end)"
                )
            time.sleep(0.2)
        params = search_params(index_type, 1)
        hits = client.search(name, data=[vectors[7]], limit=1, search_params=params)
        if not hits or not hits[0] or hits[0][0]["id"] != 7:
            return "a search over the built index did not find the query's own vector"
        return None
    except ERRORS as exc:
        return message_of(exc)
    finally:
        with suppress(*ERRORS):
            client.drop_collection(name)


def index_params(index_type: str) -> Any:
    params = MilvusClient.prepare_index_params()
    params.add_index(
        field_name="embedding",
        index_name="embedding",
        index_type=index_type,
        metric_type="COSINE",
        params=build_params(index_type),
    )
    return params


def _create(client: MilvusClient, collection: str, index_type: str) -> None:
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    # The memory's key `<system_id>/<id>` is the primary key: the same id in two systems is two
    # rows. (Milvus counts VARCHAR lengths in bytes.)
    schema.add_field("key", DataType.VARCHAR, is_primary=True, max_length=KEY_BYTES)
    schema.add_field("id", DataType.VARCHAR, max_length=ID_BYTES)
    schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=DIM)
    schema.add_field("system_id", DataType.VARCHAR, max_length=ID_BYTES, is_partition_key=True)
    schema.add_field("conversation_id", DataType.VARCHAR, max_length=ID_BYTES)
    for field in CONTENT_FIELDS:
        schema.add_field(field, DataType.VARCHAR, max_length=VARCHAR_BYTES)
    schema.add_field("created_at", DataType.INT64)  # epoch microseconds, for range filters
    schema.add_field("metadata", DataType.JSON)
    schema.add_field("has_metadata", DataType.BOOL)
    schema.add_field("model", DataType.VARCHAR, max_length=ID_BYTES)
    schema.add_field("model_revision", DataType.VARCHAR, max_length=ID_BYTES)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=HASH_BYTES)
    # Session consistency: the one owner reads its own writes without Strong's wait on every
    # search; the idempotency check asks for Strong explicitly.
    client.create_collection(
        collection,
        schema=schema,
        num_partitions=PARTITIONS,
        consistency_level="Session",
    )
    client.create_index(collection, index_params(index_type), sync=False)
    client.load_collection(collection)


def flat_on_lite(client: MilvusClient, collection: str) -> None:
    """Lite: give a collection built with another index type (by an earlier Akasha) a FLAT one.
    The warm owner searches its own vectors in memory, and Lite would rebuild the graphs of a
    HNSW index on every load and after every compaction: minutes of CPU at a million rows."""
    if not client.has_collection(collection):
        return
    if client.describe_index(collection, "embedding").get("index_type") == "FLAT":
        return
    client.release_collection(collection)
    client.drop_index(collection, "embedding")
    client.create_index(collection, index_params("FLAT"), sync=False)


def _load_existing(
    client: MilvusClient, collection: str, requested: str, probe_timeout_s: float
) -> IndexChoice:
    """Load a collection made earlier; if its index cannot load, rebuild it with a fallback."""
    in_use = str(client.describe_index(collection, "embedding").get("index_type", requested))
    try:
        client.load_collection(collection)
    except MilvusException as exc:
        logger.warning("warm tier: %s index failed to load (%s); rebuilding", in_use, exc.message)
        choice = choose_index(client, in_use, probe_timeout_s)
        client.release_collection(collection)
        client.drop_index(collection, "embedding")
        client.create_index(collection, index_params(choice.in_use), sync=False)
        client.load_collection(collection)
        return IndexChoice(requested, choice.in_use, f"{in_use} failed to load: {exc.message}")
    if in_use != requested:
        reason = f"the collection was built with {in_use}; rebuild it to change the index type"
        return IndexChoice(requested, in_use, reason)
    return IndexChoice(requested, in_use)


def message_of(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or type(exc).__name__
