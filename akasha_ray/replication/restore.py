"""Restore: the newest snapshot of a region (at or before `as_of`) plus that region's Delta log
after the snapshot's versions, applied through `Applier` into an empty deployment.

Without a snapshot the whole log is applied (a log compacted before its first snapshot is a
`ReplicationGap`). With `as_of`, the log is read as it was then (Delta time travel).
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

from akasha_ray.config import Settings
from akasha_ray.errors import Conflict
from akasha_ray.memories.peers import Peers
from akasha_ray.memories.service import call
from akasha_ray.replication import snapshot
from akasha_ray.replication.apply import Applier
from akasha_ray.replication.bucket import Bucket
from akasha_ray.replication.delta_log import DeltaLog

LOG_BATCH = 20_000  # log rows per read and apply


async def restore(
    settings: Settings,
    bucket: Bucket,
    region: str,
    as_of: datetime | None = None,
    *,
    into_nonempty: bool = False,
) -> dict[str, Any]:
    """Restore `region`'s data from `bucket` into this deployment; a report of what was done."""
    if not into_nonempty:
        await _require_empty(settings)
    started = time.monotonic()
    applier = Applier(settings, source=region)
    manifest = await asyncio.to_thread(snapshot.latest, bucket, region, as_of)
    counts: dict[str, int] = {}
    if manifest is not None:
        for part in snapshot.load(bucket, manifest):
            done = await applier.apply_rows(part, tokens=f"snapshot:{manifest['id']}")
            for kind, n in done.counts.items():
                counts[kind] = counts.get(kind, 0) + n
        await applier.mark(manifest["versions"])
    snapshot_s = time.monotonic() - started
    log = DeltaLog(bucket, region)
    versions = dict(manifest["versions"]) if manifest else {}
    log_rows = 0
    while True:
        after = dict(versions)
        if as_of is None:
            rows = await asyncio.to_thread(log.read, after, LOG_BATCH)
        else:
            rows = await asyncio.to_thread(log.read_as_of, as_of, after, LOG_BATCH)
        if rows.num_rows == 0:
            break
        versions = await applier.apply(rows)
        log_rows += rows.num_rows
    return {
        "region": region,
        "snapshot": None if manifest is None else manifest["id"],
        "snapshot_at": None if manifest is None else manifest["at"],
        "applied": counts,
        "log_changes": log_rows,
        "versions": versions,
        "snapshot_s": round(snapshot_s, 2),
        "total_s": round(time.monotonic() - started, 2),
    }


async def _require_empty(settings: Settings) -> None:
    """Conflict unless no hot shard holds a memory or a tombstone (a restore adds, it does not
    replace: into a deployment in use it would mix two histories)."""
    peers = Peers(settings)
    timeout = settings.serve.write_timeout_s
    checks = [s.export.remote(None, 1) for s in peers.shards]
    checks += [s.tombstones.remote(None, 1) for s in peers.shards]
    found = await call(asyncio.gather(*checks), "hot shards", timeout)
    if any(len(f) for f in found):
        raise Conflict(
            "this deployment holds memories: restore into an empty one (a new data dir)",
            field="into_nonempty",
        )
