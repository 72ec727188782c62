"""The `timeseries` actor: sole owner of the time-series store (a DuckDB file, or an asyncpg pool)
and of the write batcher in front of it; it also runs the rollups' refresh policy on schedule.

`write()` returns once the points are buffered (the API answers 202). They reach the store within
`flush_interval_s`, or sooner when `flush_max_points` wait; `flush()` waits for that.
`shutdown()` is the clean stop: it flushes everything accepted, then closes the store.

What a crash can lose (the process dies, or `ray.kill`): the points accepted since the last
successful flush, normally at most `flush_interval_s` (1 s) worth. While the store is failing they
pile up to `max_pending_points`, after which `write()` answers 503 rather than accept more, so a
crash in that state loses at most that many; `health()["writer"]["pending"]` shows the figure.
Everything flushed is committed in the store. A `write` that Ray retries after a restart may be
stored twice if the crash came after its flush and before its reply.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from akasha_ray.config import Settings, from_dict
from akasha_ray.errors import AkashaError
from akasha_ray.timeseries import (
    Bucket,
    MetricsQuery,
    PointBatch,
    TimeseriesOptions,
    TimeseriesStore,
    open_timeseries_store,
)
from akasha_ray.timeseries.batcher import WriteBatcher

ACTOR_NAME = "timeseries"


class TimeseriesActor:
    # An async actor: calls interleave on one event loop, the store's own locking orders them.
    def __init__(self, settings: dict[str, Any], options: dict[str, Any] | None = None) -> None:
        self._settings: Settings = from_dict(settings)
        self._options = TimeseriesOptions.model_validate(options or {})
        self._store: TimeseriesStore | None = None
        self._batcher: WriteBatcher | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._started = asyncio.Lock()
        self._last_refresh: dict[str, Any] | None = None
        self._last_refresh_error: str | None = None

    async def _ready(self) -> tuple[TimeseriesStore, WriteBatcher]:
        # Opened on first use, not in __init__: opening connects and may take seconds.
        async with self._started:
            if self._store is None:
                store = await open_timeseries_store(
                    self._settings.timeseries, self._settings.data_dir, self._options
                )
                batcher = WriteBatcher(
                    store.write,
                    max_points=self._options.flush_max_points,
                    max_delay_s=self._options.flush_interval_s,
                    max_pending=self._options.max_pending_points,
                )
                batcher.start()
                self._store, self._batcher = store, batcher
                self._refresher = asyncio.get_running_loop().create_task(self._refresh_loop())
        assert self._batcher is not None
        return self._store, self._batcher

    async def write(self, batch: PointBatch) -> int:
        _, batcher = await self._ready()
        return await batcher.add(batch)

    async def flush(self) -> None:
        _, batcher = await self._ready()
        await batcher.flush()

    async def query(self, query: MetricsQuery) -> list[Bucket]:
        store, _ = await self._ready()
        return await store.query(query)

    async def refresh(self, now: datetime | None = None) -> dict[str, Any]:
        store, batcher = await self._ready()
        await batcher.flush()  # what was accepted before the refresh is materialized by it
        self._last_refresh = await store.refresh(now)
        return self._last_refresh

    async def health(self) -> dict[str, Any]:
        store, batcher = await self._ready()
        return {
            **await store.health(),
            "writer": batcher.stats(),
            "last_refresh": self._last_refresh,
            "last_refresh_error": self._last_refresh_error,
        }

    async def shutdown(self) -> dict[str, Any]:
        """Flush everything accepted and close the store; the actor can then be killed."""
        if self._store is None or self._batcher is None:
            return {"flushed": 0}
        if self._refresher is not None:
            self._refresher.cancel()
        await self._batcher.aclose()
        await self._store.close()
        stats = self._batcher.stats()
        self._store = None
        self._batcher = None
        return stats

    async def _refresh_loop(self) -> None:
        interval = self._options.refresh_every.total_seconds()
        while True:
            await asyncio.sleep(interval)
            if self._store is None:
                return
            try:
                self._last_refresh = await self._store.refresh()
                self._last_refresh_error = None
            except AkashaError as exc:  # the store is down: shown in health, tried next round
                self._last_refresh_error = exc.message
