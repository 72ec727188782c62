"""Snapshots: every store of a deployment as change rows (`changes.SCHEMA`) in Parquet, so that a
restore is the last snapshot plus the Delta log after it, through the one apply path.

Layout in a bucket: `akasha-dr/snapshots/<region>/<id>/part-00000.parquet ...` and
`manifest.json` `{format, id, region, epoch, at, versions, parts, counts}`, written last: a
snapshot without a manifest is unfinished and never read. Ids sort by time.

What a snapshot holds: memories with their vectors and entity links from every tier (hot pages
through each shard in key order, warm by windows of creation time, cold by its key listing),
tombstones, metric points, graph entities and relationships, API key records (hashes only).

Consistency: `versions` (the change log's last LSN per stream) are read before any store, so a
restore that applies the log after them misses nothing; a change made while the snapshot runs may
be in both. Memories, tombstones, graph upserts and key records are idempotent, so that is
harmless for them; metric points written during a snapshot may be restored twice (they have no
identity to deduplicate by).
"""

from __future__ import annotations

import asyncio
import io
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from akasha_ray.config import Settings
from akasha_ray.errors import AkashaError, NotFound, Unavailable
from akasha_ray.identity import keys_of, split_key
from akasha_ray.memories.peers import GRAPH, KEYS, TIMESERIES, Peers, find
from akasha_ray.memories.service import call
from akasha_ray.replication import changes
from akasha_ray.replication.apply import CHANGELOG
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.rows import change_rows

ROOT = "akasha-dr/snapshots"
FORMAT = 1
MANIFEST = "manifest.json"
PAGE = 2_000  # memories per change row (and per store call)
POINTS_PAGE = 50_000
GRAPH_PAGE = 1_000
PART_BYTES = 64 * 2**20  # a Parquet part is written once its payloads reach this
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)
WARM_LISTING = 16_384  # Milvus answers at most this many keys per query
COLD_LISTING = 10_000_000


@dataclass
class PartWriter:
    """Change rows numbered per stream, flushed to Parquet parts of about PART_BYTES."""

    bucket: Bucket | None
    prefix: str  # where parts go in the bucket (or, without one, kept in `tables`)
    epoch: int = 0
    parts: list[str] = field(default_factory=list)
    tables: list[pa.Table] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    _lsn: dict[str, int] = field(default_factory=dict)
    _entries: list[tuple] = field(default_factory=list)
    _bytes: int = 0

    def add(self, stream: str, kind: str, system_id: str | None, payload: bytes, n: int) -> None:
        self._lsn[stream] = self._lsn.get(stream, 0) + 1
        self._entries.append((stream, self._lsn[stream], kind, system_id, payload))
        self.counts[kind] = self.counts.get(kind, 0) + n
        self._bytes += len(payload)
        if self._bytes >= PART_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._entries:
            return
        table = change_rows(self._entries, self.epoch)
        self._entries, self._bytes = [], 0
        if self.bucket is None:
            self.tables.append(table)
            return
        name = f"part-{len(self.parts):05d}.parquet"
        sink = io.BytesIO()
        pq.write_table(table, sink, compression="zstd")
        self.bucket.put(f"{self.prefix}/{name}" if self.prefix else name, sink.getvalue())
        self.parts.append(name)


def new_id(at: datetime) -> str:
    return f"{at:%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(3)}"


async def take(settings: Settings, bucket: Bucket, region: str | None = None) -> dict[str, Any]:
    """Snapshot every store of the running deployment into `bucket`; the manifest."""
    region = region or settings.dr.region or "local"
    at = datetime.now(UTC)
    versions, epoch = await _log_position(settings)
    snapshot_id = new_id(at)
    prefix = f"{ROOT}/{region}/{snapshot_id}"
    writer = PartWriter(bucket, prefix, epoch)
    await dump(settings, writer)
    writer.flush()
    manifest = {
        "format": FORMAT,
        "id": snapshot_id,
        "region": region,
        "epoch": epoch,
        "at": at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "versions": versions,
        "parts": writer.parts,
        "counts": writer.counts,
    }
    bucket.put(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
    return manifest


async def dump(settings: Settings, writer: PartWriter, system_id: str | None = None) -> None:
    """Every store's content (of one system and the shared graph, when given) as change rows."""
    peers = Peers(settings)
    timeout = settings.serve.write_timeout_s
    graph = await call(find(GRAPH, settings.namespace).dump.remote(system_id), "graph", timeout)
    links: dict[str, list[str]] = graph["links"]
    for i, shard in _shards_of(peers, system_id):
        stream = changes.memory_stream(i)
        async for page in _pages(shard, system_id, timeout):
            _add_memories(writer, stream, page, links)
        after = None
        while buried := await call(
            shard.tombstones.remote(after, PAGE * 10, system_id), "hot shards", timeout
        ):
            for key, at in buried:
                payload = changes.json_payload({"key": key, "at": at})
                writer.add(stream, "delete", split_key(key)[0], payload, 1)
            after = buried[-1][0]
    for tier, owner in (("warm", peers.warm), ("cold", peers.cold)):
        if tier == "warm":
            keys = await _warm_keys(owner, timeout)
        else:
            keys = await call(owner.keys_before.remote(FAR_FUTURE, COLD_LISTING), tier, timeout)
            if len(keys) >= COLD_LISTING:
                raise Unavailable(f"the cold tier holds {COLD_LISTING} memories or more")
        if system_id is not None:
            keys = [k for k in keys if split_key(k)[0] == system_id]
        for start in range(0, len(keys), PAGE):
            page = await call(owner.fetch.remote(sorted(keys)[start : start + PAGE]), tier, timeout)
            _add_memories(writer, tier, page, links)
    timeseries = find(TIMESERIES, settings.namespace)
    offset = 0
    while True:
        points = await call(
            timeseries.export.remote(offset, POINTS_PAGE, system_id), "metrics", timeout
        )
        if len(points) == 0:
            break
        writer.add(
            changes.METRICS, "metrics", system_id, changes.table_payload(points.table), len(points)
        )
        offset += len(points)
    for kind in ("entities", "relationships"):
        values = graph[kind]
        for start in range(0, len(values), GRAPH_PAGE):
            chunk = values[start : start + GRAPH_PAGE]
            writer.add(changes.GRAPH, kind, system_id, changes.json_payload(chunk), len(chunk))
    if system_id is None:  # keys belong to the deployment, not to one system
        records = await call(find(KEYS, settings.namespace).records.remote(), "keys", timeout)
        for record in sorted(records, key=lambda r: r["created_at"]):
            writer.add(changes.KEYS, "key", None, changes.json_payload(record), 1)


async def _warm_keys(warm: Any, timeout: float) -> list[str]:
    """Every key warm holds: Milvus answers at most WARM_LISTING keys per query, so a window of
    creation times that comes back full is split in two until each answers whole."""
    keys: list[str] = []
    windows = [(-(2**62), 2**62)]  # created_at, microseconds
    while windows:
        lo, hi = windows.pop()
        found = await call(warm.keys_between.remote(lo, hi, WARM_LISTING), "warm", timeout)
        if len(found) < WARM_LISTING:
            keys += found
        elif hi - lo <= 1:
            raise Unavailable(
                f"{WARM_LISTING} or more warm memories share one creation time: they cannot be "
                "listed for a snapshot"
            )
        else:
            middle = (lo + hi) // 2
            windows += [(lo, middle), (middle, hi)]
    return keys


def _shards_of(peers: Peers, system_id: str | None) -> list[tuple[int, Any]]:
    if system_id is None:
        return list(enumerate(peers.shards))
    i = peers.shard_index(system_id)
    return [(i, peers.shards[i])]


async def _pages(shard: Any, system_id: str | None, timeout: float) -> AsyncIterator[pa.Table]:
    after = None
    while True:
        page = await call(shard.export.remote(after, PAGE, system_id), "hot shards", timeout)
        if page.num_rows == 0:
            return
        yield page
        if page.num_rows < PAGE:
            return
        after = keys_of(page.slice(page.num_rows - 1))[0]


def _add_memories(writer: PartWriter, stream: str, page: pa.Table, links: dict) -> None:
    if page.num_rows == 0:
        return
    systems = page.column("system_id").to_pylist()
    system = systems[0] if len(set(systems)) == 1 else None
    payload = changes.memories_payload(page, {k: links[k] for k in keys_of(page) if k in links})
    writer.add(stream, "memories", system, payload, page.num_rows)


async def _log_position(settings: Settings) -> tuple[dict[str, int], int]:
    """The change log's last LSN per stream and the epoch ({} and 0 with DR off)."""
    try:
        changelog = find(CHANGELOG, settings.namespace)
    except AkashaError:
        return {}, 0
    timeout = settings.serve.write_timeout_s
    versions, state = await call(
        asyncio.gather(changelog.last.remote(), changelog.state.remote()), "changelog", timeout
    )
    return dict(versions), int(state.get("epoch") or 0)


# -- reading --------------------------------------------------------------------------------------


def manifests(bucket: Bucket, region: str) -> list[dict[str, Any]]:
    """Every finished snapshot of `region` in the bucket, oldest first."""
    found = []
    for key in bucket.list(f"{ROOT}/{region}/"):
        if key.endswith(f"/{MANIFEST}"):
            data = bucket.get(key)
            if data is not None:
                found.append(json.loads(data))
    return sorted(found, key=lambda m: m["id"])


def latest(bucket: Bucket, region: str, as_of: datetime | None = None) -> dict[str, Any] | None:
    """The newest finished snapshot of `region` taken at or before `as_of` (None: any)."""
    done = manifests(bucket, region)
    if as_of is not None:
        done = [m for m in done if datetime.fromisoformat(m["finished_at"]) <= as_of]
    return done[-1] if done else None


def load(bucket: Bucket, manifest: dict[str, Any]) -> Iterator[pa.Table]:
    """The snapshot's change rows, part by part, in order."""
    if manifest.get("format") != FORMAT:
        raise NotFound(f"snapshot {manifest.get('id')} has format {manifest.get('format')}")
    prefix = f"{ROOT}/{manifest['region']}/{manifest['id']}"
    for name in manifest["parts"]:
        data = bucket.get(f"{prefix}/{name}")
        if data is None:
            raise NotFound(f"snapshot {manifest['id']} lacks its part {name}")
        yield pq.read_table(io.BytesIO(data)).cast(changes.SCHEMA)
