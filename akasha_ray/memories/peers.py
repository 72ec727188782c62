"""The actors a memory operation talks to, found by name (`actors/supervisor.py` creates them).

Looking peers up by name, not through the supervisor, keeps this package free of `actors/` and
lets the migrator, the ingress and the batch jobs share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

import ray
from ray.actor import ActorHandle

from akasha_ray.config import Settings
from akasha_ray.errors import Unavailable
from akasha_ray.identity import split_key
from akasha_ray.routing import hot_actor_name, shard_for

WARM, COLD, MIGRATOR, GRAPH, TIMESERIES, KEYS = (
    "warm",
    "cold",
    "migrator",
    "graph",
    "timeseries",
    "keys",
)


def find(name: str, namespace: str) -> ActorHandle:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError as exc:
        raise Unavailable(
            f"actor {name!r} is not running in namespace {namespace!r}: start Akasha (akasha up)"
        ) from exc


class Peers:
    """Handles to the tier owners, the migrator and the graph, each found when first used."""

    def __init__(self, settings: Settings) -> None:
        self.namespace = settings.namespace
        self.shard_count = settings.hot.shards

    @cached_property
    def shards(self) -> list[ActorHandle]:
        return [find(hot_actor_name(i), self.namespace) for i in range(self.shard_count)]

    @cached_property
    def warm(self) -> ActorHandle:
        return find(WARM, self.namespace)

    @cached_property
    def cold(self) -> ActorHandle:
        return find(COLD, self.namespace)

    @cached_property
    def migrator(self) -> ActorHandle:
        return find(MIGRATOR, self.namespace)

    @cached_property
    def graph(self) -> ActorHandle:
        return find(GRAPH, self.namespace)

    def shard_index(self, system_id: str) -> int:
        return shard_for(system_id, self.shard_count)

    def by_shard(self, keys: Sequence[str]) -> dict[int, list[str]]:
        """Keys grouped by the hot shard that owns their system."""
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(self.shard_index(split_key(key)[0]), []).append(key)
        return groups

    def tier(self, name: str) -> ActorHandle:
        return {WARM: self.warm, COLD: self.cold}[name]


class ActorTier:
    """A tier owner's handle seen as the async store `akasha_ray.migration` moves between."""

    def __init__(self, handle: ActorHandle) -> None:
        self._handle = handle

    async def keys_before(self, cutoff: Any, limit: int) -> list[str]:
        return await self._handle.keys_before.remote(cutoff, limit)

    async def fetch(self, keys: list[str]) -> Any:
        return await self._handle.fetch.remote(keys)

    async def delete_many(self, keys: list[str]) -> list[str]:
        return await self._handle.delete_many.remote(keys)

    async def insert(self, batch: Any) -> list[str]:
        return await self._handle.insert.remote(batch)

    async def existing(self, keys: list[str]) -> dict[str, str]:
        return await self._handle.existing.remote(keys)

    async def make_durable(self) -> None:
        await self._handle.make_durable.remote()
