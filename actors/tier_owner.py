"""The `warm` and `cold` actors: each the sole owner of one tier store (Milvus Lite allows one
process per file; the cold archive has one writer). Async actors, so concurrent searches can
share one Milvus call. The store opens on first use, not in the constructor."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from akasha_ray import config


class _TierOwner:
    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = config.from_dict(settings)
        self._store: Any = None
        self._opening = asyncio.Lock()

    async def _open(self) -> Any:
        raise NotImplementedError

    async def _tier(self) -> Any:
        async with self._opening:
            if self._store is None:
                self._store = await self._open()
        return self._store

    async def insert(self, batch: pa.Table) -> list[str]:
        return await (await self._tier()).insert(batch)

    async def existing(self, keys: Sequence[str]) -> dict[str, str]:
        return await (await self._tier()).existing(keys)

    async def get(self, key: str) -> dict[str, Any] | None:
        return await (await self._tier()).get(key)

    async def delete_many(self, keys: Sequence[str]) -> list[str]:
        return await (await self._tier()).delete_many(keys)

    async def make_durable(self) -> None:
        """Everything inserted so far survives a crash once this returns."""
        await (await self._tier()).make_durable()

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        return await (await self._tier()).search(vector, k, system_ids, start, end)

    async def stats(self) -> dict[str, Any]:
        return await (await self._tier()).stats()

    async def summary(self, system_ids: Sequence[str] | None = None) -> dict[str, Any]:
        """count, oldest, newest of these systems (None: all, with bytes), from counters."""
        return await (await self._tier()).summary(system_ids)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()
            self._store = None


class WarmActor(_TierOwner):
    async def _open(self) -> Any:
        from akasha_ray.vectors.milvus_store import MilvusStore

        return await MilvusStore.open(self._settings.warm, Path(self._settings.data_dir))

    async def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        return await (await self._tier()).keys_before(cutoff, limit)

    async def fetch(self, keys: Sequence[str]) -> pa.Table:
        return await (await self._tier()).fetch(keys)

    async def keys_between(self, start_us: int, end_us: int, limit: int) -> list[str]:
        return await (await self._tier()).keys_between(start_us, end_us, limit)

    async def health(self) -> dict[str, Any]:
        return await (await self._tier()).health()

    async def search_keywords(
        self,
        text: str,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        return await (await self._tier()).search_keywords(text, k, system_ids, start, end)


class ColdActor(_TierOwner):
    async def _open(self) -> Any:
        from akasha_ray.vectors.cold_store import ColdStore

        cache_bytes = int(self._settings.tiers.cold_cache_mb * 2**20)
        return ColdStore.open(self._settings.objects, Path(self._settings.data_dir), cache_bytes)

    async def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        return await (await self._tier()).keys_before(cutoff, limit)

    async def fetch(self, keys: Sequence[str]) -> pa.Table:
        """Whole memories (vectors included): DR snapshots and exports read cold with it."""
        return await (await self._tier()).fetch(keys)

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """A search without `start` reaches back `tiers.cold_search_days`, and reads at most
        `tiers.cold_search_max_files` files (more: InvalidInput naming `start`)."""
        store = await self._tier()
        return await store.search(vector, k, system_ids, self._start(start), end, **self._cap())

    async def search_keywords(
        self,
        text: str,
        k: int,
        system_ids: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """BM25 over the archive, bounded as `search` is."""
        store = await self._tier()
        return await store.search_keywords(
            text, k, system_ids, self._start(start), end, **self._cap()
        )

    def _start(self, start: datetime | None) -> datetime:
        """The default start of a cold search: `tiers.cold_search_days` back."""
        if start is not None:
            return start
        return datetime.now(UTC) - timedelta(days=self._settings.tiers.cold_search_days)

    def _cap(self) -> dict[str, int]:
        return {"max_files": self._settings.tiers.cold_search_max_files}
