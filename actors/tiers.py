"""All the tier owners of one Akasha, addressed as one: where a memory is written, which tiers a
search asks, where a memory is found. Used by the HTTP ingress and by the batch jobs."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import ray
from ray.actor import ActorHandle

from actors import supervisor
from akasha_ray.config import Settings
from akasha_ray.hot_window import READ_TTL_S, HotWindow
from akasha_ray.models import Tier
from akasha_ray.records import time_us_of
from akasha_ray.routing import shard_for
from akasha_ray.search import PartialTier, plan_hot
from akasha_ray.tiers import TierWindows
from akasha_ray.times import to_us


class TierHandles:
    def __init__(self, settings: Settings) -> None:
        self._tiers = settings.tiers
        self.shards = supervisor.hot_shards(settings)
        self.warm = supervisor.warm(settings)
        self.cold = supervisor.cold(settings)
        self.migrator = supervisor.migrator(settings)
        self._window: HotWindow | None = None
        self._window_asked = -float("inf")

    async def windows(self) -> TierWindows | None:
        """The windows in force, as the migrator last said (kept READ_TTL_S); None when it does
        not answer."""
        if time.monotonic() - self._window_asked > READ_TTL_S:
            asked = time.monotonic()  # the answer may be as old as the question
            try:
                told = await asyncio.wait_for(_awaited(self.migrator.window.remote()), 2)
            except (TimeoutError, ray.exceptions.RayError):  # restarting: callers fall back
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

    def owners(self) -> dict[str, ActorHandle]:
        return {
            **{f"hot-{i}": shard for i, shard in enumerate(self.shards)},
            "warm": self.warm,
            "cold": self.cold,
        }

    async def insert(self, batch: pa.Table, now: datetime) -> list[str]:
        """Write each memory to the tier its age calls for (a backfill goes straight to cold);
        returns the ids that were new."""
        # Without the migrator's word, keep in hot whatever the longest window would: hot is
        # always searched, and the next migration moves what is too old.
        windows = await self.windows() or TierWindows(self._tiers.hot_days, self._tiers.warm_days)
        writes = []
        for tier, part in _by_tier(windows, batch, now).items():
            if tier != "hot":
                writes.append(getattr(self, tier).insert.remote(part))
                continue
            shard_of = np.array(
                [shard_for(s, len(self.shards)) for s in part.column("system_id").to_pylist()]
            )
            writes += [
                self.shards[i].insert.remote(part.filter(shard_of == i))
                for i in np.unique(shard_of).tolist()
            ]
        return [memory_id for ids in await asyncio.gather(*writes) for memory_id in ids]

    async def search_hot(self, vector, limit, system_ids, start, end, only_ids) -> list[dict]:
        """Every shard holding the systems asked; a failed shard makes the answer partial."""
        plan = plan_hot(system_ids, len(self.shards))
        calls = [
            self.shards[i].search.remote(vector, limit, systems, start, end, only_ids)
            for i, systems in plan.items()
        ]
        parts = await asyncio.gather(*calls, return_exceptions=True)
        failed = [f"hot-{i}" for i, p in zip(plan, parts, strict=True) if isinstance(p, Exception)]
        hits = [h for p in parts if not isinstance(p, Exception) for h in p]
        if failed:
            raise PartialTier(f"{', '.join(failed)} did not answer", _tagged(hits, "hot"))
        return _tagged(hits, "hot")

    async def search_other(self, tier, vector, limit, system_ids, start, end) -> list[dict]:
        hits = await getattr(self, tier).search.remote(vector, limit, system_ids, start, end)
        return _tagged(hits, tier)

    async def find(self, memory_id: str) -> list[tuple[ActorHandle, Tier, dict[str, Any]]]:
        """Every copy of a memory (two while it moves between tiers), hot first."""
        owners = [*((s, "hot") for s in self.shards), (self.warm, "warm"), (self.cold, "cold")]
        rows = await asyncio.gather(*(owner.get.remote(memory_id) for owner, _ in owners))
        return [(o, t, row) for (o, t), row in zip(owners, rows, strict=True) if row is not None]


def _by_tier(windows: TierWindows, batch: pa.Table, now: datetime) -> dict[Tier, pa.Table]:
    created = time_us_of(batch)
    parts: dict[Tier, pa.Table] = {}
    for tier, (lower, upper) in windows.bounds(now).items():
        keep = np.ones(len(created), dtype=bool)
        if lower is not None:
            keep &= created > to_us(lower)
        if upper is not None:
            keep &= created <= to_us(upper)
        if keep.any():
            parts[tier] = batch.filter(pa.array(keep))
    return parts


async def _awaited(ref):
    return await ref


def _tagged(hits: list[dict], tier: Tier) -> list[dict]:
    for hit in hits:
        hit["tier"] = tier
    return hits
