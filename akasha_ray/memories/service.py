"""The memory service: the one path every memory write, read, delete and search goes through,
whoever asks (the HTTP ingress, the batch job, the CLI through HTTP). It routes by the owning
shard, places by age, checks identity and tombstones, links entities, writes a batch whole or
not at all, and records Akasha's own metrics.

What a write guarantees (README, "Guarantees"): when `ingest` returns, every memory of the batch
is committed in the tier its age calls for (DuckDB's WAL for hot, Milvus' WAL, a completed
object write for cold) and linked to its entities; when it raises, none of the batch's new
memories is left behind (a compensating delete of what this batch added).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray

from akasha_ray import observability, self_metrics
from akasha_ray.actor_calls import awaited as _awaited
from akasha_ray.actor_calls import call
from akasha_ray.config import Settings
from akasha_ray.errors import AkashaError, Conflict, Unavailable
from akasha_ray.hot_window import READ_TTL_S, HotWindow
from akasha_ray.identity import key_array, keys_of, split_key
from akasha_ray.memories.peers import TIMESERIES, Peers, find
from akasha_ray.memories.placement import by_tier
from akasha_ray.memories.tombstones import Tombstones
from akasha_ray.models import SearchMode, Tier, TierReport, now_utc
from akasha_ray.replication import changes
from akasha_ray.replication.recorder import Recorder
from akasha_ray.search import (
    HYBRID_DEPTH,
    PartialTier,
    TierAnswer,
    ask_tiers,
    fuse,
    merge_hits,
    merge_keyword_hits,
    plan_hot,
)
from akasha_ray.tiers import TierWindows
from akasha_ray.timeseries import PointBatch

log = logging.getLogger(__name__)

TIER_SIZES_EVERY_S = 60  # how often an ingest also samples per-system tier sizes


@dataclass
class Ingested:
    ids: list[str]  # every memory of the batch, in order
    new_keys: list[str]  # the ones stored now (the others were there already)


@dataclass
class Found:
    hits: list[dict[str, Any]]
    answers: dict[Tier, TierAnswer]


class MemoryService:
    def __init__(
        self, settings: Settings, peers: Peers | None = None, log_changes: bool = True
    ) -> None:
        """`log_changes`: False for the one path that applies other regions' changes here."""
        self._settings = settings
        self._tiers = settings.tiers
        self._timeout = settings.serve.request_timeout_s
        self._write_timeout = settings.serve.write_timeout_s
        self.peers = peers or Peers(settings)
        self.tombstones = Tombstones(self.peers)
        self._window: HotWindow | None = None
        self._window_asked = -float("inf")
        self._sizes_sampled_at = 0.0
        self._timeseries = None
        self.changes = Recorder(settings) if log_changes else None

    # -- tier windows ------------------------------------------------------------------------

    async def windows(self) -> TierWindows | None:
        """The windows in force, as the migrator last said (kept READ_TTL_S); None when it does
        not answer."""
        if time.monotonic() - self._window_asked > READ_TTL_S:
            asked = time.monotonic()  # the answer may be as old as the question
            try:
                told = await asyncio.wait_for(_awaited(self.peers.migrator.window.remote()), 2)
            except (TimeoutError, ray.exceptions.RayError, Unavailable):  # callers fall back
                return None
            self._window, self._window_asked = HotWindow.from_json(told), asked
        return self._window.tier_windows(self._tiers.warm_days)

    async def plan(self, start: datetime | None, now: datetime, include_cold: bool) -> list[Tier]:
        """The tiers a search from `start` asks. Without the migrator's word, plan with the
        shortest window it may have set: that asks warm for more ranges, never for fewer."""
        windows = await self.windows() or TierWindows(
            self._tiers.hot_min_days, self._tiers.warm_days
        )
        return windows.tiers_for(start, now, include_cold)

    # -- writes ------------------------------------------------------------------------------

    async def ingest(
        self,
        batch: pa.Table,
        entities: Mapping[str, Sequence[str]] | None = None,
        now: datetime | None = None,
    ) -> Ingested:
        """Store a batch (`records.SCHEMA`) whole or not at all; `entities` maps a memory key to
        the entity ids it mentions. Conflict (409) when a key is already stored with other
        content, or was deleted; Unavailable (503) when a store failed (nothing kept)."""
        now = now or now_utc()
        ids = batch.column("id").to_pylist()
        batch = _one_row_per_key(batch)
        if self.changes:
            await self.changes.check()
        # Without the migrator's word, keep in hot whatever the longest window would: hot is
        # always searched, and the next migration moves what is too old.
        windows = await self.windows() or TierWindows(self._tiers.hot_days, self._tiers.warm_days)
        parts = _split_hot(by_tier(windows, batch, now), self.peers)
        parts = await self._admitted(parts)
        write_id = uuid.uuid4().hex
        new_keys = await self._write_whole(parts, write_id)
        links = {k: list(v) for k, v in (entities or {}).items() if v}
        if links:
            try:
                link = self.peers.graph.link_memories.remote(links)
                await self._call(link, "graph", self._write_timeout)
            except AkashaError:
                await self._undo(parts, write_id)
                raise
        if self.changes:
            # Every row, stored now or before: a retry after a crash between the write and
            # this line finds its memories stored and must still get them logged.
            try:
                given = await self.changes.log(self._memory_changes(batch, links))
            except AkashaError:
                await self._undo(parts, write_id)
                raise
            await self.changes.confirm(given)
        systems = Counter(split_key(k)[0] for k in new_keys)
        observability.count_ingested(_per_tier(parts, new_keys))
        self._record(self_metrics.ingested(systems, now_utc()))
        await self._sample_tier_sizes()
        return Ingested(ids=ids, new_keys=new_keys)

    async def _admitted(self, parts: dict[Any, pa.Table]) -> dict[Any, pa.Table]:
        """The parts without the memories already stored as sent; Conflict if any key is held
        with other content or was deleted. Nothing is written before every part is checked."""
        checks = [self._check(where, part) for where, part in parts.items()]
        held_by_part = await self._call(asyncio.gather(*checks), "tiers", self._write_timeout)
        conflicts: list[str] = []
        admitted: dict[Any, pa.Table] = {}
        for (where, part), (held, buried) in zip(parts.items(), held_by_part, strict=True):
            keys, hashes = keys_of(part), part.column("content_hash").to_pylist()
            fresh = []
            for key, digest in zip(keys, hashes, strict=True):
                if key in buried or (key in held and held[key] != digest):
                    conflicts.append(key)
                fresh.append(key not in held)
            if any(fresh):
                admitted[where] = part.filter(pa.array(fresh))
        if conflicts:
            shown = ", ".join(split_key(k)[1] for k in conflicts[:5])
            raise Conflict(
                f"{len(conflicts)} memories are already stored with other content or were "
                f"deleted (ids: {shown}); nothing of this batch was stored",
                field="memories",
            )
        return admitted

    async def _check(self, where: Any, part: pa.Table) -> tuple[dict[str, str], set[str]]:
        keys = keys_of(part)
        if isinstance(where, int):  # a hot shard owns these systems: one call answers both
            told = await self.peers.shards[where].check.remote(keys)
            return told["existing"], set(told["buried"])
        held, buried = await asyncio.gather(
            _awaited(self.peers.tier(where).existing.remote(keys)), self.tombstones.buried(keys)
        )
        return held, set(buried)

    async def _write_whole(self, parts: dict[Any, pa.Table], write_id: str) -> list[str]:
        """Write every part at once; if one fails, remove what the others added and raise."""
        writers = [
            self.peers.shards[where].insert.remote(part, write_id)
            if isinstance(where, int)
            else self._owner(where).insert.remote(part)
            for where, part in parts.items()
        ]
        results = await asyncio.gather(
            *(self._call(w, "tiers", self._write_timeout) for w in writers),
            return_exceptions=True,
        )
        failed = [r for r in results if isinstance(r, BaseException)]
        added = [k for r in results if not isinstance(r, BaseException) for k in r]
        if failed:
            await self._undo(parts, write_id)
            error = failed[0]
            if isinstance(error, AkashaError):
                raise error
            raise Unavailable(f"a store failed during the write: {type(error).__name__}")
        return added

    async def _undo(self, parts: dict[Any, pa.Table], write_id: str) -> None:
        """The compensating delete: remove what this batch stored, wherever it put it, even in a
        part whose answer was lost (a shard that crashed after its commit). A hot shard removes
        only the rows of this write; warm and cold (backfills) the keys that were new when the
        batch was checked."""
        deletes = [
            self.peers.shards[where].undo.remote(keys_of(part), write_id)
            if isinstance(where, int)
            else self._owner(where).delete_many.remote(keys_of(part))
            for where, part in parts.items()
        ]
        done = await self._call(
            asyncio.gather(*deletes, return_exceptions=True), "tiers", self._write_timeout
        )
        failed = [d for d in done if isinstance(d, BaseException)]
        if failed:  # each owner retries after a restart; one that is gone for good held nothing
            log.warning("undoing a failed batch: %d owners did not answer", len(failed))

    def _memory_changes(self, batch: pa.Table, links: dict[str, list[str]]) -> list:
        """One "memories" change per system, on the stream of the shard that owns it."""
        systems = batch.column("system_id")
        entries = []
        for system in pc.unique(systems).to_pylist():
            rows = batch.filter(pc.equal(systems, system))
            stream = changes.memory_stream(self.peers.shard_index(system))
            entries.append((stream, "memories", system, changes.memories_payload(rows, links)))
        return entries

    def _owner(self, where: Any):
        return self.peers.shards[where] if isinstance(where, int) else self.peers.tier(where)

    async def delete(self, key: str, even_if_absent: bool = False) -> bool:
        """Delete a memory for good: a tombstone first (durable), then every tier's copy and its
        entity links. False when no tier holds it (nothing is recorded then, unless
        `even_if_absent`: applying another region's delete buries the key all the same)."""
        if self.changes:
            await self.changes.check()
        found = await self.find(key, self._write_timeout)
        if not found and not even_if_absent:
            return False
        timeout = self._write_timeout
        given = {}
        if self.changes:  # logged first: a delete cut short is finished by a retry or a replica
            system = split_key(key)[0]
            stream = changes.memory_stream(self.peers.shard_index(system))
            payload = changes.json_payload({"key": key, "at": now_utc()})
            given = await self.changes.log([(stream, "delete", system, payload)])
        await self._call(self.tombstones.bury([key], now_utc()), "hot shards", timeout)
        owner = self.peers.shards[self.peers.shard_index(split_key(key)[0])]
        deletes = [owner.delete_many.remote([key])]
        deletes += [self.peers.warm.delete_many.remote([key])]
        deletes += [self.peers.cold.delete_many.remote([key])]
        await self._call(asyncio.gather(*deletes), "tiers", timeout)
        await self._call(self.peers.graph.unlink_memory.remote(key), "graph", timeout)
        if self.changes:
            await self.changes.confirm(given)
        return bool(found)

    # -- reads -------------------------------------------------------------------------------

    async def find(
        self, key: str, timeout_s: float | None = None
    ) -> list[tuple[Tier, dict[str, Any]]]:
        """Every copy of a memory (two while it moves between tiers), hot first."""
        owner = self.peers.shards[self.peers.shard_index(split_key(key)[0])]
        owners: list[tuple[Any, Tier]] = [(owner, "hot"), (self.peers.warm, "warm")]
        owners.append((self.peers.cold, "cold"))
        gets = asyncio.gather(*(o.get.remote(key) for o, _ in owners))
        rows = await self._call(gets, "tiers", timeout_s)
        return [(t, row) for (_, t), row in zip(owners, rows, strict=True) if row is not None]

    async def search(
        self,
        vector: np.ndarray | None,
        limit: int,
        system_ids: list[str] | None,
        start: datetime | None,
        end: datetime | None,
        include_cold: bool = False,
        only_keys: list[str] | None = None,
        mode: SearchMode = "vector",
        text: str | None = None,
    ) -> Found:
        """Every tier the range reaches, in parallel, one hit per key: merged by similarity
        ("vector"), by BM25 over `text` ("keyword"), or both rankings fused ("hybrid", see
        `search.fuse`). Each hit's `score` is what it ranks by."""
        asked = await self.plan(start, now_utc(), include_cold)
        if only_keys is not None:
            asked = ["hot"]  # the key filter reaches the hot index only (see README)
        depth = max(limit, HYBRID_DEPTH) if mode == "hybrid" else limit
        by_vector = (vector, depth, system_ids, start, end)
        by_text = (text, depth, system_ids, start, end)
        calls = {}
        for tier in asked:
            sides = []
            if mode != "keyword":
                sides.append(self._side(tier, "search", by_vector, only_keys))
            if mode != "vector":
                sides.append(self._side(tier, "search_keywords", by_text, only_keys))
            calls[tier] = lambda sides=sides: _both(sides)
        answers = await ask_tiers(calls, self._timeout)
        observability.observe_tiers(answers)
        hits = _ranked([h for a in answers.values() for h in a.hits], mode, limit)
        reports = [
            TierReport(tier=t, latency_ms=a.latency_ms, hits=len(a.hits), error=a.error)
            for t, a in answers.items()
        ]
        self._record(self_metrics.searched(system_ids, reports, now_utc()))
        return Found(hits=hits, answers=answers)

    def _side(self, tier: Tier, method: str, query: tuple, only_keys: list[str] | None):
        """One ranking's call to one tier (`method`: "search" or "search_keywords")."""
        if tier == "hot":
            return self._search_hot(*query, only_keys, method=method)
        return self._search_other(tier, *query, method=method)

    async def _search_hot(
        self, vector, limit, system_ids, start, end, only_keys, method: str = "search"
    ) -> list[dict]:
        """Every shard holding the systems asked; a failed shard makes the answer partial."""
        plan = plan_hot(system_ids, len(self.peers.shards))
        calls = [
            getattr(self.peers.shards[i], method).remote(
                vector, limit, systems, start, end, only_keys
            )
            for i, systems in plan.items()
        ]
        parts = await asyncio.gather(*calls, return_exceptions=True)
        failed = [f"hot-{i}" for i, p in zip(plan, parts, strict=True) if isinstance(p, Exception)]
        hits = [h for p in parts if not isinstance(p, Exception) for h in p]
        if failed:
            raise PartialTier(f"{', '.join(failed)} did not answer", _tagged(hits, "hot"))
        return _tagged(hits, "hot")

    async def _search_other(
        self, tier, vector, limit, system_ids, start, end, method: str = "search"
    ) -> list[dict]:
        owner = getattr(self.peers.tier(tier), method)
        return _tagged(await owner.remote(vector, limit, system_ids, start, end), tier)

    # -- self-metrics ------------------------------------------------------------------------

    def _record(self, points: PointBatch) -> None:
        """Write Akasha's own metrics without making the request wait for (or fail on) them."""
        if not len(points):
            return
        if self._timeseries is None:
            try:
                self._timeseries = find(TIMESERIES, self._settings.namespace)
            except Unavailable:
                return  # no metrics store running: nothing to record into
        self._timeseries.write.remote(points)

    async def _sample_tier_sizes(self) -> None:
        if time.monotonic() - self._sizes_sampled_at < TIER_SIZES_EVERY_S:
            return
        self._sizes_sampled_at = time.monotonic()
        counts = await self._call(
            asyncio.gather(*(s.system_counts.remote() for s in self.peers.shards)), "hot shards"
        )
        merged = {system: n for part in counts for system, n in part.items()}
        self._record(self_metrics.tier_sizes("hot", merged, now_utc()))

    async def _call(self, awaitable, component: str, timeout_s: float | None = None):
        return await call(awaitable, component, timeout_s or self._timeout)


def _one_row_per_key(batch: pa.Table) -> pa.Table:
    """The first row of each key; Conflict when a key repeats with other content."""
    keys = key_array(batch).to_pylist()
    if len(set(keys)) == len(keys):
        return batch
    first: dict[str, str] = {}
    keep = []
    for key, digest in zip(keys, batch.column("content_hash").to_pylist(), strict=True):
        if key in first and first[key] != digest:
            raise Conflict(
                f"memory id {split_key(key)[1]!r} appears twice in the batch with other content",
                field="memories",
            )
        keep.append(key not in first)
        first.setdefault(key, digest)
    return batch.filter(pa.array(keep))


def _split_hot(parts: dict[Tier, pa.Table], peers: Peers) -> dict[Any, pa.Table]:
    """The hot part split by owning shard (keys: shard index, "warm", "cold")."""
    out: dict[Any, pa.Table] = {t: p for t, p in parts.items() if t != "hot"}
    hot = parts.get("hot")
    if hot is not None:
        shard_of = np.array([peers.shard_index(s) for s in hot.column("system_id").to_pylist()])
        for i in np.unique(shard_of).tolist():
            out[i] = hot.filter(pa.array(shard_of == i))
    return out


def _per_tier(parts: dict[Any, pa.Table], new_keys: list[str]) -> dict[str, int]:
    """New memories per tier (an int part is a hot shard), for the ingest counter."""
    new = set(new_keys)
    counts: Counter[str] = Counter()
    for where, part in parts.items():
        tier = "hot" if isinstance(where, int) else str(where)
        counts[tier] += sum(key in new for key in keys_of(part))
    return dict(counts)


async def _both(sides: list) -> list[dict]:
    """The hits of a tier's rankings together (a keyword hit carries `bm25`); one that failed
    makes the tier's answer partial, keeping the other's hits."""
    if len(sides) == 1:
        return await sides[0]
    parts = await asyncio.gather(*sides, return_exceptions=True)
    hits = [h for p in parts if not isinstance(p, BaseException) for h in p]
    errors = [p for p in parts if isinstance(p, BaseException)]
    hits += [h for e in errors if isinstance(e, PartialTier) for h in e.hits]
    if not errors:
        return hits
    if hits or all(isinstance(e, PartialTier) for e in errors):
        told = [e if isinstance(e, PartialTier) else f"{type(e).__name__}: {e}" for e in errors]
        raise PartialTier("; ".join(map(str, told))[:300], hits)
    raise errors[0]


def _ranked(hits: list[dict], mode: SearchMode, limit: int) -> list[dict]:
    by_keyword = merge_keyword_hits([[h for h in hits if "bm25" in h]], max(limit, HYBRID_DEPTH))
    by_vector = merge_hits([[h for h in hits if "bm25" not in h]], max(limit, HYBRID_DEPTH))
    if mode == "vector":
        return [{**h, "score": h["similarity"]} for h in by_vector[:limit]]
    if mode == "keyword":
        return [{**h, "similarity": None, "score": h["bm25"]} for h in by_keyword[:limit]]
    return fuse(by_vector, by_keyword, limit)


def _tagged(hits: list[dict], tier: Tier) -> list[dict]:
    for hit in hits:
        hit["tier"] = tier
    return hits
