"""The `hot-<i>` actor: sole owner of one hot shard's DuckDB file and its in-memory index."""

from __future__ import annotations

import os
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from akasha_ray.vectors.hot_shard import HotShard


class HotShardActor:
    # Methods are synchronous and the actor runs one call at a time: DuckDB connections are not
    # shared across threads, and serial calls keep the index and the file in step.
    def __init__(self, path: str, shards_per_node: int = 1) -> None:
        # Ray pins BLAS to one thread in actors; a scan is memory-bound, so give the shards on a
        # node the node's cores between them (2 shards on 2 cores: one thread each).
        cores = len(os.sched_getaffinity(0))
        threadpool_limits(limits=max(1, cores // shards_per_node), user_api="blas")
        self._shard = HotShard(Path(path))
        # (whole search, index scan) in ms: what the hot window adapts to
        self._search_ms: deque[tuple[float, float]] = deque(maxlen=256)

    def insert(self, batch: pa.Table, write_id: str | None = None) -> list[str]:
        return self._shard.insert(batch, write_id)

    def undo(self, keys: list[str], write_id: str) -> list[str]:
        return self._shard.undo(keys, write_id)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._shard.get(key)

    def existing(self, keys: list[str]) -> dict[str, str]:
        return self._shard.existing(keys)

    def get_many(self, keys: list[str]) -> list[dict[str, Any]]:
        return self._shard.get_many(keys)

    def delete(self, key: str) -> bool:
        return self._shard.delete(key)

    def delete_many(self, keys: list[str]) -> list[str]:
        return self._shard.delete_many(keys)

    def bury(self, keys: list[str], when: datetime) -> None:
        self._shard.bury(keys, when)

    def buried(self, keys: list[str]) -> list[str]:
        return self._shard.buried(keys)

    def check(self, keys: list[str]) -> dict[str, Any]:
        return self._shard.check(keys)

    def fetch(self, keys: list[str]) -> pa.Table:
        return self._shard.fetch(keys)

    def keys_before(self, cutoff: datetime, limit: int) -> list[str]:
        return self._shard.keys_before(cutoff, limit)

    def export(self, after: str | None, limit: int, system_id: str | None = None) -> pa.Table:
        return self._shard.export(after, limit, system_id)

    def tombstones(
        self, after: str | None, limit: int, system_id: str | None = None
    ) -> list[tuple[str, datetime]]:
        return self._shard.tombstones(after, limit, system_id)

    def search(
        self,
        vector: np.ndarray,
        k: int,
        system_ids: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        only_keys: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        started = time.perf_counter()
        hits = self._shard.search(vector, k, system_ids, start, end, only_keys)
        whole = (time.perf_counter() - started) * 1000
        self._search_ms.append((whole, self._shard.last_scan_ms))
        return hits

    def search_keywords(
        self,
        text: str,
        k: int,
        system_ids: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        only_keys: list[str] | None = None,
    ) -> list[dict[str, Any]]:
        return self._shard.search_keywords(text, k, system_ids, start, end, only_keys)

    def load(self) -> dict[str, Any]:
        """Rows held, and the p95 of the recent searches and of their index scans (None before
        any)."""
        timed = np.array(self._search_ms).reshape(-1, 2)
        p95 = np.percentile(timed, 95, axis=0).tolist() if len(timed) else [None, None]
        return {
            "rows": len(self._shard.index),
            "searches": len(timed),
            "p95_ms": p95[0],
            "scan_p95_ms": p95[1],
        }

    def reset_load(self) -> None:
        self._search_ms.clear()

    def newest_beyond(self, keep: int) -> datetime | None:
        return self._shard.newest_beyond(keep)

    def stats(self) -> dict[str, Any]:
        return self._shard.stats()

    def summary(self, system_ids: list[str] | None = None) -> dict[str, Any]:
        return self._shard.summary(system_ids)

    def system_counts(self) -> dict[str, int]:
        return self._shard.system_counts()

    def close(self) -> None:
        self._shard.close()
