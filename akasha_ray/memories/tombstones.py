"""Deletes are final: the hot shard that owns a system keeps a tombstone per deleted key, and
writes, migration and ledger recovery ask it (see `HotShard.bury` / `buried`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from akasha_ray.memories.peers import Peers


class Tombstones:
    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def bury(self, keys: Sequence[str], when: datetime) -> None:
        groups = self._peers.by_shard(keys)
        await asyncio.gather(
            *(self._peers.shards[i].bury.remote(part, when) for i, part in groups.items())
        )

    async def buried(self, keys: Sequence[str]) -> list[str]:
        groups = self._peers.by_shard(keys)
        parts = await asyncio.gather(
            *(self._peers.shards[i].buried.remote(part) for i, part in groups.items())
        )
        return [key for part in parts for key in part]
