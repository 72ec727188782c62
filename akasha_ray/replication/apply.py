"""Apply change rows (`changes.SCHEMA`) to this deployment's stores: the one path a secondary's
replication, a restore and an import share.

Order: each stream in LSN order; streams are independent (a hot shard's memories and deletes,
metrics, graph, keys), so they are applied side by side. Consecutive memory batches of a stream
are merged into one ingest, and consecutive tombstones into one burial, which is what makes a
restore fast.

Idempotence: every step is idempotent on its own: an ingest of a memory already held as sent is
a no-op, a burial of a buried key is one, graph upserts replace by id, a key record is adopted
as-is, and a metrics change (points have no identity) is written with a token naming its source,
stream and LSN, which the metrics store keeps for `WRITE_TOKENS_KEPT` (a day) and honours. On
top of that, `apply` skips what is at or below the applied LSN of its stream (from the
`changelog` actor when it runs, else this object's memory) and records the new LSNs once every
store has the rows.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from akasha_ray.config import Settings
from akasha_ray.errors import AkashaError, Conflict
from akasha_ray.graph.models import Entity, Relationship
from akasha_ray.identity import keys_of, split_key
from akasha_ray.memories import MemoryService
from akasha_ray.memories.peers import KEYS, TIMESERIES, find
from akasha_ray.memories.service import call
from akasha_ray.records import SCHEMA as RECORDS
from akasha_ray.replication import changes
from akasha_ray.timeseries import PointBatch

log = logging.getLogger(__name__)

CHANGELOG = "changelog"  # the lead's actor: applied LSNs live there when it runs
MERGE_ROWS = 5_000  # memories per ingest when consecutive batches are merged
OnConflict = Literal["skip", "fail"]


class ReplicationGap(AkashaError):
    """The changes given start beyond the next LSN this deployment needs: some are missing."""

    status_code = 409
    code = "replication_gap"


@dataclass
class Applied:
    """What one `apply` did, per kind of change (for logs, status and tests)."""

    versions: dict[str, int] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    skipped_conflicts: int = 0

    def add(self, kind: str, n: int) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n


class Applier:
    """`await Applier(settings).apply(rows)`; one per source region (or restore, or import)."""

    def __init__(
        self,
        settings: Settings,
        source: str | None = None,
        *,
        on_conflict: OnConflict = "fail",
        log_changes: bool = False,
    ) -> None:
        """`source`: the region whose LSNs these are (None: no bookkeeping beyond this object).
        `log_changes`: log what is applied in this region's change log as its own writes (an
        import into a primary: the secondaries get it); off for replication and restore."""
        self._settings = settings
        self._source = source
        self._on_conflict = on_conflict
        self.service = MemoryService(settings, log_changes=log_changes)
        self._recorder = self.service.changes  # None unless logging
        self._peers = self.service.peers
        self._timeout = settings.serve.write_timeout_s
        self._applied: dict[str, int] = {}  # without a changelog actor (and as a cache)
        self._changelog: Any = None

    # -- the LSN bookkeeping ---------------------------------------------------------------------

    def _log(self) -> Any:
        if self._changelog is None and self._source is not None:
            try:
                self._changelog = find(CHANGELOG, self._settings.namespace)
            except AkashaError:
                return None
        return self._changelog

    async def applied(self) -> dict[str, int]:
        """The last LSN applied per stream (from the changelog actor when it runs)."""
        changelog = self._log()
        if changelog is not None:
            told = await call(changelog.applied.remote(self._source), "changelog", self._timeout)
            for stream, lsn in (told or {}).items():
                self._applied[stream] = max(self._applied.get(stream, 0), int(lsn))
        return dict(self._applied)

    async def mark(self, versions: Mapping[str, int]) -> None:
        """Record LSNs as applied (also how a restore says "the snapshot covered these")."""
        for stream, lsn in versions.items():
            self._applied[stream] = max(self._applied.get(stream, 0), int(lsn))
        changelog = self._log()
        if changelog is not None and versions:
            mark = changelog.mark_applied.remote(self._source, dict(versions))
            await call(mark, "changelog", self._timeout)

    # -- applying ----------------------------------------------------------------------------------

    async def apply(self, rows: pa.Table) -> dict[str, int]:
        """Apply the rows beyond what was applied, in (stream, LSN) order; returns the last LSN
        applied per stream (what is now recorded). `ReplicationGap` when a stream's rows start
        beyond the next LSN (a compacted or missing log segment): nothing of it is applied."""
        applied = await self.applied()
        fresh = _beyond(rows, applied)
        for stream, first in _firsts(fresh).items():
            expected = applied.get(stream, 0) + 1
            if first != expected:
                raise ReplicationGap(
                    f"stream {stream}: the changes start at LSN {first}, the next needed is "
                    f"{expected}",
                    field="lsn",
                )
        done = await self.apply_rows(fresh, tokens=f"dr:{self._source}" if self._source else None)
        await self.mark(done.versions)
        return {**applied, **done.versions}

    async def apply_rows(self, rows: pa.Table, tokens: str | None = None) -> Applied:
        """Apply rows as they are (no LSN check or record): snapshots and bundles, whose rows
        are numbered only to keep their order. With `tokens` (naming where the rows come from),
        each metrics change is stored once per `<tokens>:<stream>:<lsn>` (see the metrics
        store's write tokens), so applying the same rows again adds no points."""
        if rows.num_rows == 0:
            return Applied()
        if self._recorder is not None:
            await self._recorder.check()  # NotPrimary before anything is written
        rows = rows.sort_by([("stream", "ascending"), ("lsn", "ascending")])
        streams = pc.unique(rows.column("stream")).to_pylist()
        done = Applied()
        parts = [
            self._apply_stream(rows.filter(pc.equal(rows.column("stream"), s)), done, tokens)
            for s in streams
        ]
        await asyncio.gather(*parts)
        if done.counts.get("metrics"):
            # Points are buffered by the writer: durable before the LSNs are recorded.
            await call(self._timeseries().flush.remote(), "metrics", self._timeout)
        return done

    async def _apply_stream(self, rows: pa.Table, done: Applied, tokens: str | None) -> None:
        stream = rows.column("stream")[0].as_py()
        kinds = rows.column("kind").to_pylist()
        payloads = rows.column("payload").to_pylist()
        lsns = rows.column("lsn").to_pylist()
        i = 0
        while i < len(kinds):
            j = i + 1  # a run of the same kind: one store call
            while j < len(kinds) and kinds[j] == kinds[i] and _mergeable(kinds[i], tokens):
                j += 1
            if kinds[i] == "metrics" and tokens is not None:
                token = f"{tokens}:{stream}:{lsns[i]}"
                await self._metrics_once(changes.decode("metrics", payloads[i]), token, done)
            else:
                await self._apply_run(kinds[i], payloads[i:j], done)
            if self._recorder is not None and kinds[i] != "memories":  # ingest logs its own
                systems = rows.column("system_id").to_pylist()[i:j]
                entries = [
                    (self._stream(stream, systems[k - i]), kinds[k], systems[k - i], payloads[k])
                    for k in range(i, j)
                ]
                await self._recorder.record(entries)
            done.versions[stream] = lsns[j - 1]
            i = j

    async def _apply_run(self, kind: str, payloads: Sequence[bytes], done: Applied) -> None:
        values = [changes.decode(kind, p) for p in payloads]
        if kind == "memories":
            for chunk in _chunks(values, MERGE_ROWS):
                done.add(kind, await self._memories(pa.concat_tables(chunk), done))
        elif kind == "delete":
            await self._bury([(v["key"], _time(v["at"])) for v in values])
            done.add(kind, len(values))
        elif kind == "metrics":
            batch = PointBatch(pa.concat_tables(values).cast(PointBatch.empty().table.schema))
            await call(self._timeseries().write.remote(batch), "metrics", self._timeout)
            done.add(kind, len(batch))
        elif kind == "entities":
            entities = [Entity.model_validate(e) for v in values for e in v]
            await call(self._peers.graph.upsert_entities.remote(entities), "graph", self._timeout)
            done.add(kind, len(entities))
        elif kind == "relationships":
            found = [Relationship.model_validate(r) for v in values for r in v]
            upsert = self._peers.graph.upsert_relationships.remote(found)
            await call(upsert, "graph", self._timeout)
            done.add(kind, len(found))
        elif kind == "delete_entity":
            for value in values:
                owner = value.get("owner", value.get("system_id"))
                owner = None if owner in (None, "*") else owner
                gone = self._peers.graph.delete_entity.remote(value["entity_id"], owner)
                await call(gone, "graph", self._timeout)
            done.add(kind, len(values))
        elif kind == "key":
            for value in values:
                await self._key(value)
            done.add(kind, len(values))
        else:
            raise ValueError(f"unknown change kind {kind!r}")

    # -- one kind each -----------------------------------------------------------------------------

    async def _metrics_once(self, table: pa.Table, token: str, done: Applied) -> None:
        batch = PointBatch(table.cast(PointBatch.empty().table.schema))
        write = self._timeseries().write_once.remote(batch, token)
        await call(write, "metrics", self._timeout)
        done.add("metrics", len(batch))

    async def _memories(self, table: pa.Table, done: Applied) -> int:
        """Ingest through the memory service (vectors as sent: nothing is embedded). A key
        deleted since (its tombstone applied, or in the snapshot) is skipped; one held with
        other content is a Conflict, or skipped with on_conflict="skip"."""
        links = _links(table)
        batch = table.select(RECORDS.names).cast(RECORDS)
        try:
            return len((await self.service.ingest(batch, links)).new_keys)
        except Conflict:
            keep, skipped = await self._admissible(batch)
            done.skipped_conflicts += skipped
            if keep.num_rows == 0:
                return 0
            kept = set(keys_of(keep))
            links = {k: v for k, v in links.items() if k in kept}
            return len((await self.service.ingest(keep, links)).new_keys)

    async def clashes(self, batch: pa.Table) -> list[str]:
        """Keys of the batch held here with other content (not counting deleted keys)."""
        return (await self._held(batch))[1]

    async def _admissible(self, batch: pa.Table) -> tuple[pa.Table, int]:
        """The rows an ingest can take: not buried, and not held with other content (that is
        a Conflict unless on_conflict="skip"); and how many rows were held with other content."""
        keys = keys_of(batch)
        buried, clashing = await self._held(batch)
        if clashing and self._on_conflict == "fail":
            shown = ", ".join(split_key(k)[1] for k in clashing[:5])
            raise Conflict(
                f"{len(clashing)} memories are held here with other content (ids: {shown})",
                field="memories",
            )
        drop = buried | set(clashing)
        keep = batch.filter(pa.array([k not in drop for k in keys]))
        return keep, len(clashing)

    async def _held(self, batch: pa.Table) -> tuple[set[str], list[str]]:
        """The batch's buried keys, and its keys held with other content."""
        keys = keys_of(batch)
        hashes = dict(zip(keys, batch.column("content_hash").to_pylist(), strict=True))
        checks = [
            self._peers.shards[i].check.remote(part)
            for i, part in self._peers.by_shard(keys).items()
        ]
        others = [self._peers.warm.existing.remote(keys), self._peers.cold.existing.remote(keys)]
        told = await call(asyncio.gather(*checks, *others), "tiers", self._timeout)
        buried = {k for t in told[: len(checks)] for k in t["buried"]}
        held: dict[str, str] = {}
        for t in told[: len(checks)]:
            held.update(t["existing"])
        for t in told[len(checks) :]:
            held.update(t)
        clashing = [k for k in keys if k in held and held[k] != hashes[k] and k not in buried]
        return buried, clashing

    async def _bury(self, deleted: list[tuple[str, datetime]]) -> None:
        """What `MemoryService.delete` does, for many keys at once and with the primary's
        deletion time: tombstones first (durable), then every tier's copy and the links."""
        by_time: dict[datetime, list[str]] = {}
        for key, at in deleted:
            by_time.setdefault(at, []).append(key)
        tombstones = self.service.tombstones
        await call(
            asyncio.gather(*(tombstones.bury(keys, at) for at, keys in by_time.items())),
            "hot shards",
            self._timeout,
        )
        keys = list(dict.fromkeys(k for k, _ in deleted))
        removals = [
            self._peers.shards[i].delete_many.remote(part)
            for i, part in self._peers.by_shard(keys).items()
        ]
        removals += [self._peers.warm.delete_many.remote(keys)]
        removals += [self._peers.cold.delete_many.remote(keys)]
        removals += [self._peers.graph.unlink_memory.remote(k) for k in keys]
        await call(asyncio.gather(*removals), "tiers", self._timeout)

    async def _key(self, value: dict[str, Any]) -> None:
        keys_actor = find(KEYS, self._settings.namespace)
        record = value.get("record") or {k: v for k, v in value.items() if k != "op"}
        if value.get("op") == "revoke" and "hash" not in record:
            held = {r["key_id"]: r for r in await keys_actor.records.remote()}
            known = held.get(record["key_id"])
            if known is None:
                log.warning("a revocation of unknown key %s: nothing to revoke", record["key_id"])
                return
            record = {**known, "revoked_at": record.get("revoked_at") or record.get("at")}
        await call(keys_actor.adopt.remote(record), "keys", self._timeout)

    def _stream(self, stream: str, system_id: str | None) -> str:
        """Where this region logs a change: a memory stream is of its own shard of the system
        (the source may have had another shard count)."""
        if system_id is not None and stream.startswith("hot-"):
            return changes.memory_stream(self._peers.shard_index(system_id))
        return stream

    def _timeseries(self) -> Any:
        return find(TIMESERIES, self._settings.namespace)


def _beyond(rows: pa.Table, applied: Mapping[str, int]) -> pa.Table:
    """The rows whose LSN is above their stream's applied LSN."""
    if rows.num_rows == 0 or not applied:
        return rows
    floor = pa.array([applied.get(s, 0) for s in rows.column("stream").to_pylist()], pa.int64())
    return rows.filter(pc.greater(rows.column("lsn"), floor))


def _firsts(rows: pa.Table) -> dict[str, int]:
    if rows.num_rows == 0:
        return {}
    grouped = rows.group_by("stream").aggregate([("lsn", "min")])
    return dict(zip(grouped["stream"].to_pylist(), grouped["lsn_min"].to_pylist(), strict=True))


def _mergeable(kind: str, tokens: str | None) -> bool:
    """Whether consecutive changes of this kind go to the store in one call (metrics with
    tokens do not: each change is its own write, named by its LSN)."""
    if kind == "metrics":
        return tokens is None
    return kind in ("memories", "delete", "entities", "relationships")


def _chunks(tables: list[pa.Table], rows: int) -> list[list[pa.Table]]:
    out: list[list[pa.Table]] = [[]]
    size = 0
    for table in tables:
        if size and size + table.num_rows > rows:
            out.append([])
            size = 0
        out[-1].append(table)
        size += table.num_rows
    return [chunk for chunk in out if chunk]


def _links(table: pa.Table) -> dict[str, list[str]]:
    if "entities" not in table.column_names:
        return {}
    entities = table.column("entities").to_pylist()
    return {k: e for k, e in zip(keys_of(table), entities, strict=True) if e}


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
